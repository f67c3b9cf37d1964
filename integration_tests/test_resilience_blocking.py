"""On real Asterisk 16 and 22: the module never blocks Asterisk on
Consul, and retries with capped exponential backoff until Consul is back.

1. `module load` returns at once when Consul refuses connections or is blackholed; `discovery
   show status`, `discovery set maintenance on` and AMI DiscoverySetMaintenance answer within
   consul_timeout_ms (+ slack); unload deregisters within that bound and joins the worker.
2. While Consul answers 5xx or is down, retries back off exponentially up to a cap (the
   resync interval); the registration and the maintenance state asked for meanwhile are in
   the agent within one backoff period after it is back.
"""

import re
import threading
import time

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.testbed.peers import StandInPeer

TIMEOUT_MS = 2000
TIMEOUT_S = TIMEOUT_MS / 1000.0
# Over the Consul timeout: `asterisk -rx` itself, and two cores shared with Consul and pytest.
SLACK_S = 0.6
# "At once": no Consul call on the loading thread. The first load of a process also starts
# Python and imports requests (~0.3 s); a load that waited for Consul would take TIMEOUT_S.
LOAD_BOUND_S = 1.0


def assert_fast(took, bound, what):
    assert took < bound, "%s took %.2f s (bound %.2f s)" % (what, took, bound)


def _maintenance_over_ami(ast):
    with d.ami(ast) as session:
        return r.timed(session.action, "DiscoverySetMaintenance", Enable="yes",
                       Reason="drain for upgrade")


def test_never_blocks_when_consul_refuses_or_is_blackholed(asterisk_factory, ast_version,
                                                           module_so, refusing_peer,
                                                           blackhole_peer, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    bound = TIMEOUT_S + SLACK_S
    for peer, state in ((refusing_peer, "refused"), (blackhole_peer, "blackholed")):
        d.write_conf(ast, peer, consul_timeout_ms=TIMEOUT_MS)
        out, took = d.timed_rx(ast, "module load " + d.MODULE)
        assert_fast(took, LOAD_BOUND_S, "module load with Consul %s" % state)
        assert d.module_running(ast), out
        assert r.registrar_threads(ast) == 1

        status, took = d.timed_rx(ast, "discovery show status")
        assert_fast(took, bound, "discovery show status with Consul %s" % state)
        assert r.status_row(status, "Registered") == "no"
        if state == "refused":
            assert "UNREACHABLE" in r.status_row(status, "Agent"), status
            assert "refused" in r.status_row(status, "Last error").lower(), status
        else:
            assert "did not answer within %d ms" % TIMEOUT_MS in status, status

        out, took = d.timed_rx(ast, "discovery set maintenance on drain for upgrade")
        assert_fast(took, bound, "discovery set maintenance on with Consul %s" % state)
        assert "will keep trying" in out, out

        reply, took = _maintenance_over_ami(ast)
        assert_fast(took, bound, "AMI DiscoverySetMaintenance with Consul %s" % state)
        assert reply["Response"] == "Error" and "will keep trying" in reply["Message"], reply

        # Operators who keep asking must not pile up work that delays anything later.
        answers = []

        def ask():
            answers.append(d.timed_rx(ast, "discovery show status")[1])
        askers = [threading.Thread(target=ask) for _ in range(4)]
        for thread in askers:
            thread.start()
        for thread in askers:
            thread.join()
        assert max(answers) < bound, answers

        out, took = r.unload(ast)
        assert_fast(took, bound, "module unload with Consul %s" % state)
        assert r.registrar_threads(ast) == 0, r.native_threads(ast)

    # With a real agent the same unload deregisters before it returns.
    d.write_conf(ast, consul_agent, consul_timeout_ms=TIMEOUT_MS)
    out, took = d.timed_rx(ast, "module load " + d.MODULE)
    assert_fast(took, LOAD_BOUND_S, "module load with Consul up")
    d.wait_service(consul_agent, ast.eid)
    out, took = r.unload(ast)
    assert_fast(took, bound, "module unload with Consul up")
    assert ast.eid not in consul_agent.services()
    assert r.registrar_threads(ast) == 0
    assert ast.is_running()
    log = ast.log_text()
    assert "Traceback" not in log and "Fatal Python error" not in ast.stdout_text()


def _retry_times(proxy, since):
    return [request.time for request in proxy.calls(since, "/v1/agent/service/register")]


def test_backoff_on_5xx_and_down_agent_then_recovery_with_maintenance(
        asterisk_factory, ast_version, module_so, consul_factory):
    cap_s = 4.0  # the resync interval caps the backoff
    options = dict(resync_interval="4s", consul_timeout_ms=1000)
    agent = consul_factory()

    # -- 5xx: retries spread out, one warning, then registration within one backoff period
    with StandInPeer(agent=agent, mode="answer", status=500) as proxy:
        loaded = time.monotonic()
        ast = d.start(asterisk_factory, ast_version, module_so, proxy, **options)
        since = ast.log_offset()
        time.sleep(7.5)
        times = _retry_times(proxy, loaded)
        gaps = [b - a for a, b in zip(times, times[1:])]
        # 0.5 s doubling (jitter x0.5-1) to the 4 s cap: 0, ~0.4, ~1.1, ~2.6, ~5.6, ~8.6 ...
        assert 3 <= len(times) <= 8, gaps
        assert all(gap <= cap_s + 0.5 for gap in gaps), gaps
        assert gaps[0] < 1.0 and max(gaps) >= 1.5 and gaps[-1] > gaps[0], gaps
        log = ast.log_text()
        assert len(re.findall(r"WARNING.*Consul server error 500.*retrying in", log)) == 1, log
        assert re.search(r"DEBUG.*still failing: .*500.*retrying in [0-9.]+ s", log)

        proxy.mode = "forward"
        back = time.monotonic()
        d.wait_service(agent, ast.eid, timeout=cap_s + 2)
        took = time.monotonic() - back
        assert took < cap_s + 1.0, "registered %.2f s after Consul answered again" % took
        ast.wait_log(r"Consul: the agent at .* answers again", since=since)
        assert "ok" in r.status_row(ast.rx("discovery show status"), "Last sync")

    # -- the agent goes away; maintenance is asked for meanwhile; it comes back empty
    ast = d.start(asterisk_factory, ast_version, module_so, agent, **options)
    d.wait_service(agent, ast.eid)
    agent.stop()
    outage = ast.log_offset()
    out = ast.rx("discovery set maintenance on drain for upgrade")
    assert "will keep trying" in out, out
    status = ast.rx("discovery show status")
    assert r.status_row(status, "Maintenance").startswith("on: drain for upgrade")
    assert "failed" in r.status_row(status, "Last sync"), status
    time.sleep(6)  # long enough for the backoff to reach its cap
    agent.start()  # same ports, no data (a dev agent)
    back = time.monotonic()
    delays = [float(x) for x in re.findall(r"retrying in ([0-9.]+) s", ast.log_text(outage))]
    # 0.5 s doubling with jitter (x0.5-1), never above the cap: 0.25-0.5, 0.5-1, 1-2, 2-4 ...
    assert len(delays) >= 3 and max(delays) <= cap_s and max(delays) >= 1.0, delays
    assert delays[0] <= 0.5 and delays[-1] > delays[0], delays

    def restored():
        if ast.eid not in agent.services():
            return None
        return agent.checks().get("_service_maintenance:%s" % ast.eid)
    maintenance = d.wait_until(restored, timeout=cap_s + 2, interval=0.05,
                               what="service and maintenance back")
    took = time.monotonic() - back
    assert took < cap_s + 1.0, "back %.2f s after the agent was" % took
    assert maintenance["Notes"] == "drain for upgrade" and maintenance["Status"] == "critical"
    d.wait_health(agent, "Asterisk", ast.eid, "critical")
    status = ast.rx("discovery show status")
    assert r.status_row(status, "Registered").startswith("yes")
    assert r.status_row(status, "Maintenance") == "on: drain for upgrade", status
    assert "ok" in r.status_row(status, "Last sync"), status
