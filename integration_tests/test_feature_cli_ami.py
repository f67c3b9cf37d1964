"""The operator's commands: maintenance over the CLI and AMI, `discovery show ...`,
and the truth when Consul is down (no false success, no events, answers within the timeout)."""

import re
import time

from integration_tests import discovery as d

REASON = "kernel upgrade #42"


def maintenance_check(checks, service_id):
    return next((c for c in checks if c["CheckID"] == "_service_maintenance:" + service_id), None)


def test_cli_maintenance_makes_the_service_critical_with_the_reason_and_back(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    consul_agent.wait_startup_sync()  # timed below: the catalog must follow at once
    with d.ami(ast) as ami:
        out = ast.rx("discovery set maintenance on " + REASON)
        assert "Maintenance mode for service %s is set" % ast.eid in out
        # Consumers read /v1/health/service/<name>: critical, with the reason.
        checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=1)
        assert maintenance_check(checks, ast.eid)["Notes"] == REASON
        event = d.wait_event(ami, "DiscoverySetMaintenance", Maintenance="true")
        assert (event["ID"], event["Reason"]) == (ast.eid, REASON)
        status = ast.rx("discovery show status")
        assert re.search(r"Maintenance:\s+on: %s" % REASON, status), status
        assert re.search(r"Health:\s+critical", status), status

        # A new reason while on replaces the old one (Consul alone would keep the first).
        odd = "rack 7 50% & done? ü/#x"
        assert "is set" in ast.rx("discovery set maintenance on " + odd)
        checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=1)
        assert maintenance_check(checks, ast.eid)["Notes"] == odd

        out = ast.rx("discovery set maintenance off")
        assert "Maintenance mode for service %s is unset" % ast.eid in out
        checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "passing", timeout=3)
        assert maintenance_check(checks, ast.eid) is None
        assert d.wait_event(ami, "DiscoverySetMaintenance", Maintenance="false")["ID"] == ast.eid
    assert "Usage: discovery set maintenance" in ast.rx("discovery set maintenance maybe")


def test_ami_maintenance_action_answers_and_fires_events(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_service(consul_agent, ast.eid)
    consul_agent.wait_startup_sync()  # timed below: the catalog must follow at once
    with d.ami(ast) as ami:
        reply = ami.action("DiscoverySetMaintenance", Enable="yes", Reason=REASON)
        assert reply["Response"] == "Success", reply
        assert (reply["ServiceID"], reply["Maintenance"]) == (ast.eid, "on")
        event = d.wait_event(ami, "DiscoverySetMaintenance", Maintenance="true")
        assert (event["ID"], event["Reason"]) == (ast.eid, REASON)
        checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=1)
        assert maintenance_check(checks, ast.eid)["Notes"] == REASON

        reply = ami.action("DiscoverySetMaintenance", Enable="no")
        assert reply["Response"] == "Success", reply
        assert d.wait_event(ami, "DiscoverySetMaintenance", Maintenance="false")["ID"] == ast.eid
        assert maintenance_check(d.health_entries(consul_agent, "Asterisk")[0]["Checks"],
                                 ast.eid) is None

        bad = ami.action("DiscoverySetMaintenance", Enable="perhaps")
        assert bad["Response"] == "Error" and "Enable" in bad["Message"], bad
        missing = ami.action("DiscoverySetMaintenance")
        assert missing["Response"] == "Error", missing
        time.sleep(0.3)
        assert len(d.events(ami, "DiscoverySetMaintenance")) == 2


def test_show_status_tells_what_consul_holds(asterisk_factory, ast_version, module_so,
                                             consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent, name="pbx")
    d.wait_health(consul_agent, "pbx", ast.eid, "passing")
    status = ast.rx("discovery show status")
    assert re.search(r"Agent:\s+%s \(reachable, Consul 1\.8\.7\)" % consul_agent.url, status)
    assert re.search(r"Service:\s+%s \(name pbx\) at 127\.0\.0\.1:5060" % ast.eid, status)
    assert re.search(r"Registered:\s+yes", status) and re.search(r"Health:\s+passing", status)
    assert re.search(r"Check:\s+on, type http \(config\)", status), status
    assert re.search(r"EID check:\s+check-asterisk-eid-%s: passing" % ast.eid, status), status

    # Someone else's change in Consul shows live, not from memory.
    consul_agent.put("/v1/agent/service/maintenance/%s?enable=true&reason=ops" % ast.eid)
    status = ast.rx("discovery show status")
    assert re.search(r"Health:\s+critical", status), status
    assert re.search(r"Maintenance:\s+ON in Consul", status), status


# ----------------------------------------------------------------------- Consul is down

def test_refused_agent_commands_say_it_failed_and_no_events_fire(
        asterisk_factory, ast_version, module_so, refusing_peer):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, refusing_peer, consul_timeout_ms=1500)
    limit = 1.5 + d.rx_overhead(ast) + 0.5
    with d.ami(ast) as ami:
        d.load(ast)
        out, took = d.timed_rx(ast, "discovery set maintenance on " + REASON)
        assert "Maintenance mode for service %s is NOT set: " % ast.eid in out, out
        assert "cannot reach Consul" in out and "failed" in out, out
        assert took < limit, took
        status, took = d.timed_rx(ast, "discovery show status")
        assert re.search(r"Agent:\s+\S+ \(UNREACHABLE\)", status), status
        assert re.search(r"Registered:\s+no", status), status
        assert re.search(r"Maintenance:\s+on: .*\(requested; not applied in Consul yet\)",
                         status), status
        assert took < limit, took

        reply = ami.action("DiscoverySetMaintenance", Enable="no")
        assert reply["Response"] == "Error" and "cannot reach Consul" in reply["Message"], reply
        assert not d.events(ami, "DiscoveryRegister", "DiscoverySetMaintenance",
                            "DiscoveryDeregister")
        ast.rx("module unload " + d.MODULE)
        assert not d.events(ami, "DiscoveryDeregister")


def test_unanswering_agent_commands_time_out_within_consul_timeout_ms(
        asterisk_factory, ast_version, module_so, blackhole_peer):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, blackhole_peer, consul_timeout_ms=1200)
    overhead = d.rx_overhead(ast)
    with d.ami(ast) as ami:
        d.load(ast)
        out, took = d.timed_rx(ast, "discovery set maintenance on " + REASON)
        assert "is NOT set: timed out after 1200 ms" in out, out
        assert took < 1.2 + overhead + 0.5, (took, overhead)

        status, took = d.timed_rx(ast, "discovery show status")
        assert re.search(r"Agent:\s+\S+ \(UNREACHABLE\)", status), status
        assert took < 1.2 + overhead + 0.5, (took, overhead)

        began = time.monotonic()
        reply = ami.action("DiscoverySetMaintenance", Enable="yes")
        assert time.monotonic() - began < 1.2 + 0.5
        assert reply["Response"] == "Error", reply
        assert not d.events(ami, "DiscoveryRegister", "DiscoverySetMaintenance")


def test_agent_stopped_after_registration_then_back(asterisk_factory, ast_version, module_so,
                                                    consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent)  # timeout 1000 ms
    limit = 1.0 + d.rx_overhead(ast) + 0.5
    with d.loaded_with_ami(ast) as ami:
        consul_agent.stop()
        out, took = d.timed_rx(ast, "discovery set maintenance on " + REASON)
        assert "is NOT set" in out and "cannot reach Consul" in out, out
        assert took < limit, took
        status = ast.rx("discovery show status")
        assert re.search(r"Agent:\s+\S+ \(UNREACHABLE\)", status), status
        assert re.search(r"Registered:\s+yes, .*as last seen", status), status
        assert "not applied in Consul yet" in status, status
        assert not d.events(ami, "DiscoverySetMaintenance")

        # The agent comes back empty (-dev): the module registers again and applies the
        # maintenance it was asked for; only now is it announced.
        consul_agent.start()
        d.wait_service(consul_agent, ast.eid, timeout=40)
        checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=10)
        assert maintenance_check(checks, ast.eid)["Notes"] == REASON
        assert d.wait_event(ami, "DiscoveryRegister", timeout=5)["ID"] == ast.eid
        assert d.wait_event(ami, "DiscoverySetMaintenance", timeout=5)["Reason"] == REASON
