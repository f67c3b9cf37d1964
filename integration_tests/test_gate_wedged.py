"""A wedged module leaves the healthy set (issue 19, point 2), on Asterisk 16 and 22.

The embedded interpreter is made stuck as a runaway thread would (gdb takes the GIL in the
Asterisk process and never gives it back; integration_tests/wedge.py). The module's declared
answer to Consul's poll expires: the gate answers 503 "module not responding" without entering
Python, so the service leaves /v1/health/service/<name>?passing within about one check interval
plus the expiry; `discovery show status` says "not responding" instead of hanging; and
`core stop now` still stops Asterisk promptly.
"""

import subprocess
import time

from integration_tests import discovery as d
from integration_tests import gate as g
from integration_tests.wedge import wedge_interpreter

CHECK_INTERVAL_S = 1
EXPIRY_S = 6  # "a few seconds" of the declared answer's expiry, with the poll's own timeout


def test_wedged_module_leaves_the_healthy_set_and_says_not_responding(
        asterisk_factory, ast_version, module_so, consul_agent, capsys):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent,
                  check_interval="%ds" % CHECK_INTERVAL_S, check_timeout="1s")
    g.wait_healthy(consul_agent, ast.eid)
    url = g.polled_url(consul_agent, ast)
    consul_agent.wait_startup_sync()  # timed below: the catalog must follow at once

    wedge_interpreter(ast)
    try:
        out_after = g.seconds_until(lambda: not g.healthy(consul_agent, ast.eid),
                                    CHECK_INTERVAL_S + EXPIRY_S + 2,
                                    "the wedged box out of the passing set")
    except AssertionError as exc:
        check = g.eid_check(consul_agent, ast) or {}
        raise AssertionError("%s; the EID check is %s: %s" % (exc, check.get("Status"),
                                                            check.get("Output"))) from None
    check = g.eid_check(consul_agent, ast)
    assert check["Status"] == "critical" and "503" in check["Output"], check

    # The gate answers by itself, at once, without entering Python.
    began = time.monotonic()
    answer = g.http_get(url, timeout=5)
    assert time.monotonic() - began < 2
    assert answer.status_code == 503 and g.NOT_RESPONDING in answer.text, \
        (answer.status_code, answer.text[:200])
    # ...and says so in the log once, not at every poll.
    logged = len([l for l in ast.log_text().splitlines() if g.NOT_RESPONDING in l])
    assert logged >= 1, ast.log_text()[-3000:]
    time.sleep(3 * CHECK_INTERVAL_S + 0.5)
    assert g.eid_check(consul_agent, ast)["Status"] == "critical"
    assert len([l for l in ast.log_text().splitlines() if g.NOT_RESPONDING in l]) == logged, \
        "the 'not responding' line is logged again at each poll"

    status, took = d.timed_rx(ast, "discovery show status")
    assert took < 3, took
    assert g.NOT_RESPONDING in status, status
    assert ast.is_running()

    began = time.monotonic()
    ast._rx_raw("core stop now", timeout=10)
    try:
        code = ast.proc.wait(5)
    except subprocess.TimeoutExpired:
        code = None
    stopped_in = time.monotonic() - began
    assert code is not None, "core stop now: Asterisk still running after %.1f s" % stopped_in
    with capsys.disabled():
        print("\n[Asterisk %s] wedged: out of the passing set %.1f s after the wedge; "
              "status answered in %.2f s; core stop now took %.1f s (exit %s)"
              % (ast.version, out_after, took, stopped_in, code))
