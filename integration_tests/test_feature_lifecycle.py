"""Lifecycle: unload, every kind of shutdown and reload leave Consul telling the truth."""

import re
import signal
import time

import pytest

from integration_tests import discovery as d


def test_unload_deregisters_and_says_so(asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent, name="pbx")
    d.wait_service(consul_agent, ast.eid)
    with d.ami(ast) as ami:
        ast.rx("module unload " + d.MODULE)
        assert ast.eid not in consul_agent.services()  # gone before the unload returned
        event = d.wait_event(ami, "DiscoveryDeregister")
        assert (event["ID"], event["Name"]) == (ast.eid, "pbx")
    assert not d.module_running(ast)
    # And a load after that registers again.
    d.load(ast)
    d.wait_service(consul_agent, ast.eid)


@pytest.mark.parametrize("how", ["core stop now", "core stop gracefully", "core restart now",
                                 "SIGTERM"])
def test_shutdown_deregisters(asterisk_factory, ast_version, module_so, consul_agent, how):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_service(consul_agent, ast.eid)
    since = ast.log_offset()
    if how == "SIGTERM":
        ast.kill(signal.SIGTERM)
    else:
        ast._rx_raw(how, timeout=10)
    ast.wait_log(r"Consul: service %s deregistered" % ast.eid, since=since, timeout=15)
    if how == "core restart now":
        # The same process comes back (without the module: it was loaded from the CLI).
        ast.wait_log(r"Asterisk Ready", since=since, timeout=30)
    elif ast.proc is not None:
        assert ast.proc.wait(20) == 0
    assert ast.eid not in consul_agent.services()


def test_reload_unchanged_does_nothing_and_a_new_name_reregisters_in_place(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, name="before")
    with d.loaded_with_ami(ast) as ami:
        d.wait_health(consul_agent, "before", ast.eid, "passing")
        ast.rx("module reload " + d.MODULE)
        assert not d.events(ami, "DiscoveryRegister", "DiscoveryDeregister", settle=1.0)

        since = ast.log_offset()
        d.write_conf(ast, consul_agent, name="after")
        assert "reloaded" in ast.rx("module reload " + d.MODULE).lower()
        event = d.wait_event(ami, "DiscoveryRegister", Name="after")
        assert event["ID"] == ast.eid
        assert list(consul_agent.services()) == [ast.eid]
        assert consul_agent.services()[ast.eid]["Service"] == "after"
        assert not d.events(ami, "DiscoveryDeregister")  # in place: never deregistered
        assert "deregistered" not in ast.log_text(since)
        d.wait_health(consul_agent, "after", ast.eid, "passing")


def test_reload_with_a_new_id_moves_the_registration(asterisk_factory, ast_version, module_so,
                                                     consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, id="old-id")
    with d.loaded_with_ami(ast, "old-id") as ami:
        d.write_conf(ast, consul_agent, id="new-id")
        ast.rx("module reload " + d.MODULE)
        assert d.wait_event(ami, "DiscoveryRegister")["ID"] == "new-id"
        assert d.wait_event(ami, "DiscoveryDeregister")["ID"] == "old-id"
    assert list(consul_agent.services()) == ["new-id"]
    d.wait_health(consul_agent, "Asterisk", "new-id", "passing")


def test_reload_keeps_the_running_settings_on_a_bad_file_and_deregisters_when_disabled(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_service(consul_agent, ast.eid)

    d.write_conf(ast, consul_agent, discovery_port="sixty")
    since = ast.log_offset()
    ast.rx("module reload " + d.MODULE)
    ast.wait_log(r"ERROR.*discovery_port = 'sixty'", since=since)
    ast.wait_log(r"running configuration stays in use", since=since)
    assert consul_agent.services()[ast.eid]["Port"] == 5060
    assert re.search(r"^\s+discovery_port\s+5060\s", ast.rx("discovery show settings"), re.M)

    with d.ami(ast) as ami:
        d.write_conf(ast, consul_agent, general={"enabled": "no"})
        ast.rx("module reload " + d.MODULE)
        assert d.wait_event(ami, "DiscoveryDeregister")["ID"] == ast.eid
        assert ast.eid not in consul_agent.services()
        assert "disabled" in ast.rx("discovery show status")
        out = ast.rx("discovery set maintenance on")
        assert "is set" not in out and "not running" in out, out

        d.write_conf(ast, consul_agent, general={"enabled": "yes"})
        ast.rx("module reload " + d.MODULE)
        assert d.wait_event(ami, "DiscoveryRegister")["ID"] == ast.eid
    d.wait_service(consul_agent, ast.eid)


def test_maintenance_is_kept_when_a_reload_reregisters(asterisk_factory, ast_version, module_so,
                                                       consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_service(consul_agent, ast.eid)
    consul_agent.wait_startup_sync()  # timed below: the catalog must follow at once
    assert "is set" in ast.rx("discovery set maintenance on draining")
    d.write_conf(ast, consul_agent, tags="asterisk,drained")
    ast.rx("module reload " + d.MODULE)
    d.wait_service(consul_agent, ast.eid, Tags=["asterisk", "drained"])
    checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=1)
    assert any(c["Notes"] == "draining" for c in checks), checks


def test_unload_and_shutdown_do_not_hang_on_an_unanswering_agent(
        asterisk_factory, ast_version, module_so, blackhole_peer):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, blackhole_peer, consul_timeout_ms=1000)
    overhead = d.rx_overhead(ast)
    d.load(ast)
    d.wait_until(lambda: blackhole_peer.accepted >= 1, timeout=5, interval=0.1,
                 what="a registration attempt")
    out, took = d.timed_rx(ast, "module unload " + d.MODULE)
    assert not d.module_running(ast), out
    assert took < 1.0 + overhead + 0.7, took  # one Consul timeout, not one per call

    d.load(ast)
    accepted = blackhole_peer.accepted
    d.wait_until(lambda: blackhole_peer.accepted > accepted, timeout=5, interval=0.1,
                 what="a registration attempt")
    began = time.monotonic()
    ast._rx_raw("core stop now", timeout=10)
    assert ast.proc.wait(10) == 0
    assert time.monotonic() - began < 1.0 + 1.2
