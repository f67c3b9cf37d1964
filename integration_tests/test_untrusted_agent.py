"""What answers on the agent's port is not always Consul, on real Asterisk 16 and 22.

A peer that redirects never gets the token sent on (nor does the address it names); one that
drips its answers or sends an endless body costs a bounded time and memory, and the unload
stays prompt; malformed KV answers are said once and retried with backoff; a second box with
the same `id` keeps its KV keys (a conflict, said in the status); config input that would
hang or misroute is refused at load with file, line and reason.
"""

import re
import time

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.resilience import status_row
from integration_tests.testbed.peers import StandInPeer

TOKEN = "3f1d2e4c-0000-4000-8000-untrusted-peer"


def test_the_token_never_follows_a_redirect_and_the_redirect_is_named(
        asterisk_factory, ast_version, module_so, consul_agent):
    with StandInPeer(agent=consul_agent) as elsewhere, StandInPeer(mode="redirect") as peer:
        peer.location = elsewhere.url
        ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
        since = ast.log_offset()
        d.write_conf(ast, peer, token=TOKEN, id="redirected")
        d.load(ast)
        ast.wait_log(r"WARNING.*Consul: PUT /v1/agent/service/register: the agent at "
                     r"http://127\.0\.0\.1:%d answered a redirect \(307 to "
                     r"http://127\.0\.0\.1:%d/v1/agent/service/register\?replace-existing-"
                     r"checks=true\): not followed" % (peer.port, elsewhere.port), since=since)
        time.sleep(2.0)  # the watch's look and the retries, redirected too
        status = ast.rx("discovery show status")
        assert "answered a redirect" in status_row(status, "Last error"), status
        assert elsewhere.requests == []
        assert peer.token_seen == {True}  # it did go to the configured agent, and only there
        r.unload(ast)
    assert TOKEN not in ast.log_text() and TOKEN not in status


def test_a_dripping_agent_is_cut_at_the_deadline_and_unload_stays_prompt(
        asterisk_factory, ast_version, module_so):
    with StandInPeer(mode="drip", drip_s=0.2, drip_bytes=100000) as peer:
        ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
        since = ast.log_offset()
        d.write_conf(ast, peer, id="dripped", consul_timeout_ms=1000)
        d.load(ast)
        ast.wait_log(r"WARNING.*Consul: PUT /v1/agent/service/register: no answer from Consul "
                     r"at http://127\.0\.0\.1:%d within 1 s" % peer.port, since=since)
        time.sleep(2.0)
        _, took = r.unload(ast)
    # The deregistration's budget (consul_timeout_ms), not the drip's 5.5 hours.
    assert took < 5.0, took
    assert r.module_threads(ast) == 0


def test_an_endless_body_costs_bounded_memory(asterisk_factory, ast_version, module_so):
    with StandInPeer(mode="endless") as peer:
        ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
        since = ast.log_offset()
        d.write_conf(ast, peer, id="endless", consul_timeout_ms=20000)
        rss_before = _rss_kb(ast.pid)
        d.load(ast)
        ast.wait_log(r"Consul: PUT /v1/agent/service/register: the answer is longer than the "
                     r"\d+ bytes accepted", since=since, timeout=30)
        time.sleep(3.0)
        grown_mb = (_rss_kb(ast.pid) - rss_before) / 1024.0
        r.unload(ast)
    # The module itself (~26 MB at its first load) and one refused answer of 4 MB at most.
    assert grown_mb < 80, grown_mb


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as fh:
        return int(re.search(r"VmRSS:\s+(\d+) kB", fh.read()).group(1))


def test_a_malformed_kv_answer_is_said_once_and_retried_with_backoff(
        asterisk_factory, ast_version, module_so, consul_agent):
    malformed = '[{"Key": "asterisk/malformed/role", "Value": "abc", "Session": ""}]'
    with StandInPeer(agent=consul_agent, override={"/v1/kv/": (200, malformed)}) as peer:
        ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
        since = ast.log_offset()
        d.write_conf(ast, peer, id="malformed", check="no", kv_prefix="asterisk/${ID}",
                     extra_sections={"kv": {"role": "edge"}})
        d.load(ast)
        ast.wait_log(r"WARNING.*Consul: KV keys under asterisk/malformed not in place: GET "
                     r"/v1/kv/asterisk/malformed/: an entry is not a KV entry as Consul sends "
                     r"it", since=since)
        began = time.monotonic()
        time.sleep(5.0)
        reads = [q for q in peer.calls(began, "/v1/kv/") if q.method == "GET"]
        resyncs = peer.calls(began, "/v1/agent/service/malformed")
        status = ast.rx("discovery show status")
        r.unload(ast)
    assert len(reads) <= 12, "%d KV reads in 5 s: spinning" % len(reads)
    assert len(resyncs) >= 3, "the resync every 1 s goes on"
    assert "not a KV entry" in status_row(status, "KV error"), status
    assert len(re.findall(r"KV keys under asterisk/malformed not in place",
                          ast.log_text(since))) == 1


def test_a_second_box_with_the_same_id_keeps_its_keys_and_the_conflict_is_said(
        asterisk_factory, ast_version, module_so, consul_agent):
    """The other box: a session named as ours on another node (its node put in the catalog),
    holding one of our keys. Ours never destroys it; the status says who holds the key."""
    prefix = "asterisk/twins"
    consul_agent.put("/v1/catalog/register", json={"Node": "twin-box", "Address": "127.0.0.2"}
                     ).raise_for_status()
    created = consul_agent.put("/v1/session/create", json={
        "Name": "res_discovery_consul:twins", "Node": "twin-box", "LockDelay": "0s",
        "NodeChecks": [], "Checks": []})
    created.raise_for_status()
    theirs = created.json()["ID"]
    assert consul_agent.put("/v1/kv/%s/sip" % prefix, params={"acquire": theirs},
                            data=b"the twin").json() is True
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, id="twins", check="no", kv_prefix="asterisk/${ID}",
                 extra_sections={"kv": {"sip": "${ADDRESS}", "role": "edge"}})
    with d.ami(ast) as ami:
        d.load(ast)
        event = d.wait_event(ami, "DiscoveryKvConflict", ID="twins")
        assert (event["Key"], event["Session"], event["Node"]) == (
            prefix + "/sip", theirs, "twin-box"), event

        def reported():
            status = ast.rx("discovery show status")
            return status if re.search(r"^\s*KV error:", status, re.M) else None
        status = d.wait_until(reported, timeout=10, interval=0.1, what="the conflict in status")
        assert re.fullmatch(
            r"KV key %s/sip is held by a live session of another Asterisk with the same id "
            r"\(session %s of node twin-box; this box's agent is node \S+\): not taken over; "
            r"give each box its own id" % (prefix, theirs), status_row(status, "KV error")), status
        time.sleep(3.0)  # resyncs every second: still not taken, and said on AMI once
        assert len(d.events(ami, "DiscoveryKvConflict")) == 1
    held = consul_agent.get("/v1/kv/%s/sip" % prefix).json()[0]
    assert held["Session"] == theirs
    assert consul_agent.get("/v1/session/info/%s" % theirs).json()
    role = consul_agent.get("/v1/kv/%s/role" % prefix).json()[0]
    assert role["Session"] not in ("", theirs)
    r.unload(ast)
    assert consul_agent.get("/v1/kv/%s/sip" % prefix).json()[0]["Session"] == theirs


def test_input_that_would_hang_or_misroute_is_refused_at_load_with_the_reason(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    for value in (".", "..", "pbx\\1"):
        d.write_conf(ast, consul_agent, id=value)
        log = d.load_declined(ast)
        assert re.search(r"res_discovery_consul\.conf:%d: \[consul\] id = '%s': must not"
                         % (d.conf_line(ast, "id"), re.escape(value)), log), log
    # Self-doubling templates: refused before they expand (22 lines, millions of entries).
    lines = ["[t0](!)", "a = 1"] + ["[t%d](!,t%d,t%d)" % (i, i - 1, i - 1) for i in range(1, 22)]
    ast.write_config(d.CONF, "\n".join(lines) + "\n[consul]\nhost = 127.0.0.1\n")
    _, took = r.timed(d.load_declined, ast)
    assert took < 10.0
    assert "options with what its templates give it" in ast.log_text()
    # A 270 kB tags line loads (linear parsing), and the service carries every tag.
    tags = ",".join("t%d" % i for i in range(30000))
    d.write_conf(ast, consul_agent, id="many-tags", tags=tags)
    _, took = r.timed(d.load, ast)
    assert took < 10.0
    d.wait_service(consul_agent, "many-tags")
    assert len(consul_agent.get("/v1/agent/service/many-tags").json()["Tags"]) == 30000
    r.unload(ast)
