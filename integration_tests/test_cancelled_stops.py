"""Stops that can be cancelled (issue 19, point 3), on Asterisk 16 and 22, with a call up:

- `core stop gracefully`, then `core abort shutdown`: the shutdown drain ends by itself within
  a second or two (back in the passing set, `discovery show status` no longer draining);
- `core stop when convenient`, `core abort shutdown`, `discovery set drain off`: nothing of the
  cancelled stop sticks to the process; a later unload + load, and a reload, start undrained.
"""

import threading
import time

from integration_tests import discovery as d
from integration_tests import gate as g
from integration_tests import resilience as r
from integration_tests.calls import asterisk_with_calls, hold_call

SHUTDOWN_NOTE = "Asterisk is stopping"


def drain_check(consul, ast):
    return consul.checks().get("check-asterisk-drain-%s" % ast.eid)


def drain_row(ast):
    return r.status_row(ast.rx("discovery show status"), "Drain")


def box_with_a_call(asterisk_factory, ast_version, module_so, consul_agent):
    ast, flag = asterisk_with_calls(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent)
    d.load(ast)
    g.wait_healthy(consul_agent, ast.eid)
    hold_call(ast)
    consul_agent.wait_startup_sync()  # timed below: the catalog must follow at once
    return ast, flag


def stop_beside(ast, command):
    """Run a stop command beside the test (it returns when the stop ends or is aborted)."""
    thread = threading.Thread(target=ast._rx_raw, args=(command, 60), daemon=True)
    thread.start()
    return thread


def stays_undrained(consul, ast, seconds=2.0):
    """In the passing set with no drain check for `seconds`, and the status says drain off."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert g.healthy(consul, ast.eid), "out of the passing set; drain check: %r" % (
            drain_check(consul, ast),)
        assert drain_check(consul, ast) is None, drain_check(consul, ast)
        time.sleep(0.1)
    assert drain_row(ast).startswith("off"), drain_row(ast)


def test_aborted_graceful_stop_ends_its_drain_by_itself(
        asterisk_factory, ast_version, module_so, consul_agent, capsys):
    ast, flag = box_with_a_call(asterisk_factory, ast_version, module_so, consul_agent)
    try:
        stopper = stop_beside(ast, "core stop gracefully")
        g.seconds_until(lambda: not g.healthy(consul_agent, ast.eid), 3, "the stop's drain")
        assert SHUTDOWN_NOTE in drain_check(consul_agent, ast)["Notes"]

        out = ast.rx("core abort shutdown")
        aborted_at = time.monotonic()
        stopper.join(10)
        try:
            back = g.seconds_until(lambda: g.healthy(consul_agent, ast.eid), 3,
                                   "back in the passing set after `core abort shutdown`")
        except AssertionError as exc:
            raise AssertionError("%s (abort said %r); Drain: %s; drain check: %r" % (
                exc, out.strip(), drain_row(ast), drain_check(consul_agent, ast))) from None
        assert time.monotonic() - aborted_at < 3
        assert drain_check(consul_agent, ast) is None
        assert drain_row(ast).startswith("off"), drain_row(ast)
        assert ast.is_running()
    finally:
        flag.touch()
    with capsys.disabled():
        print("\n[Asterisk %s] core stop gracefully, core abort shutdown -> back in the passing "
              "set after %.2f s" % (ast.version, back))


def test_aborted_when_convenient_stop_leaves_no_drain_to_later_loads_and_reloads(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast, flag = box_with_a_call(asterisk_factory, ast_version, module_so, consul_agent)
    try:
        stopper = stop_beside(ast, "core stop when convenient")
        g.seconds_until(lambda: not g.healthy(consul_agent, ast.eid), 3, "the stop's drain")
        ast.rx("core abort shutdown")
        stopper.join(10)
        out = ast.rx("discovery set drain off")
        assert "is off" in out, out
        g.seconds_until(lambda: g.healthy(consul_agent, ast.eid), 3, "back after drain off")
        stays_undrained(consul_agent, ast, 1.0)

        r.unload(ast)
        d.load(ast)
        try:
            g.wait_healthy(consul_agent, ast.eid, timeout=10)
            stays_undrained(consul_agent, ast)
        except AssertionError as exc:
            check = drain_check(consul_agent, ast) or {}
            raise AssertionError("a fresh load after the cancelled stop: %s; drain check "
                                 "notes: %r" % (exc, check.get("Notes"))) from None

        out = ast.rx("module reload " + d.MODULE)
        assert d.module_running(ast), out
        time.sleep(1.0)  # the reload's changes reach the catalog
        stays_undrained(consul_agent, ast)
        assert ast.is_running()
    finally:
        flag.touch()
