"""`discovery set check on|off` and the AMI action DiscoverySetCheck: on
Asterisk 16 and 22 against a real Consul agent (check = yes, type http, resync every second).
What the module sent is read back from the agent's request log (log_level DEBUG)."""

import re
from urllib.parse import quote

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.testbed.peers import StandInPeer
from integration_tests.resilience import status_row

OFF_BY_COMMAND = "off (set by 'discovery set check off'; kept until the check options change)"
ON_BY_COMMAND = ("on, type http (set by 'discovery set check on'; kept until the check options "
                 "change)")
ON_BY_CONFIG = "on, type http (config)"
CONSUL_TIMEOUT_S = 1.0  # consul_timeout_ms of discovery.default_options


def off_message(ast):
    return "Health check (all) for service %s is off (Consul accepted it)" % ast.eid


def on_message(ast):
    return "Health check (http) for service %s is on (Consul accepted it)" % ast.eid


def eid_check_id(ast):
    return "check-asterisk-eid-" + ast.eid


def agent_service(consul, service_id):
    """GET /v1/agent/service/<id>: the agent's own record (ContentHash included)."""
    answer = consul.get("/v1/agent/service/%s" % service_id)
    answer.raise_for_status()
    return answer.json()


def registrations(consul, since):
    """PUT /v1/agent/service/register requests the agent logged after byte offset since."""
    return [u for _, u in r.consul_writes(consul, since)
            if u.startswith("/v1/agent/service/register")]


def wait_resyncs(consul, since, count=3):
    """Wait until the module has looked at its service `count` times after `since` (each
    resync starts with GET /v1/agent/service/<id>)."""
    def looked():
        return len([u for _, u in r.consul_requests(consul, since, "GET")
                    if u.startswith("/v1/agent/service/")]) >= count
    d.wait_until(looked, timeout=15, interval=0.2, what="%d resyncs" % count)


def wait_check_row(ast, expected):
    """`discovery show status` once its Check row reads `expected`."""
    def shown():
        status = ast.rx("discovery show status")
        return status if status_row(status, "Check") == expected else None
    return d.wait_until(shown, timeout=10, interval=0.1, what="the Check row %r" % expected)


def reload_ok(ast):
    assert "reloaded" in ast.rx("module reload " + d.MODULE).lower()


def test_set_check_off_removes_the_check_without_reregistering_the_service(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent)
    with d.loaded_with_ami(ast) as ami:
        d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
        assert d.check_of(consul_agent, ast.eid)["Status"] == "passing"
        before = agent_service(consul_agent, ast.eid)
        since = r.consul_log_offset(consul_agent)
        assert ast.rx("discovery set check off").strip() == off_message(ast)
        # Consul accepted it when the command says so.
        assert d.check_of(consul_agent, ast.eid) is None
        assert ast.eid in consul_agent.services()
        event = d.wait_event(ami, "DiscoverySetCheck", Check="off")
        assert event["ID"] == ast.eid
        status = wait_check_row(ast, OFF_BY_COMMAND)
        assert not re.search(r"^\s*EID check:", status, re.M), status

        # Resyncs find the service in sync as it now is: they neither re-register it nor
        # bring the check back.
        wait_resyncs(consul_agent, since)
        assert d.check_of(consul_agent, ast.eid) is None
        assert status_row(ast.rx("discovery show status"), "Check") == OFF_BY_COMMAND
        assert not d.events(ami, "DiscoveryRegister")
        assert len(d.events(ami, "DiscoverySetCheck")) == 1
    assert registrations(consul_agent, since) == []
    assert ("PUT", "/v1/agent/check/deregister/" + quote(eid_check_id(ast), safe="")) in \
        r.consul_writes(consul_agent, since)
    after = agent_service(consul_agent, ast.eid)
    assert after["ContentHash"] == before["ContentHash"], (before, after)


def test_check_off_is_kept_across_a_reload_that_changes_only_tags(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    assert ast.rx("discovery set check off").strip() == off_message(ast)

    before_reload = r.consul_log_offset(consul_agent)
    d.write_conf(ast, consul_agent, tags="blue")
    reload_ok(ast)
    d.wait_service(consul_agent, ast.eid, Tags=["blue"])
    # The new tags are registered in place (once), still without the check.
    assert len(registrations(consul_agent, before_reload)) == 1
    since = r.consul_log_offset(consul_agent)
    wait_resyncs(consul_agent, since)
    assert d.check_of(consul_agent, ast.eid) is None
    assert status_row(ast.rx("discovery show status"), "Check") == OFF_BY_COMMAND
    assert registrations(consul_agent, since) == []  # in sync: nothing to redo


def test_set_check_on_brings_the_check_back_and_it_passes(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent)
    with d.loaded_with_ami(ast) as ami:
        d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
        assert ast.rx("discovery set check off").strip() == off_message(ast)
        since = r.consul_log_offset(consul_agent)
        d.drain(ami)
        assert ast.rx("discovery set check on").strip() == on_message(ast)
        check = d.check_of(consul_agent, ast.eid)
        assert check is not None and check["Name"] == "Asterisk Instance EID Verification"
        assert check["ServiceID"] == ast.eid
        assert d.wait_event(ami, "DiscoverySetCheck", Check="on")["ID"] == ast.eid
        d.wait_until(lambda: (d.check_of(consul_agent, ast.eid) or {}).get("Status") == "passing",
                     timeout=10, interval=0.1,
                     what="the check to pass")
        status = wait_check_row(ast, ON_BY_COMMAND)
        assert status_row(status, "EID check") == "%s: passing" % eid_check_id(ast), status
        assert not d.events(ami, "DiscoveryRegister")
    assert registrations(consul_agent, since) == []
    assert ("PUT", "/v1/agent/check/register") in r.consul_writes(consul_agent, since)


def test_reload_changing_a_check_option_drops_the_override(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    assert ast.rx("discovery set check off").strip() == off_message(ast)
    assert d.check_of(consul_agent, ast.eid) is None

    since = ast.log_offset()
    d.write_conf(ast, consul_agent, check_interval="2s")
    reload_ok(ast)
    ast.wait_log(r"the check options changed: 'discovery set check off' no longer applies; "
                 r"the config decides", since=since)
    d.wait_until(lambda: d.check_of(consul_agent, ast.eid), timeout=10, interval=0.1,
                 what="the check back from the config")
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    wait_check_row(ast, ON_BY_CONFIG)

    # The other way round: config says no, the command says on; a changed check option
    # hands the decision back to the config, which removes the check.
    d.write_conf(ast, consul_agent, check="no")
    reload_ok(ast)
    d.wait_until(lambda: d.check_of(consul_agent, ast.eid) is None, timeout=10, interval=0.1,
                 what="the check removed by the config")
    assert ast.rx("discovery set check on").strip() == on_message(ast)
    assert d.check_of(consul_agent, ast.eid) is not None
    d.write_conf(ast, consul_agent, check="no", check_timeout="2s")
    reload_ok(ast)
    d.wait_until(lambda: d.check_of(consul_agent, ast.eid) is None, timeout=10, interval=0.1,
                 what="the check removed again")
    wait_check_row(ast, "off (config)")


def test_tab_completion_offers_on_and_off(asterisk_factory, ast_version, module_so,
                                          consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    # (Asterisk lists the common prefix first, then the matches.)
    matches = ast.rx('_command matchesarray "discovery set check " ""').split()
    assert "on" in matches and "off" in matches, matches
    matches = ast.rx('_command matchesarray "discovery set check of" "of"').split()
    assert "off" in matches and "on" not in matches, matches
    assert "Usage: discovery set check {on|off}" in ast.rx("discovery set check maybe")


def test_ami_discovery_set_check_answers_and_fires_events(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    with d.ami(ast) as ami:
        reply = ami.action("DiscoverySetCheck", Enable="no")
        assert reply["Response"] == "Success", reply
        assert (reply["ServiceID"], reply["Check"]) == (ast.eid, "off")
        assert reply["Message"] == off_message(ast)
        assert d.wait_event(ami, "DiscoverySetCheck", Check="off")["ID"] == ast.eid
        assert d.check_of(consul_agent, ast.eid) is None

        # Off again changes nothing: success, but no event.
        again = ami.action("DiscoverySetCheck", Enable="no")
        assert again["Response"] == "Success", again

        reply = ami.action("DiscoverySetCheck", Enable="yes")
        assert reply["Response"] == "Success", reply
        assert (reply["ServiceID"], reply["Check"]) == (ast.eid, "on")
        assert reply["Message"] == on_message(ast)
        assert d.wait_event(ami, "DiscoverySetCheck", Check="on")["ID"] == ast.eid
        assert d.check_of(consul_agent, ast.eid) is not None

        bad = ami.action("DiscoverySetCheck", Enable="maybe")
        assert bad["Response"] == "Error" and bad["Message"] == "Enable: must be yes or no", bad
        missing = ami.action("DiscoverySetCheck")
        assert missing["Response"] == "Error", missing
        assert [e["Check"] for e in d.events(ami, "DiscoverySetCheck")] == ["off", "on"]
    assert d.check_of(consul_agent, ast.eid) is not None


# ----------------------------------------------------------------------- Consul is down

def test_agent_stopped_set_check_off_is_not_done_then_applied_when_back(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    consul_agent.stop()
    with d.ami(ast) as ami:
        # Answered after the Consul timeout, well before the CLI's own limit.
        out = ast.rx("discovery set check off", timeout=CONSUL_TIMEOUT_S + 5)
        answer = out.splitlines()[0]  # the CLI adds "Command '...' failed."
        assert answer.startswith("Health check for service %s is NOT switched off: "
                                 % ast.eid), out
        assert "cannot reach Consul" in answer and answer.endswith("; will keep trying"), out
        status = ast.rx("discovery show status", timeout=CONSUL_TIMEOUT_S + 5)
        assert re.search(r"Agent:\s+\S+ \(UNREACHABLE\)", status), status
        assert status_row(status, "Check") == OFF_BY_COMMAND, status
        assert not d.events(ami, "DiscoverySetCheck")

        # The -dev agent comes back empty: the module registers again, without the check
        # the config asks for, since the command said off.
        consul_agent.start()
        d.wait_service(consul_agent, ast.eid, timeout=40)
        since = r.consul_log_offset(consul_agent)
        wait_resyncs(consul_agent, since)
        assert d.check_of(consul_agent, ast.eid) is None
        assert status_row(ast.rx("discovery show status"), "Check") == OFF_BY_COMMAND


def test_agent_unanswering_set_check_on_is_not_done_then_applied_when_back(
        asterisk_factory, ast_version, module_so, consul_agent):
    """The agent keeps its state (no check) while a proxy in front of it drops every
    connection: `set check on` fails, and the check appears once the proxy forwards again."""
    with StandInPeer(agent=consul_agent) as proxy:
        ast = d.start(asterisk_factory, ast_version, module_so, proxy)
        d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
        assert ast.rx("discovery set check off").strip() == off_message(ast)
        assert d.check_of(consul_agent, ast.eid) is None

        proxy.mode = "drop"
        out = ast.rx("discovery set check on", timeout=CONSUL_TIMEOUT_S + 5)
        answer = out.splitlines()[0]  # the CLI adds "Command '...' failed."
        assert answer.startswith("Health check for service %s is NOT switched on: "
                                 % ast.eid), out
        assert "cannot reach Consul" in answer and answer.endswith("; will keep trying"), out
        assert d.check_of(consul_agent, ast.eid) is None

        proxy.mode = "forward"
        d.wait_until(lambda: d.check_of(consul_agent, ast.eid), timeout=30, interval=0.1,
                     what="the check to be added once Consul answers")
        d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
        wait_check_row(ast, ON_BY_COMMAND)
