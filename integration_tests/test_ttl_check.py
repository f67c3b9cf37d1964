"""The TTL check: on Asterisk 16 and 22 against a real Consul 1.8.7 agent, the
module reports Asterisk's state to check-asterisk-ttl-<id> — passing while fully booted, warning
while starting, critical while `core stop gracefully` waits for calls to end — and Consul turns
it critical by itself when the reports stop (Asterisk killed)."""

import re
import signal
import threading
import time
from urllib.parse import unquote

from integration_tests import discovery as d
from integration_tests.calls import asterisk_with_calls, hold_call
from integration_tests import resilience as r
from integration_tests.resilience import status_row

TTL = "3s"
TTL_S = 3.0


def ttl_options(**options):
    """[consul] options of a TTL-only check: none of the EID check's options are set."""
    merged = dict(check_type="ttl", check_ttl=TTL, check_http_port=None, check_interval=None,
                  check_timeout=None)
    merged.update(options)
    return merged


def ttl_id(ast):
    return "check-asterisk-ttl-%s" % ast.eid


def eid_id(ast):
    return "check-asterisk-eid-%s" % ast.eid


def version_of(ast):
    """Asterisk's full version ("16.28.0~dfsg-0+deb11u4", "22.x"), as the module reports it."""
    return ast.rx("core show version").split()[1]


def booted_output(ast):
    return "Asterisk %s is fully booted (EID %s)" % (version_of(ast), ast.eid)


def wait_check(consul, check_id, status, output=None, timeout=20.0):
    """The agent's check once it has this status (and this output, if given)."""
    def found():
        check = consul.checks().get(check_id)
        if check is None or check["Status"] != status:
            return None
        if output is not None and check["Output"] != output:
            return None
        return check
    return d.wait_until(found, timeout=timeout, interval=0.1,
                        what="check %s %s (output %r)" % (check_id, status, output))


def ttl_reports(consul, since, check_id):
    """How many TTL reports (PUT /v1/agent/check/update/<id>) the agent logged after `since`."""
    return sum(1 for _, url in r.consul_writes(consul, since)
               if unquote(url).startswith("/v1/agent/check/update/" + check_id))


def table_row(text, label, value_pattern):
    """The row `label: value` of `discovery show status` whose value matches value_pattern,
    and the row after it (the check's output); AssertionError when absent."""
    match = re.search(r"^\s*%s:\s*(%s)\s*\n\s*output:\s*(.*)$" % (re.escape(label),
                                                                 value_pattern), text, re.M)
    assert match, "no %s row %r followed by its output in:\n%s" % (label, value_pattern, text)
    return match.group(1), match.group(2)


def test_ttl_check_passes_and_is_kept_passing_beyond_its_ttl(
        asterisk_factory, ast_version, module_so, consul_agent):
    """check_type = ttl: one check of Type ttl, no HTTP check, passing with the booted output,
    and still passing after several TTLs because the module keeps reporting."""
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, **ttl_options())
    d.load(ast)
    expected = booted_output(ast)
    check = wait_check(consul_agent, ttl_id(ast), "passing", expected)
    assert check["Type"] == "ttl", check
    assert check["ServiceID"] == ast.eid and check["Name"] == "Asterisk Instance Liveness"
    assert "res_discovery_consul" in check["Notes"], check
    assert eid_id(ast) not in consul_agent.checks(), consul_agent.checks()
    assert [c["CheckID"] for c in consul_agent.checks().values()
            if c["ServiceID"] == ast.eid] == [ttl_id(ast)]

    # Over more than two TTLs every look finds it passing: the reports keep coming.
    since = r.consul_log_offset(consul_agent)
    looked = 0
    end = time.monotonic() + 2.5 * TTL_S
    while time.monotonic() < end:
        check = consul_agent.checks()[ttl_id(ast)]
        assert (check["Status"], check["Output"]) == ("passing", expected), check
        looked += 1
        time.sleep(0.5)
    assert looked >= 5
    # Reported every third of the TTL (1 s): far more than once in 7.5 s.
    assert ttl_reports(consul_agent, since, ttl_id(ast)) >= 3, \
        r.consul_writes(consul_agent, since)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing", timeout=1)

    status = ast.rx("discovery show status")
    assert status_row(status, "Check") == "on, type ttl (config)", status
    assert table_row(status, "TTL check", re.escape(ttl_id(ast)) + r": passing") == \
        ("%s: passing" % ttl_id(ast), expected)
    assert "EID check" not in status, status

    settings = ast.rx("discovery show settings")
    for option, value in (("check_type", "ttl"), ("check_ttl", TTL)):
        assert re.search(r"^\s+%s\s+%s\s+res_discovery_consul\.conf:%d\s*$" % (
            option, value, d.conf_line(ast, option)), settings, re.M), (option, settings)


def test_check_type_both_registers_both_checks_and_both_pass(
        asterisk_factory, ast_version, module_so, consul_agent):
    """check_type = both: the EID check Consul polls and the TTL check the module reports."""
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent, check_type="both",
                  check_ttl=TTL)
    expected = booted_output(ast)
    checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    assert sorted(c["CheckID"] for c in checks) == sorted([eid_id(ast), ttl_id(ast)]), checks
    wait_check(consul_agent, eid_id(ast), "passing")
    assert d.wait_polled(consul_agent, eid_id(ast))["Type"] == "http"
    assert wait_check(consul_agent, ttl_id(ast), "passing", expected)["Type"] == "ttl"

    def both_passing_in_status():
        text = ast.rx("discovery show status")
        return ("%s: passing" % eid_id(ast) in text and "%s: passing" % ttl_id(ast) in text
                and text)
    status = d.wait_until(both_passing_in_status, timeout=10, interval=0.1,
                          what="both checks passing in the status")
    assert status_row(status, "Check") == "on, type both (config)", status
    eid_row, eid_output = table_row(status, "EID check", r"\S+: passing")
    assert eid_row == "%s: passing" % eid_id(ast)
    assert "expected_eid=%s" % ast.eid in eid_output, status
    assert table_row(status, "TTL check", r"\S+: passing")[1] == expected, status
    assert re.search(r"^\s+check_type\s+both\s+res_discovery_consul\.conf:%d\s*$"
                     % d.conf_line(ast, "check_type"), ast.rx("discovery show settings"), re.M)


def test_loaded_at_startup_the_ttl_check_ends_passing(
        asterisk_factory, ast_version, module_so, consul_agent):
    """Loaded from modules.conf, the module may report before Asterisk is fully booted
    (warning, "not fully booted yet"); once booted the check is passing, and a warning, if
    any, came first."""
    ast = asterisk_factory(ast_version, install=[module_so], modules=[d.MODULE], start=False)
    d.write_conf(ast, consul_agent, **ttl_options())
    ast.start()
    assert d.module_running(ast)
    expected = booted_output(ast)
    wait_check(consul_agent, ttl_id(ast), "passing", expected)
    version = re.escape(version_of(ast))
    passing = ast.wait_log(r"Consul: TTL check of %s is passing: Asterisk %s is fully booted "
                           r"\(EID %s\)" % (re.escape(ast.eid), version, re.escape(ast.eid)))
    starting = re.search(r"WARNING.*Consul: TTL check of %s is warning: Asterisk %s is "
                         r"starting: not fully booted yet" % (re.escape(ast.eid), version),
                         ast.log_text())
    if starting is not None:
        assert starting.start() < passing.start()
    assert "TTL check of %s is critical" % ast.eid not in ast.log_text()


def test_graceful_stop_turns_the_ttl_check_critical_while_calls_drain(
        asterisk_factory, ast_version, module_so, consul_agent):
    """`core stop gracefully` with a call up: Asterisk waits for the call, the module reports
    critical ("is shutting down") so consumers drain it, the registration stays; when the
    call ends Asterisk exits and the service is deregistered."""
    ast, flag = asterisk_with_calls(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, **ttl_options())
    d.load(ast)
    version = version_of(ast)
    wait_check(consul_agent, ttl_id(ast), "passing", booted_output(ast))

    hold_call(ast)

    consul_agent.wait_startup_sync()  # timed below: the catalog must follow at once
    since = ast.log_offset()
    # The command returns only when Asterisk is gone: it runs beside the test.
    stopper = threading.Thread(target=ast._rx_raw, args=("core stop gracefully", 60),
                               daemon=True)
    stopper.start()
    shutting_down = "Asterisk %s is shutting down" % version
    wait_check(consul_agent, ttl_id(ast), "critical", shutting_down, timeout=10)
    ast.wait_log(r"WARNING.*Consul: TTL check of %s is critical: %s"
                 % (re.escape(ast.eid), re.escape(shutting_down)), since=since)
    # Draining, not gone: consumers see the service critical while the call goes on.
    d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=1)
    assert ast.is_running()
    assert ast.eid in consul_agent.services()

    flag.touch()
    assert ast.proc.wait(30) == 0
    stopper.join(10)
    d.wait_gone(consul_agent, ast.eid, timeout=5)
    assert ttl_id(ast) not in consul_agent.checks()


def test_killed_asterisk_lets_consul_turn_the_ttl_check_critical(
        asterisk_factory, ast_version, module_so, consul_agent):
    """SIGKILL: nobody reports or deregisters; Consul turns the check critical after the TTL
    by itself and keeps the service until check_deregister_after."""
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, **ttl_options())
    d.load(ast)
    wait_check(consul_agent, ttl_id(ast), "passing", booted_output(ast))
    consul_agent.wait_startup_sync()  # timed below: the catalog must follow at once

    ast.kill(signal.SIGKILL)
    check = wait_check(consul_agent, ttl_id(ast), "critical", timeout=4 * TTL_S)
    assert "TTL expired" in check["Output"], check
    d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=1)
    assert ast.eid in consul_agent.services()
