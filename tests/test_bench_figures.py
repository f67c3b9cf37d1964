"""The bench's arithmetic (bench/): wrk's output read right, goals judged right. The bench's
figures themselves are printed by `make bench`, never asserted here."""

from bench import report, summary
from bench.http import parse_wrk

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:57161/res_discovery_consul/check_eid?expected_eid=aa:bb:cc:dd:ee:ff
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.41ms    2.35ms  29.74ms   92.65%
    Req/Sec     8.85k     1.10k   10.60k    63.64%
  Latency Distribution
     50%  738.00us
     75%    1.66ms
     90%    3.18ms
     99%   12.15ms
  9676 requests in 1.10s, 1.83MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 9676
Requests/sec:   8797.85
Transfer/sec:      1.66MB
"""


def test_wrk_output_is_read_in_microseconds():
    figures = parse_wrk(WRK_OUTPUT)
    assert figures["rps"] == 8797.85
    assert figures["p50_us"] == 738.0
    assert figures["p75_us"] == 1660.0
    assert figures["p99_us"] == 12150.0
    assert figures["requests"] == 9676
    assert figures["non_2xx"] == 9676 and figures["socket_errors"] == 3


def test_clean_wrk_output_has_no_errors():
    clean = "\n".join(line for line in WRK_OUTPUT.splitlines()
                      if "errors" not in line and "Non-2xx" not in line)
    figures = parse_wrk(clean)
    assert figures["non_2xx"] == 0 and figures["socket_errors"] == 0


def _results(p50_ratio, rps_ratio, loads, catalog_ms, rss_load, rss_cycles, idle_pct):
    return {
        "http": {"ratios": {"p50_us": {"median": p50_ratio}, "rps": {"median": rps_ratio}}},
        "load": {state: {"cold_load": {"n": 5, "median_ms": cold}, "warm_load": {"n": 5, "median_ms": warm}}
                 for state, (cold, warm) in loads.items()},
        "memory": {"catalog_after_load": {"n": 200, "median_ms": catalog_ms},
                   "load_delta_mb": rss_load, "cycles_growth_mb": rss_cycles},
        "idle": {"extra": {"cpu_pct": idle_pct}},
    }


def verdicts(results):
    return {g["goal"]: g["verdict"] for g in report.goals(results)}


def test_goals_pass_at_their_limits():
    results = _results(1.00, 1.00, {"up": (150.0, 3.0), "blackholed": (120.0, 4.0)}, 250.0, 20.0,
                       2.0, 0.1)
    assert set(verdicts(results).values()) == {"PASS"}


def test_goals_miss_past_their_limits_and_the_slowest_state_counts():
    results = _results(1.01, 0.99, {"up": (100.0, 3.0), "refusing": (150.1, 3.0)}, 250.1, 20.1,
                       2.1, 0.101)
    assert set(verdicts(results).values()) == {"MISS"}
    assert report.figures(results)["load_ms"] == 150.1


def test_the_endpoint_must_match_the_native_one_and_idle_cost_a_tenth_of_a_percent():
    limits = {key: (op, limit) for key, _text, op, limit in report.GOALS}
    assert limits["http_rps_ratio"] == (">=", 1.00) and limits["http_p50_ratio"] == ("<=", 1.00)
    assert limits["rss_load_mb"] == ("<=", 20.0) and limits["rss_cycles_mb"] == ("<=", 2.0)
    assert limits["idle_cpu_pct"] == ("<=", 0.1)
    assert report.goal_text("http_rps_ratio") == ">= 1.00x"
    assert report.goal_text("rss_load_mb") == "<= +20.0 MB"


def test_a_phase_that_did_not_run_is_not_judged():
    assert set(verdicts({}).values()) == {"n/a"}
    results = {"goals": report.goals({}), "errors": {"http": "Traceback\nRuntimeError: wrk failed"}}
    assert "FAILED" in report.table(results) and "MISS" not in report.table(results)
    closing = summary.table(results)
    assert "MISS" not in closing.split("goals:")[0] and "n/a (not run)" in closing
    assert "goals: 0 PASS, 0 MISS, 7 not run" in closing
    assert "phases that FAILED" in closing and "http" in closing


def test_the_summary_lists_every_goal_with_its_verdict():
    results = _results(1.56, 0.62, {"up": (100.0, 3.0)}, 200.0, 27.6, 1.0, 0.05)
    results["goals"] = report.goals(results)
    closing = summary.table(results)
    for _key, text, _op, _limit in report.GOALS:
        assert text in closing
    rows = {line.split("  ")[1].strip(): line for line in closing.splitlines()
            if line.startswith("  ") and line.rstrip().endswith(("PASS", "MISS"))}
    assert rows["check endpoint throughput vs /httpstatus"].rstrip().endswith("MISS")
    assert rows["Asterisk RSS growth at the first load"].rstrip().endswith("MISS")
    assert "0.050 % of one core" in closing and closing.count("PASS") >= 4
    assert "goals: 4 PASS, 3 MISS" in closing


def test_the_lifecycle_phase_is_asked_for_by_name_and_runs_with_the_agent_restarts():
    from bench.__main__ import _parse

    only = _parse(["--only", "lifecycle,http,restart"]).only
    assert only[0] == "http" and set(only[1:]) == {"restart", "lifecycle"}  # restarts go last
    assert _parse(["--only", "lifecycle", "--quick"]).lifecycle_restarts == 2


def test_both_restart_figures_print_with_their_resync_interval():
    def figure(resync, median):
        return {"resync_interval": resync,
                "reregister_after_agent_back": {"n": 3, "median_ms": median, "max_ms": median}}

    text = "\n".join(report._restart_rows({"restart": figure("1s", 800.0),
                                           "lifecycle": figure("30s", 14000.0)}))
    assert "re-registered (resync 1s)" in text and "median 800.0 ms" in text
    assert "re-registered (resync 30s)" in text and "median 14000.0 ms" in text
    failed = report._restart_rows({"errors": {"lifecycle": "Traceback\nRuntimeError: lost"}})
    assert "agent restart (lifecycle): FAILED" in failed[0] and "RuntimeError: lost" in failed[0]
