"""The arithmetic behind `make bench`'s idle and fleet figures: /proc read right, a Consul agent's
request log sorted by endpoint and by how far each request goes, rates scaled. The figures
themselves are printed by `make bench`, never asserted here."""

from bench import agentlog, procstat, sections

AGENT_LOG = """\
2026-12-01T16:10:08.018Z [INFO]  agent: Synced service: service=16:1c:cb:a4:9b:cb
2026-12-01T16:10:08.018Z [DEBUG] agent: Check in sync: check=check-asterisk-ttl-16:1c:cb:a4:9b:cb
2026-12-01T16:10:08.018Z [DEBUG] agent.http: Request finished: method=PUT url=/v1/agent/service/register?replace-existing-checks=true from=127.0.0.1:39518 latency=1.27ms
2026-12-01T16:10:08.021Z [DEBUG] agent: Check status updated: check=check-asterisk-ttl-16:1c:cb:a4:9b:cb status=passing
2026-12-01T16:10:08.021Z [DEBUG] agent.http: Request finished: method=PUT url=/v1/agent/check/update/check-asterisk-ttl-16%3A1c%3Acb%3Aa4%3A9b%3Acb from=127.0.0.1:39518 latency=92µs
2026-12-01T16:10:08.022Z [DEBUG] agent.http: Request finished: method=GET url=/v1/agent/service/16%3A1c%3Acb%3Aa4%3A9b%3Acb from=127.0.0.1:39520 latency=400µs
2026-12-01T16:10:08.025Z [DEBUG] agent.http: Request finished: method=PUT url=/v1/session/create from=127.0.0.1:39518 latency=1.5ms
2026-12-01T16:10:08.027Z [DEBUG] agent.http: Request finished: method=GET url=/v1/kv/16%3A1c%3Acb%3Aa4%3A9b%3Acb/?recurse=true from=127.0.0.1:39518 latency=87µs
2026-12-01T16:10:08.029Z [DEBUG] agent.http: Request finished: method=PUT url=/v1/kv/16%3A1c%3Acb%3Aa4%3A9b%3Acb/hello?acquire=9fd7e9de-cdae-6486-169b-7153e9cc18d6 from=127.0.0.1:39518 latency=598µs
2026-12-01T16:10:08.521Z [DEBUG] agent.http: Request finished: method=GET url=/v1/catalog/service/bench-1?filter=ServiceID+%3D%3D+%2216%22 from=127.0.0.1:39518 latency=812µs
2026-12-01T16:10:14.654Z [DEBUG] agent: Check status updated: check=check-asterisk-eid-16:1c:cb:a4:9b:cb status=passing
2026-12-01T16:10:23.032Z [DEBUG] agent.http: Request finished: method=PUT url=/v1/session/renew/9fd7e9de-cdae-6486-169b-7153e9cc18d6 from=127.0.0.1:39518 latency=412µs
2026-12-01T16:10:38.026Z [DEBUG] agent.http: Request finished: method=PUT url=/v1/session/renew/9fd7e9de-cdae-6486-169b-7153e9cc18d6 from=127.0.0.1:39518 latency=149µs
2026-12-01T16:15:08.030Z [DEBUG] agent.http: Request finished: method=GET url=/v1/agent/service/16%3A1c?hash=abc&wait=300s from=127.0.0.1:39520 latency=5m0s
2026-12-01T16:15:09.030Z [DEBUG] agent.http: Request finished: method=PUT url=/v1/event/fire/asterisk-register from=127.0.0.1:39518 latency=1ms
"""


def test_every_request_is_named_by_its_endpoint_without_ids_or_values():
    names = [agentlog.endpoint(m, u) for m, u in agentlog.requests_in(AGENT_LOG)]
    assert names == [
        "PUT /v1/agent/service/register",
        "PUT /v1/agent/check/update/:check",
        "GET /v1/agent/service/:id",
        "PUT /v1/session/create",
        "GET /v1/kv/:prefix/?recurse",
        "PUT /v1/kv/:key?acquire",
        "GET /v1/catalog/service/:name",
        "PUT /v1/session/renew/:session",
        "PUT /v1/session/renew/:session",
        "GET /v1/agent/service/:id (blocking)",
        "PUT /v1/event/fire/:name",
    ]


def test_what_reaches_the_servers_is_told_apart_from_what_the_agent_answers():
    reach = dict((agentlog.endpoint(m, u), agentlog.reach(m, u))
                 for m, u in agentlog.requests_in(AGENT_LOG))
    assert reach["PUT /v1/agent/check/update/:check"] == agentlog.AGENT
    assert reach["GET /v1/agent/service/:id (blocking)"] == agentlog.AGENT
    assert reach["PUT /v1/session/renew/:session"] == agentlog.LEADER_RPC
    assert reach["GET /v1/kv/:prefix/?recurse"] == agentlog.SERVER_READ
    assert reach["GET /v1/catalog/service/:name"] == agentlog.SERVER_READ
    assert reach["PUT /v1/kv/:key?acquire"] == agentlog.RAFT_WRITE
    assert reach["PUT /v1/session/create"] == agentlog.RAFT_WRITE
    assert reach["PUT /v1/event/fire/:name"] == agentlog.GOSSIP


def test_anti_entropy_syncs_count_as_raft_writes_and_check_runs_are_counted_per_check():
    assert agentlog.syncs_in(AGENT_LOG) == {"Synced service": 1}
    assert agentlog.check_updates_in(AGENT_LOG, "check-asterisk-eid-") == 1
    assert agentlog.check_updates_in(AGENT_LOG) == 2
    rows = agentlog.tally(agentlog.requests_in(AGENT_LOG), agentlog.syncs_in(AGENT_LOG), 300.0)
    assert rows["anti-entropy: Synced service"]["reach"] == agentlog.RAFT_WRITE
    renew = rows["PUT /v1/session/renew/:session"]
    assert renew["count"] == 2 and abs(renew["per_s"] - 2 / 300.0) < 1e-12
    reaches = [row["reach"] for row in rows.values()]
    assert reaches == sorted(reaches, key=agentlog.REACHES.index)  # cheapest first


def test_rates_add_up_by_reach_and_scale_linearly_with_the_fleet():
    rows = agentlog.tally(agentlog.requests_in(AGENT_LOG), agentlog.syncs_in(AGENT_LOG), 10.0)
    by = agentlog.by_reach(rows)
    assert set(by) == set(agentlog.REACHES)
    assert abs(by[agentlog.AGENT] - 0.4) < 1e-9       # register, update, two service reads
    assert abs(by[agentlog.LEADER_RPC] - 0.2) < 1e-9
    assert abs(by[agentlog.RAFT_WRITE] - 0.3) < 1e-9  # create, acquire, one sync
    assert abs(sum(by.values()) - 1.2) < 1e-9         # 11 requests and 1 sync in 10 s
    assert agentlog.scaled(by[agentlog.LEADER_RPC], 10000) == 2000.0


def test_proc_stat_is_read_past_a_command_name_with_spaces_and_parentheses():
    line = ("4242 (consul (reg) x) S 1 4242 4242 0 -1 4194560 1139 0 0 0 "
            "17 5 0 0 20 0 24 0 123 456789 1234 18446744073709551615")
    assert procstat.parse_stat_ticks(line) == 22
    status = "Name:\tasterisk\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t7\n"
    assert procstat.parse_switches(status) == (150, 7)


def _sample(at, ticks, tasks):
    return procstat.ProcessSample(at, ticks, {tid: procstat.TaskSample(*t) for tid, t in tasks.items()})


def test_idle_cost_is_a_share_of_one_core_and_switches_per_second_by_thread_name():
    before = _sample(100.0, 1000, {1: ("asterisk", 5_000_000, 10, 1),
                                   2: ("consul-registra", 1_000_000, 100, 5),
                                   3: ("httpd", 0, 0, 0)})
    after = _sample(400.0, 1030, {1: ("asterisk", 6_000_000, 40, 1),
                                  2: ("consul-registra", 151_000_000, 700, 5),
                                  4: ("new-thread", 99_000_000, 9, 9)})
    cost = procstat.cost(before, after, ticks_per_s=100)
    assert abs(cost["cpu_pct"] - 0.1) < 1e-9              # 0.3 s of CPU in 300 s
    assert abs(cost["cpu_pct_schedstat"] - 151 / 300e3 * 100) < 1e-9  # threads alive at both
    assert abs(cost["switches_per_s"] - 630 / 300.0) < 1e-9
    worker = cost["threads"]["consul-registra"]
    assert abs(worker["cpu_pct"] - 0.05) < 1e-9 and abs(worker["switches_per_s"] - 2.0) < 1e-9
    assert "new-thread" not in cost["threads"] and cost["thread_count"] == 3  # at the end
    baseline = procstat.cost(_sample(0.0, 0, {}), _sample(300.0, 6, {}), ticks_per_s=100)
    assert abs(procstat.extra(cost, baseline)["cpu_pct"] - 0.08) < 1e-9


def test_a_phase_that_failed_prints_why_instead_of_figures():
    results = {"errors": {"fleetscale": "Traceback\nRuntimeError: agent did not start"}}
    lines = sections.fleetscale(results) + sections.idle(results) + sections.converge(results)
    text = "\n".join(lines)
    assert "FAILED: RuntimeError: agent did not start" in text
    assert text.count("(not run)") == 2
