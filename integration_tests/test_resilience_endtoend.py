"""End to end, on real Asterisk 16 and 22 against real Consul 1.8.7.

An Asterisk killed with SIGKILL (no unload, no deregistration): its EID check is critical
within one check interval. A new Asterisk with another EID then starts on the same address
and ports: the old entry stays critical (the new box answers "EID mismatch") and Consul
removes it within 90 s (DeregisterCriticalServiceAfter has a 1 m minimum in 1.8.7, and its
reaper runs every 30 s), while the new entry passes throughout. One 90 s wait per version.
"""

import signal
import time

from integration_tests import discovery as d

CHECK_INTERVAL_S = 1.0
# Consul runs the check on its own schedule: up to one interval, then the refused connection.
CRITICAL_BOUND_S = CHECK_INTERVAL_S + 1.0
# From critical to reaped: 1 m, then the next run of a reaper that runs every 30 s.
GONE_BOUND_S = 60.0 + 30.0 + 3.0


def _http_conf(port, version):
    """http.conf as the test bed writes it, on a port of our choosing."""
    lines = ["[general]", "enabled = yes", "bindaddr = 127.0.0.1", "bindport = %d" % port]
    if version == "22":
        lines.append("enable_status = yes")
    return "\n".join(lines) + "\n"


def _check(agent, service_id):
    return agent.checks().get("check-asterisk-eid-" + service_id) or {}


def test_killed_asterisk_goes_critical_then_away_and_its_successor_passes(
        asterisk_factory, ast_version, module_so, consul_agent, capsys):
    agent = consul_agent
    options = dict(check_interval="1s", check_timeout="1s", check_deregister_after="1m")
    old = d.start(asterisk_factory, ast_version, module_so, agent, **options)
    d.wait_health(agent, "Asterisk", old.eid, "passing")
    address = (agent.services()[old.eid]["Address"], agent.services()[old.eid]["Port"])

    agent.wait_startup_sync()  # timed below: the catalog must follow at once
    old.kill(signal.SIGKILL)
    killed = time.monotonic()
    d.wait_health(agent, "Asterisk", old.eid, "critical", timeout=CRITICAL_BOUND_S + 5)
    critical = time.monotonic()
    took = critical - killed
    assert took < CRITICAL_BOUND_S, "critical %.2f s after SIGKILL" % took
    assert old.eid in agent.services()  # nobody deregistered it: Consul must

    # The successor: another EID, the same address, SIP port and HTTP port.
    new = d.new_asterisk(asterisk_factory, ast_version, module_so, start=False)
    assert new.eid != old.eid
    new.http_port = old.http_port
    new.write_config("http.conf", _http_conf(new.http_port, ast_version))
    new.start()
    d.write_conf(new, agent, **options)
    d.load(new)
    d.wait_health(agent, "Asterisk", new.eid, "passing", timeout=10)
    service = agent.services()[new.eid]
    assert (service["Address"], service["Port"]) == address
    assert _check(agent, new.eid)["Status"] == "passing"

    # The old entry's check now reaches the new box, which says "not me".
    d.wait_until(lambda: "EID mismatch" in _check(agent, old.eid).get("Output", ""),
                 timeout=10, interval=0.1,
                 what="the old check answered by the new box")
    assert _check(agent, old.eid)["Status"] == "critical"
    # What consul-template renders from: only the new box is passing.
    passing = agent.get("/v1/health/service/Asterisk?passing").json()
    assert [e["Service"]["ID"] for e in passing] == [new.eid]

    # Consul reaps the old entry; the new one passes all along.
    not_passing = []

    def old_gone():
        if _check(agent, new.eid).get("Status") != "passing":
            not_passing.append(time.monotonic() - killed)
        return old.eid not in agent.services()
    d.wait_until(old_gone, timeout=GONE_BOUND_S + 10, interval=0.5, what="the old entry reaped")
    gone = time.monotonic() - critical
    assert gone < GONE_BOUND_S, "old entry removed %.1f s after it went critical" % gone
    assert not not_passing, not_passing
    assert new.eid in agent.services()
    assert [e["Service"]["ID"] for e in agent.get("/v1/health/service/Asterisk").json()] == \
        [new.eid]
    assert "ok" in new.rx("discovery show status")
    with capsys.disabled():
        print("\n[Asterisk %s] SIGKILL -> check critical %.2f s; critical -> entry removed "
              "%.1f s; successor passing all along" % (ast_version, took, gone))
