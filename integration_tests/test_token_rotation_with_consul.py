"""Token rotation without reload, and a deleted token that never strands the registration, on
real Asterisk 16 and 22 against Consul 1.8.7 with ACLs (default deny); and the EID check's
thresholds as the agent applies them.

The module talks to a client agent with a data dir (joined to a dev server): that agent keeps
each service with the token it was registered with across its own restart and syncs it to the
servers with that token, which is where a deleted token strands a registration (consul #3345).
"""

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.testbed.runtime import wait_until


def new_token(server):
    """(accessor, secret) of a token that may write services named Asterisk* and read nodes."""
    policy = {"Name": "asterisk-rotation",
              "Rules": 'service_prefix "Asterisk" { policy = "write" }\n'
                       'node_prefix "" { policy = "read" }'}
    server.put("/v1/acl/policy", json=policy)  # 200 the first time; the same name after
    reply = server.put("/v1/acl/token", json={"Policies": [{"Name": "asterisk-rotation"}]})
    assert reply.status_code == 200, reply.text
    return reply.json()["AccessorID"], reply.json()["SecretID"]


def delete_token(server, accessor):
    assert server.delete("/v1/acl/token/%s" % accessor).status_code == 200


def server_and_client(consul_factory):
    server = consul_factory(acl=True)
    acl = {"enabled": True, "default_policy": "deny", "down_policy": "deny",
           "tokens": {"agent": server.master_token}}
    client = consul_factory(acl=True, client_of=server, start=False, extra_config={"acl": acl})
    client.master_token = server.master_token  # the helpers' token: the cluster's master
    client.start()
    return server, client


class Catalog:
    """Watches /v1/health/service/Asterisk?passing on the server (what consumers read) in a
    thread of its own, and records each moment the service was not in it."""

    def __init__(self, server, service_id):
        self.server, self.service_id = server, service_id
        self.missing = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def passing(self):
        reply = self.server.get("/v1/health/service/Asterisk", params={"passing": ""}, timeout=2)
        return any(e["Service"]["ID"] == self.service_id for e in reply.json())

    def _run(self):
        while not self._stop.wait(0.05):
            if not self.passing():
                self.missing.append(time.time())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def token_row(ast):
    return r.status_row(ast.rx("discovery show status"), "Token")


_ROTATION = re.compile(r"last rotation: read (\d\d):(\d\d):(\d\d)\.(\d{3}), in use \+(\d+) ms, "
                       r"re-registered \+(\d+) ms")


def rotation_after(ast, written_at):
    """Wait for the rotation the status shows; (file written -> read, -> in use,
    -> re-registered) in ms, from the wall-clock time the test wrote the file."""
    def shown():
        row = token_row(ast)
        match = _ROTATION.search(row)
        if not match or "accepted" not in row:
            return None
        h, m, s, ms, in_use, registered = (int(g) for g in match.groups())
        written = time.localtime(written_at)
        read_ms = ((h - written.tm_hour) * 3600 + (m - written.tm_min) * 60
                   + (s - written.tm_sec)) * 1000 + ms - int(written_at * 1000) % 1000
        return read_ms if read_ms >= 0 else None
    read_ms = wait_until(shown, timeout=10, interval=0.05, what="the rotation in the status")
    in_use, registered = (int(g) for g in _ROTATION.search(token_row(ast)).groups()[4:])
    return read_ms, read_ms + in_use, read_ms + registered


def test_a_rotated_token_keeps_the_service_passing_through_rewrite_rename_delete_and_restart(
        asterisk_factory, ast_version, module_so, consul_factory):
    server, client = server_and_client(consul_factory)
    (first_id, first), (second_id, second), (third_id, third) = (new_token(server)
                                                                 for _ in range(3))
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    ast.write_config("consul.token", first + "\n")
    d.write_conf(ast, client, token_file="consul.token")
    d.load(ast)
    d.wait_health(server, "Asterisk", ast.eid, "passing")
    assert "accepted" in token_row(ast)

    with Catalog(server, ast.eid) as catalog:
        # -- rewrite in place, then delete the old token: new first, then delete ----------
        written_at = time.time()
        ast.write_config("consul.token", second + "\n")
        rewrite = rotation_after(ast, written_at)
        delete_token(server, first_id)
        # -- a file renamed over the token file ---------------------------------------------
        fresh = ast.etc_dir / "consul.token.new"
        fresh.write_text(third)
        written_at = time.time()
        fresh.rename(ast.etc_dir / "consul.token")
        rename = rotation_after(ast, written_at)
        delete_token(server, second_id)
        wait_until(lambda: len(catalog.missing) or time.time() > written_at + 3, timeout=5,
                   interval=0.1, what="three seconds of watching")  # the agent syncs
        assert catalog.missing == [], "out of the healthy set during the rotations"
    print("\nrotation timeline on Asterisk %s (ms after the file was written): "
          "by rewrite: read %d, in use %d, re-registered %d; by rename: read %d, in use %d, "
          "re-registered %d" % ((ast_version,) + rewrite + rename))
    for figures in (rewrite, rename):
        assert figures[2] < 2500, figures  # within the second or two promised

    row = token_row(ast)
    assert "file " in row and "consul.token (token_file, watched)" in row, row
    for secret in (first, second, third):
        assert secret not in row and secret not in ast.log_text()

    # -- the agent restarts: it syncs what it kept with the token it was registered with ---
    client.restart()
    d.wait_health(server, "Asterisk", ast.eid, "passing", timeout=30)
    assert "ACL not found" not in client.log_text().rsplit("--- starting", 1)[1]

    # -- drain and maintenance still reach Consul; unload deregisters ----------------------
    assert "is on" in ast.rx("discovery set drain on rotation test")
    d.wait_health(server, "Asterisk", ast.eid, "critical", timeout=10)
    assert "is off" in ast.rx("discovery set drain off")
    assert "is set" in ast.rx("discovery set maintenance on rotation test")
    wait_until(lambda: "_service_maintenance:%s" % ast.eid in client.checks(), timeout=5,
               interval=0.1, what="maintenance in the agent")
    assert "is unset" in ast.rx("discovery set maintenance off")
    d.wait_health(server, "Asterisk", ast.eid, "passing", timeout=10)
    r.unload(ast)
    d.wait_gone(client, ast.eid, timeout=5)
    wait_until(lambda: not d.health_entries(server, "Asterisk"), timeout=10, interval=0.1,
               what="the service gone from the catalog")


def test_a_token_deleted_first_is_said_at_once_and_healed_once_the_new_one_is_in_the_file(
        asterisk_factory, ast_version, module_so, consul_factory):
    server, client = server_and_client(consul_factory)
    (old_id, old), (_, new) = new_token(server), new_token(server)
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    ast.write_config("consul.token", old)
    d.write_conf(ast, client, token_file="consul.token", check_type="both", check_ttl="3s")
    with d.loaded_with_ami(ast) as ami:
        d.wait_health(server, "Asterisk", ast.eid, "passing")
        delete_token(server, old_id)  # the wrong order: the old token goes first
        event = d.wait_event(ami, "DiscoveryTokenRejected", timeout=10)  # at the next report
        assert event["ID"] == ast.eid and event["Reason"] == "ACL not found", event
        assert "ACL not found" in token_row(ast)
        ast.wait_log(r"WARNING.*the agent does not know the ACL token in use \(403 ACL not "
                     r"found: deleted or expired\)")
        # The client agent may still take it from its ACL cache (token_ttl) and then fail
        # to sync it to the servers: either way it must reach the catalog once healed.
        said = ast.rx("discovery set drain on too early")
        assert "Consul accepted it" in said or "will keep trying" in said, said

        written_at = time.time()
        ast.write_config("consul.token", new)
        healed = rotation_after(ast, written_at)
        d.wait_health(server, "Asterisk", ast.eid, "critical", timeout=10)  # the drain kept
        assert "is off" in ast.rx("discovery set drain off")
        d.wait_health(server, "Asterisk", ast.eid, "passing", timeout=10)
        rejected = d.events(ami, "DiscoveryTokenRejected")
        assert len(rejected) == 1, "said once per change, not at each failure: %r" % rejected
    print("\nhealed on Asterisk %s (ms after the file was written): read %d, in use %d, "
          "re-registered %d" % ((ast_version,) + healed))
    r.unload(ast)
    d.wait_gone(client, ast.eid, timeout=5)


class Toggle:
    """An HTTP proxy in front of Asterisk's EID endpoint that answers 503 on demand."""

    def __init__(self, target_port):
        self.failing = False
        self.polls = 0
        toggle = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                toggle.polls += 1
                if toggle.failing:
                    status, body = 503, b"failing on purpose"
                else:
                    answer = requests.get("http://127.0.0.1:%d%s" % (target_port, self.path),
                                          timeout=2)
                    status, body = answer.status_code, answer.content
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def polls_from_now(self, count):
        seen = self.polls
        wait_until(lambda: self.polls >= seen + count, timeout=10, interval=0.02,
                   what="%d polls of the EID check" % count)


def test_the_thresholds_reach_the_agents_check(asterisk_factory, ast_version, module_so,
                                               consul_factory):
    agent = consul_factory()
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    toggle = Toggle(ast.http_port)
    try:
        d.write_conf(ast, agent, check_http_port=toggle.port, check_interval="1s",
                     check_failures_before_critical=3, check_success_before_passing=2)
        d.load(ast)
        check_id = "check-asterisk-eid-%s" % ast.eid
        d.wait_polled(agent, check_id)
        d.wait_health(agent, "Asterisk", ast.eid, "passing")
        toggle.failing = True
        toggle.polls_from_now(2)
        toggle.failing = False
        toggle.polls_from_now(1)
        assert agent.checks()[check_id]["Status"] == "passing", "two failed polls are not three"
        toggle.failing = True
        toggle.polls_from_now(3)
        wait_until(lambda: agent.checks()[check_id]["Status"] == "critical", timeout=2,
                   interval=0.02, what="critical after the third failed poll")
        toggle.failing = False
        toggle.polls_from_now(1)
        assert agent.checks()[check_id]["Status"] == "critical", "one passing poll is not two"
        toggle.polls_from_now(1)
        wait_until(lambda: agent.checks()[check_id]["Status"] == "passing", timeout=2,
                   interval=0.02, what="passing after the second passing poll")
        # The drain check carries no threshold: out of the healthy set at once.
        assert "is on" in ast.rx("discovery set drain on")
        d.wait_health(agent, "Asterisk", ast.eid, "critical", timeout=3)
        r.unload(ast)
    finally:
        toggle.server.shutdown()
