"""Drain on real Asterisk 16 and 22 against a real Consul agent: out of the healthy set within a
second with a call up, still registered, never back while the call lasts, DiscoveryDrained when
it ends, back in with `off`; and every kind of graceful stop or restart draining the same way by
itself, the service deregistered when Asterisk exits."""

import threading
import time
from urllib.parse import quote

import pytest

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.calls import asterisk_with_calls, hold_call

NAME = "Asterisk"


def healthy(consul, service_id):
    """Is service_id in /v1/health/service/Asterisk?passing (what consumers route to)?"""
    entries = consul.get("/v1/health/service/%s" % NAME, params={"passing": "1"}).json() or []
    return any(e["Service"]["ID"] == service_id for e in entries)


def seconds_until(predicate, timeout, what):
    began = time.monotonic()
    d.wait_until(predicate, timeout=timeout, interval=0.02, what=what)
    return time.monotonic() - began


def drain_check(consul, ast):
    return consul.checks().get("check-asterisk-drain-%s" % ast.eid)


def test_drain_with_a_call_up_until_it_ends_then_back_in(asterisk_factory, ast_version,
                                                         module_so, consul_agent, capsys):
    ast, flag = asterisk_with_calls(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent)
    d.load(ast)
    d.wait_until(lambda: healthy(consul_agent, ast.eid), timeout=10, interval=0.05,
                 what="in the healthy set")
    hold_call(ast)
    consul_agent.wait_startup_sync()  # timed below: the catalog must follow at once
    with d.ami(ast) as ami:
        out = ast.rx("discovery set drain on moving to new hardware")
        assert "Drain for service %s is on (Consul accepted it)" % ast.eid in out, out
        out_of_set = seconds_until(lambda: not healthy(consul_agent, ast.eid), 1.0,
                                   "out of the healthy set")
        assert ast.eid in consul_agent.services()  # still registered
        check = drain_check(consul_agent, ast)
        assert check["Status"] == "critical" and "draining" in check["Notes"]
        assert "moving to new hardware" in check["Notes"]
        assert d.wait_event(ami, "DiscoverySetDrain", Drain="on")["ID"] == ast.eid
        # Never back while the call lasts (the EID check passes all along).
        for _ in range(15):
            assert not healthy(consul_agent, ast.eid)
            time.sleep(0.2)
        assert not [b for b in ami.blocks if b.get("Event") == "DiscoveryDrained"]
        status = ast.rx("discovery show status")
        assert "2 channels left" in r.status_row(status, "Drain"), status

        flag.touch()
        drained = d.wait_event(ami, "DiscoveryDrained", timeout=5)
        assert drained["ID"] == ast.eid and drained["Reason"] == "moving to new hardware"
        assert "drained at" in r.status_row(ast.rx("discovery show status"), "Drain")
        assert not healthy(consul_agent, ast.eid)  # drained, and out until switched off

        out = ast.rx("discovery set drain off")
        assert "is off (Consul accepted it)" in out, out
        back = seconds_until(lambda: healthy(consul_agent, ast.eid), 1.0, "back in the set")
        assert drain_check(consul_agent, ast) is None
    with capsys.disabled():
        print("\n[Asterisk %s] drain on -> out of the healthy set %.2f s after the command; "
              "off -> back in %.2f s" % (ast.version, out_of_set, back))


def test_maintenance_off_does_not_end_a_drain(asterisk_factory, ast_version, module_so,
                                             consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_until(lambda: healthy(consul_agent, ast.eid), timeout=10, what="healthy")
    assert "is on" in ast.rx("discovery set drain on")
    assert "is set" in ast.rx("discovery set maintenance on upgrade")
    assert "is unset" in ast.rx("discovery set maintenance off")
    assert drain_check(consul_agent, ast) is not None and not healthy(consul_agent, ast.eid)
    assert "is set" in ast.rx("discovery set maintenance on upgrade")
    assert "is off" in ast.rx("discovery set drain off")
    assert "_service_maintenance:%s" % ast.eid in consul_agent.checks()
    assert not healthy(consul_agent, ast.eid)
    reply = ast.ami("DiscoverySetDrain", Enable="yes", Reason="over AMI")
    assert reply["Response"] == "Success" and reply["Drain"] == "on", reply
    assert "over AMI" in drain_check(consul_agent, ast)["Notes"]


STOPS = ["core stop gracefully", "core stop when convenient", "core restart gracefully",
         "core restart when convenient"]


@pytest.mark.parametrize("command", STOPS)
def test_every_graceful_stop_drains_then_deregisters_at_exit(
        asterisk_factory, ast_version, module_so, consul_agent, command, capsys):
    ast, flag = asterisk_with_calls(asterisk_factory, ast_version, module_so,
                                    modules=[d.MODULE], start=False)
    d.write_conf(ast, consul_agent)
    ast.start()
    d.wait_until(lambda: healthy(consul_agent, ast.eid), timeout=10, what="healthy")
    instance = consul_agent.services()[ast.eid]["Meta"]["instance"]
    hold_call(ast)
    consul_agent.wait_startup_sync()  # timed below: the catalog must follow at once
    since = r.consul_log_offset(consul_agent)
    began = time.monotonic()
    # The command returns only when Asterisk stops (or restarts): it runs beside the test.
    stopper = threading.Thread(target=ast._rx_raw, args=(command, 60), daemon=True)
    stopper.start()
    took = seconds_until(lambda: not healthy(consul_agent, ast.eid), 1.5, "out of the set")
    assert time.monotonic() - began < 1.5
    assert "Asterisk is stopping" in drain_check(consul_agent, ast)["Notes"]
    time.sleep(1.0)
    assert ast.is_running() and ast.eid in consul_agent.services()  # draining, not gone
    flag.touch()
    deregistered = ("PUT", "/v1/agent/service/deregister/%s" % quote(ast.eid, safe=""))
    d.wait_until(lambda: deregistered in r.consul_requests(consul_agent, since), timeout=30,
                 what="the deregistration at exit")
    if "restart" in command:
        # The same process comes back: a new start, a new instance, not draining.
        d.wait_until(lambda: consul_agent.services().get(ast.eid, {}).get("Meta", {}).get(
            "instance", instance) != instance, timeout=30, what="the new start registered")
        d.wait_until(lambda: healthy(consul_agent, ast.eid), timeout=10, what="healthy again")
        assert drain_check(consul_agent, ast) is None
    else:
        assert ast.proc.wait(30) == 0
        d.wait_gone(consul_agent, ast.eid, timeout=5)
    stopper.join(10)
    with capsys.disabled():
        print("\n[Asterisk %s] %s -> out of the healthy set %.2f s" % (ast.version, command, took))
