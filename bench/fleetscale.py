"""What one instance asks of its Consul agent at rest, and what of that reaches the servers,
measured from the agent's own request log; then the same for a fleet of INSTANCES boxes.

Four instances run side by side, each with an agent of its own (so each log holds one
instance's requests and nothing else), at the module's default intervals:

    defaults   check = no (the module's default): registration, resync, the watch
    checks     check = yes, check_type = both: + the TTL reports; Consul polls the EID endpoint
    kv         as checks, and a [kv] section: + the session's renewals and the keys' checks
    kv-ttl5m   as kv, with kv_session_ttl = 5m: what a longer session TTL changes

and a fifth agent with no instance, whose Raft log shows what an agent writes by itself. Each
instance is loaded and its start-up requests counted (START_S after the load). A start also
costs one anti-entropy write per check later on: the agent syncs a check's first output (its
status unchanged) after Consul's check_update_interval (5 min: 2.5 to 7.5 min); the phase
waits for those (wait_deferred), counts them with the start, and only then reads the agents'
logs for `seconds`, during which nothing but the modules talks to the agents.
"""

from __future__ import annotations

import time
from typing import Dict, Optional

import requests

from integration_tests.resilience import consul_log_offset
from integration_tests.testbed.consul import ConsulAgent

from . import agentlog
from .harness import Bed, ModuleControl, log

INSTANCES = 10000
START_S = 3.0    # the start-up burst: registration, first TTL report, session, keys, catalog look
SETTLE_S = 20.0  # then the catalog looks (0.5 .. 8 s apart) are over
DEFERRED_MAX_S = 480.0  # Consul syncs a check's changed output 2.5 to 7.5 min later
LOG_FLUSH_S = 0.3  # the agent logs a request once answered: let the line land before an offset
KV = {"role": "pbx", "sip": "${ADDRESS}:${PORT}"}

CONFIGS = (
    ("defaults", "check = no (the default before 0.2.0), no [kv]", {"check": "no"}, None),
    ("checks", "check = yes, check_type = both", {"check": "yes", "check_type": "both"}, None),
    ("kv", "check_type = both and [kv] (%d keys)" % len(KV),
     {"check": "yes", "check_type": "both"}, KV),
    ("kv-ttl5m", "as kv, with kv_session_ttl = 5m",
     {"check": "yes", "check_type": "both", "kv_session_ttl": "5m"}, KV),
)

# What a Consul server handles, from Consul's own benchmark (hashicorp/consul,
# bench/results-0.7.1.md: 3 servers of 8 cores, 16 GB, SSD, Consul 0.7.1, one client
# with 64 connections): orders of magnitude, not a limit of this machine.
REFERENCE = {
    agentlog.RAFT_WRITE: (3780, "KV PUT/s (each a Raft write), Consul's own benchmark"),
    agentlog.SERVER_READ: (7525, "default-consistency KV GET/s (the leader answers), "
                                 "same benchmark; stale reads 9774/s on one server"),
    agentlog.LEADER_RPC: (7525, "as a default-consistency read: the leader answers, no disk"),
}
REFERENCE_SOURCE = ("Consul's benchmark in its repository (bench/results-0.7.1.md); HashiCorp's "
                    "validated design recommends at most 5,000 client agents per datacenter")


def _raft_index(agent: ConsulAgent) -> Optional[int]:
    """The agent's (a dev agent is a server) last Raft log index."""
    try:
        stats = agent.get("/v1/agent/self", timeout=5).json()["Stats"]
        return int(stats["raft"]["last_log_index"])
    except (requests.RequestException, KeyError, TypeError, ValueError):
        return None


def _offset_after_flush(agent: ConsulAgent) -> int:
    time.sleep(LOG_FLUSH_S)
    return consul_log_offset(agent)


def _log_between(agent: ConsulAgent, start: int, end: int) -> str:
    with open(agent.log_path, "rb") as fh:
        fh.seek(start)
        return fh.read(max(0, end - start)).decode("utf-8", "replace")


def _passing(agent: ConsulAgent, name: str, service_id: str) -> bool:
    entries = agent.get("/v1/health/service/%s" % name, params={"passing": "1"}).json() or []
    return any(e["Service"]["ID"] == service_id for e in entries)


def _deferred_synced(text: str, service_id: str, checked: bool) -> bool:
    """Has the agent synced the first output of each of the instance's checks?"""
    if not checked:
        return True
    return all("Synced check: check=%s-%s" % (kind, service_id) in text
               for kind in ("check-asterisk-eid", "check-asterisk-ttl"))


def _start(bed: Bed, agent: ConsulAgent, options: Dict[str, object], kv) -> tuple:
    """Load one instance; (its Asterisk, the agent's log offsets before and after the burst)."""
    ast = bed.asterisk(kv=kv, port=agent.http_port, check_interval=None, **options)
    began = _offset_after_flush(agent)
    ctl = ModuleControl(ast)
    try:
        ctl.load()
    finally:
        ctl.close()
    time.sleep(START_S)
    ended = consul_log_offset(agent)
    if not _passing(agent, bed.service_name, ast.eid):
        raise RuntimeError("the service is not passing %.0f s after the load" % START_S)
    return ast, began, ended


def run(bed: Bed, seconds: float = 600.0, wait_deferred: bool = True) -> Dict[str, object]:
    agents: Dict[str, ConsulAgent] = {}
    instances = []
    out: Dict[str, object] = {"instances": INSTANCES, "window_s": seconds, "configs": {},
                              "reference": {k: list(v) for k, v in REFERENCE.items()},
                              "reference_source": REFERENCE_SOURCE,
                              "deferred_waited": wait_deferred}
    try:
        for name in ("baseline",) + tuple(c[0] for c in CONFIGS):
            agents[name] = ConsulAgent(bed.workdir / ("fleet-" + name)).start()
        starts, bursts = {}, {}
        for name, _text, options, kv in CONFIGS:
            ast, began, ended = _start(bed, agents[name], options, kv)
            instances.append(ast)
            bursts[name] = (ast.eid, options.get("check") == "yes", ended)
            burst = _log_between(agents[name], began, ended)
            starts[name] = agentlog.tally(agentlog.requests_in(burst), agentlog.syncs_in(burst), 1.0)
        time.sleep(SETTLE_S)
        deadline = time.monotonic() + (DEFERRED_MAX_S if wait_deferred else 0.0)
        if wait_deferred:
            log("fleetscale: waiting for the agents to sync the checks' first output "
                "(check_update_interval, up to %.0f s) ..." % DEFERRED_MAX_S)
        while True:
            late = {name: _log_between(agents[name], ended, consul_log_offset(agents[name]))
                    for name, (_sid, _checked, ended) in bursts.items()}
            done = all(_deferred_synced(late[name], sid, checked)
                       for name, (sid, checked, _ended) in bursts.items())
            if done or time.monotonic() >= deadline:
                break
            time.sleep(5.0)
        for name, text in late.items():
            for kind, n in agentlog.syncs_in(text).items():
                starts[name]["anti-entropy: %s (a check's first output, deferred)" % kind] = {
                    "count": n, "per_s": 0.0, "reach": agentlog.RAFT_WRITE}
        raft0 = {name: _raft_index(agent) for name, agent in agents.items()}
        offsets0 = {name: _offset_after_flush(agent) for name, agent in agents.items()}
        log("fleetscale: %d instances (%s) measured for %.0f s ..." % (
            len(CONFIGS), ", ".join(c[0] for c in CONFIGS), seconds))
        began = time.monotonic()
        time.sleep(seconds)
        window = time.monotonic() - began
        offsets1 = {name: consul_log_offset(agent) for name, agent in agents.items()}
        raft1 = {name: _raft_index(agent) for name, agent in agents.items()}
    finally:
        for ast in instances:  # first: each unload deregisters from its agent
            bed.discard(ast)
        for agent in agents.values():
            agent.stop()
    raft = {name: (None if raft0[name] is None or raft1[name] is None
                   else (raft1[name] - raft0[name]) / window) for name in agents}
    out["window_s"] = window
    out["baseline_raft_writes_per_s"] = raft["baseline"]
    for name, text, _options, _kv in CONFIGS:
        log_text = _log_between(agents[name], offsets0[name], offsets1[name])
        rows = agentlog.tally(agentlog.requests_in(log_text), agentlog.syncs_in(log_text), window)
        out["configs"][name] = {
            "settings": text,
            "rows": rows,
            "by_reach": agentlog.by_reach(rows),
            "raft_writes_per_s": raft[name],
            "eid_polls_per_s": agentlog.check_updates_in(log_text, "check-asterisk-eid-") / window,
            "start": {endpoint: row["count"] for endpoint, row in starts[name].items()},
            "start_reach": {endpoint: row["reach"] for endpoint, row in starts[name].items()},
        }
        reach = out["configs"][name]["by_reach"]
        log("fleetscale %-8s %.3f req/s to the agent; to the servers: %.4f leader RPC/s, "
            "%.4f reads/s, %.4f Raft writes/s (x %d: %.0f, %.0f, %.0f)" % (
                name, sum(reach.values()), reach[agentlog.LEADER_RPC],
                reach[agentlog.SERVER_READ], reach[agentlog.RAFT_WRITE], INSTANCES,
                reach[agentlog.LEADER_RPC] * INSTANCES, reach[agentlog.SERVER_READ] * INSTANCES,
                reach[agentlog.RAFT_WRITE] * INSTANCES))
    return out
