"""The bench's arithmetic (bench/): wrk's output read right, goals judged right. The bench's
figures themselves are printed by `make bench`, never asserted here."""

from bench import report
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


def _results(p50_ratio, rps_ratio, loads, catalog_ms, rss_load, rss_cycles):
    return {
        "http": {"ratios": {"p50_us": {"median": p50_ratio}, "rps": {"median": rps_ratio}}},
        "load": {state: {"cold_load": {"n": 5, "median_ms": cold}, "warm_load": {"n": 5, "median_ms": warm}}
                 for state, (cold, warm) in loads.items()},
        "memory": {"catalog_after_load": {"n": 200, "median_ms": catalog_ms},
                   "load_delta_mb": rss_load, "cycles_growth_mb": rss_cycles},
    }


def verdicts(results):
    return {g["goal"]: g["verdict"] for g in report.goals(results)}


def test_goals_pass_at_their_limits():
    results = _results(1.10, 0.90, {"up": (150.0, 3.0), "blackholed": (120.0, 4.0)}, 250.0, 20.0, 2.0)
    assert set(verdicts(results).values()) == {"PASS"}


def test_goals_miss_past_their_limits_and_the_slowest_state_counts():
    results = _results(1.11, 0.89, {"up": (100.0, 3.0), "refusing": (150.1, 3.0)}, 250.1, 20.1, 2.1)
    assert set(verdicts(results).values()) == {"MISS"}
    assert report.figures(results)["load_ms"] == 150.1


def test_a_phase_that_did_not_run_is_not_judged():
    assert set(verdicts({}).values()) == {"n/a"}
    table = report.table({"goals": report.goals({}), "errors": {"http": "Traceback\nRuntimeError: wrk failed"}})
    assert "FAILED" in table and "MISS" not in table.split("goals:")[0]
