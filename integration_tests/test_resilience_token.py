"""The ACL token, on real Asterisk 16 and 22 against Consul with ACLs (default deny).

token_file is read at load and at reload, and watched; CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN and
CONSUL_HTTP_TOKEN_FILE from Asterisk's environment are fallbacks and the config file wins; a
token scoped to the service works; a wrong one gives "permission denied" in `discovery show
status` and the log, without a retry storm; and no token ever shows in a log line (debug on),
CLI or AMI output, a URL, an error text or the process arguments.
"""

import re
import time

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.testbed.peers import StandInPeer

WRONG = "00000000-dead-beef-0000-0000000000aa"


def scoped_token(agent):
    """A token that may write services named Asterisk*, and nothing else."""
    policy = {"Name": "asterisk-service",
              "Rules": 'service_prefix "Asterisk" { policy = "write" }'}
    assert agent.put("/v1/acl/policy", json=policy).status_code == 200
    reply = agent.put("/v1/acl/token", json={"Policies": [{"Name": "asterisk-service"}]})
    assert reply.status_code == 200, reply.text
    return reply.json()["SecretID"]


def denied_requests(agent, since=0):
    """Requests the agent refused for an unknown token after byte offset `since`."""
    with open(agent.log_path, "rb") as fh:
        fh.seek(since)
        text = fh.read().decode("utf-8", "replace")
    return re.findall(r'Request error: method=(\S+) url=(\S+) .*error="ACL not found"', text)


class Seen:
    """Everything the module showed: CLI output, AMI replies and events."""

    def __init__(self):
        self.texts = []

    def rx(self, ast, command):
        out = ast.rx(command)
        self.texts.append(out)
        return out

    def add(self, value):
        self.texts.append(repr(value))
        return value


def assert_no_leak(secrets, instances, seen, agent, proxies=()):
    places = {"CLI/AMI output": "\n".join(seen.texts),
              "Consul agent log (request URLs)": agent.log_text()}
    for ast in instances:
        places["messages log of %s" % ast.eid] = ast.log_text()
        places["console output of %s" % ast.eid] = ast.stdout_text()
        if ast.is_running():
            with open("/proc/%d/cmdline" % ast.pid, "rb") as fh:
                places["cmdline of %s" % ast.eid] = fh.read().decode("utf-8", "replace")
    for proxy in proxies:
        places["URLs the proxy saw"] = "\n".join(request.path for request in proxy.requests)
    leaks = ["%s holds token %s…" % (where, secret[:4]) for where, text in places.items()
             for secret in secrets if secret in text]
    assert not leaks, leaks
    assert "token=" not in places["Consul agent log (request URLs)"]


def test_tokens_from_file_and_environment_with_acls_and_never_shown(
        asterisk_factory, ast_version, module_so, consul_factory):
    agent = consul_factory(acl=True)
    good = scoped_token(agent)
    secrets = (good, WRONG, agent.master_token)
    seen = Seen()
    instances = []

    # -- token_file: read at load, with debug logging on ------------------------------------
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    instances.append(ast)
    ast.rx("core set debug 5")
    ast.write_config("consul.token", good + "\n")
    options = d.write_conf(ast, agent, token_file="consul.token")
    d.load(ast)
    d.wait_service(agent, ast.eid)
    d.wait_health(agent, "Asterisk", ast.eid, "passing")
    settings = seen.rx(ast, "discovery show settings")
    assert re.search(r"^\s*token\s+\(set, %d chars\)\s+res_discovery_consul\.conf:\d+ \(token_file "
                     % len(good), settings, re.M), settings
    assert "is set" in seen.rx(ast, "discovery set maintenance on acl test")
    with d.ami(ast) as ami:
        reply = seen.add(ami.action("DiscoverySetMaintenance", Enable="no"))
        assert reply["Response"] == "Success", reply
        seen.add(ami.wait_event("DiscoverySetMaintenance", Maintenance="false"))
    status = seen.rx(ast, "discovery show status")
    assert r.status_row(status, "Last error") == "none", status

    # -- the file changes to a wrong token: taken without a reload (the file is watched);
    # -- denied, clearly, and retried on the backoff (capped at the resync), no storm ------
    since, log_since = r.consul_log_offset(agent), ast.log_offset()
    ast.write_config("consul.token", WRONG + "\n")
    ast.wait_log(r"WARNING.*Consul: the agent does not know the ACL token in use \(403 ACL not "
                 r"found: deleted or expired\)", since=log_since)
    ast.wait_log(r"WARNING.*Consul: PUT /v1/agent/service/register: permission denied: ACL not "
                 r"found \(check the ACL token and its policy\); retrying in \d\.\d\d s",
                 since=log_since)
    began, since = time.monotonic(), r.consul_log_offset(agent)
    time.sleep(5)  # a rate is measured over a span, not synchronised on
    refused = [u for m, u in denied_requests(agent, since) if m == "PUT"]
    # The backoff is capped at resync_interval (1 s here) and jittered down to half of it.
    assert 1 <= len(refused) <= 1 + 2 * (time.monotonic() - began), refused
    status = seen.rx(ast, "discovery show status")
    assert "permission denied" in r.status_row(status, "Last error"), status
    assert "ACL not found" in r.status_row(status, "Token"), status
    assert "reloaded" in seen.rx(ast, "module reload " + d.MODULE)  # the same token: no news

    # -- and back: the good token from the file again ---------------------------------------
    ast.write_config("consul.token", good)
    assert "reloaded" in seen.rx(ast, "module reload " + d.MODULE)
    d.wait_until(lambda: r.status_row(seen.rx(ast, "discovery show status"),
                                                        "Last error") == "none", timeout=5, interval=0.1, what="the error to clear")

    # -- the environment, as Consul's own clients read it; the config file wins --------------
    token_file = ast.etc_dir / "env.token"  # host path; Asterisk 22 sees it in its chroot
    token_file.write_text(good + "\n")
    env = {"CONSUL_HTTP_ADDR": "http://127.0.0.1:%d" % agent.http_port,
           "CONSUL_HTTP_TOKEN": WRONG,  # CONSUL_HTTP_TOKEN_FILE wins over it, as in Consul
           "CONSUL_HTTP_TOKEN_FILE": str(ast.to_asterisk_path(token_file))}
    env_ast = d.new_asterisk(asterisk_factory, ast_version, module_so, env=env)
    instances.append(env_ast)
    env_options = d.write_conf(env_ast, agent, host=None, port=None)
    d.load(env_ast)
    d.wait_service(agent, env_ast.eid)
    settings = seen.rx(env_ast, "discovery show settings")
    assert re.search(r"^\s*port\s+%d\s+env CONSUL_HTTP_ADDR" % agent.http_port, settings, re.M)
    assert re.search(r"^\s*token\s+\(set, %d chars\)\s+env CONSUL_HTTP_TOKEN_FILE" % len(good),
                     settings, re.M), settings
    # The file's port wins over CONSUL_HTTP_ADDR ...
    with StandInPeer(agent=agent) as proxy:
        d.write_conf(env_ast, agent, **dict(env_options, port=proxy.port))
        assert "reloaded" in seen.rx(env_ast, "module reload " + d.MODULE)
        d.wait_until(lambda: proxy.calls(), timeout=5, interval=0.1,
                     what="requests through the file's port")
        assert True in proxy.token_seen and re.search(
            r"Agent:\s+http://127\.0\.0\.1:%d " % proxy.port,
            seen.rx(env_ast, "discovery show status"))
    # ... and the file's token over the environment's.
    env_ast.write_config("wrong.token", WRONG)
    d.write_conf(env_ast, agent, **dict(env_options, token_file="wrong.token"))
    assert "reloaded" in seen.rx(env_ast, "module reload " + d.MODULE)
    d.wait_until(lambda: "permission denied" in r.status_row(
        seen.rx(env_ast, "discovery show status"), "Last error"), timeout=5, interval=0.1, what="permission denied")

    # CONSUL_HTTP_TOKEN alone.
    plain_ast = d.new_asterisk(asterisk_factory, ast_version, module_so,
                               env={"CONSUL_HTTP_ADDR": "127.0.0.1:%d" % agent.http_port,
                                    "CONSUL_HTTP_TOKEN": good})
    instances.append(plain_ast)
    d.write_conf(plain_ast, agent, host=None, port=None)
    d.load(plain_ast)
    d.wait_service(agent, plain_ast.eid)
    assert "env CONSUL_HTTP_TOKEN" in seen.rx(plain_ast, "discovery show settings")

    # -- a peer that echoes the request back (token header included) in its errors ----------
    with StandInPeer(agent=agent, mode="echo") as echo:
        d.write_conf(ast, echo, **dict(options, port=echo.port))
        assert "reloaded" in seen.rx(ast, "module reload " + d.MODULE)
        d.wait_until(lambda: "500" in r.status_row(
            seen.rx(ast, "discovery show status"), "Last error"), timeout=5, interval=0.1, what="the echoed error")
        status = seen.rx(ast, "discovery show status")
        assert "<redacted>" in r.status_row(status, "Last error"), status
        assert "will keep trying" in seen.rx(ast, "discovery set maintenance on echo")
        with d.ami(ast) as ami:
            seen.add(ami.action("DiscoverySetMaintenance", Enable="yes", Reason="echo"))
        ast.wait_log(r"Consul server error 500: .*X-Consul-Token: <redacted>")
        assert_no_leak(secrets, instances, seen, agent, [echo])

    for instance in instances:
        r.unload(instance)
    assert_no_leak(secrets, instances, seen, agent)
