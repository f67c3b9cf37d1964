"""On real Asterisk 16 and 22: 200 unload/load cycles of the real module
against a real Consul agent that is stopped and started several times meanwhile (like
test_bridge.py's cycle test, which runs a probe application without Consul).

At the end: Asterisk alive, the module loaded, the registration present, at most one
registrar thread at any time, no crash.
"""

import time

from integration_tests import discovery as d
from integration_tests import resilience as r

CYCLES = 200


# The agent goes away at these cycles and comes back 30 cycles later. Done from the test's
# own thread: the test bed starts processes with PR_SET_PDEATHSIG, which kills a child when
# the *thread* that started it ends.
STOP_AT = {30: "stop", 60: "start", 90: "stop", 120: "start", 150: "stop", 180: "start"}
OUTAGES = 3


def test_unload_load_cycles_while_consul_comes_and_goes(asterisk_factory, ast_version,
                                                        module_so, consul_agent, capsys):
    agent = consul_agent
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, agent, consul_timeout_ms=500)
    d.load(ast)
    d.wait_service(agent, ast.eid)
    rss_before = ast.rss_kb()

    outages = []
    most_threads, slowest_unload, began = 0, 0.0, time.monotonic()
    for cycle in range(CYCLES):
        action = STOP_AT.get(cycle)
        if action == "stop":
            agent.stop()
        elif action == "start":
            agent.start()
            outages.append(cycle)
        _, took = r.unload(ast)
        slowest_unload = max(slowest_unload, took)
        assert r.registrar_threads(ast) == 0, "cycle %d: a worker outlived unload" % cycle
        ast.rx("module load " + d.MODULE)
        assert d.module_running(ast), "cycle %d: %s" % (cycle, ast.log_text()[-2000:])
        most_threads = max(most_threads, r.registrar_threads(ast))
    took_all = time.monotonic() - began

    assert ast.is_running() and d.module_running(ast)
    assert len(outages) == OUTAGES, outages
    d.wait_service(agent, ast.eid, timeout=5)
    d.wait_health(agent, "Asterisk", ast.eid, "passing", timeout=10)
    assert most_threads == 1 and r.registrar_threads(ast) == 1
    # Every unload deregistered or gave up within the Consul timeout (+ rx and slack).
    assert slowest_unload < 0.5 + 0.6, slowest_unload
    assert "ok" in r.status_row(ast.rx("discovery show status"), "Last sync")
    stdout, log = ast.stdout_text(), ast.log_text()
    for bad in ("Fatal Python error", "Segmentation", "did not stop in time", "Traceback"):
        assert bad not in stdout and bad not in log, bad
    with capsys.disabled():
        print("\n[Asterisk %s] %d unload/load cycles in %.1f s with %d Consul outages; slowest "
              "unload %.3f s; RSS %d -> %d kB (%+d kB)"
              % (ast.version, CYCLES, took_all, OUTAGES, slowest_unload, rss_before,
                 ast.rss_kb(), ast.rss_kb() - rss_before))
