"""The storm's invariants and their bounds, checked after the run from SIPp's call log,
Kamailio's dispatch log, the boxes' call logs, Consul's catalog and the DNS samples (see
chaos.py's docstring for what each says); a violation explained with the seed, the faults
around it and the calls involved.

    verdict = check_invariants(storm, run, hold_ms)
    print(explain(storm, violation)); print(table(verdict))
"""

import re
import time
from dataclasses import dataclass, field
from typing import List

from .dnswatch import dns_invariant
from .host import KV_KEY, SERVICE
from .measure import CHECK_INTERVAL_S, CHECK_TIMEOUT_S, RESYNC_INTERVAL_S

# Seconds after a fault begins by which no new call may be routed to the box: the fleet
# table's bounds (drain/maintenance 1 s, the one-second convergence from the operator's
# command to Kamailio's list); a module unload and an agent's SIGTERM deregister at once; what
# Consul has to find out first adds that to the convergence: a kill, check interval +
# timeout; a SIP stack taken away, sip_check's one interval plus a second; a cut link, serf's
# failure detection (probe interval and suspicion timeout of the LAN pool, a few seconds).
CONVERGE_S = 1.0
OUT_BOUND_S = {"kill9": CHECK_INTERVAL_S + CHECK_TIMEOUT_S + CONVERGE_S, "graceful": 1.0,
               "drain": 1.0, "maintenance": 1.0, "module_cycle": 1.0, "agent_restart": 1.0,
               "agent_wipe": 1.0, "cut": 15.0, "sip_away": CHECK_INTERVAL_S + 1.0 + CONVERGE_S}
# Seconds after a fault ends by which the box is back in rotation: a restarted Asterisk boots
# and passes its check; an agent that lost its data is re-registered at the next resync; a
# healed link rejoins the LAN pool on serf's reconnect (every 30 s).
BACK_BOUND_S = {"kill9": 20.0, "graceful": 30.0, "drain": 5.0, "maintenance": 5.0,
                "module_cycle": 10.0, "module_reload": 10.0, "agent_restart": 10.0,
                "agent_wipe": RESYNC_INTERVAL_S + 10.0, "cut": 45.0, "sip_away": 10.0}
THREAD_GROWTH = 8           # Asterisk threads a process may gain over the run (idle to idle)
RSS_GROWTH_KB = 40 * 1024   # and resident memory (from the warm-up's end to idle after)


@dataclass
class Violation:
    invariant: str
    what: str
    when: float
    calls: List[str] = field(default_factory=list)


@dataclass
class Verdict:
    checks: dict
    violations: List[Violation]
    figures: dict


def check_invariants(storm, run, hold_ms):
    fleet = storm.fleet
    tally = fleet.tally(run)
    routes = tally.routes
    checks = {k: 0 for k in ("wrong-box", "out-routing", "failures", "back", "dns",
                             "end-state")}
    violations = []
    ids = {h.name: h.service_id for h in fleet.hosts}
    sip_check = fleet.profile.sip_check

    # wrong-box: every answered call
    for answer in tally.answers:
        checks["wrong-box"] += 1
        if answer.wrong_box:
            violations.append(Violation("wrong-box", f"call routed as {answer.service} answered "
                                        f"by {answer.eid}", answer.time, [answer.call_id]))

    # election delays: a leader kill holds every catalog write until a new leader
    elections = [(f.began, f.began + float(re.search(r"after ([\d.]+)s", f.note).group(1)))
                 for f in storm.faults if f.kind == "leader" and f.began
                 and "new leader after" in f.note]

    def slack(t0, t1):
        return sum(e1 - e0 + 1.0 for e0, e1 in elections if e0 <= t1 and e1 >= t0 - 1.0)

    # out-routing: each route to a box while it was out, later than the bound
    for f in storm.faults:
        if f.target == "server" or f.began is None or f.kind not in OUT_BOUND_S:
            continue
        if f.kind == "sip_away" and not sip_check:
            continue   # without sip_check the module cannot know: Kamailio fails over
        bound = OUT_BOUND_S[f.kind]
        # From when the fault is in effect: a client agent asked to stop leaves the cluster
        # first (seconds), and serves its box's registration until it has left.
        start = f.in_effect or f.began
        until = f.off_at or storm.ended
        allowed_from = start + bound + slack(start, start + bound)
        checks["out-routing"] += 1
        late = [r for r in routes if r.service == ids[f.target] and allowed_from < r.time < until]
        if late:
            violations.append(Violation(
                "out-routing", f"{len(late)} call(s) routed to {f.target} more than {bound}s "
                f"after {f.kind} #{f.number} began", late[0].time, [r.call_id for r in late]))

    # failures: each failed call was routed to a box killed / SIP-dead during it
    deadly = [f for f in storm.faults if f.kind in ("kill9", "sip_away") and f.began]
    hold = hold_ms / 1000.0
    routes_of = {}
    for r in routes:
        routes_of.setdefault(r.call_id, []).append(r)
    for call_id in sorted(tally.failed_ids):
        checks["failures"] += 1
        excused = any(_killed_it(f, r, ids, hold, storm) for r in routes_of.get(call_id, [])
                      for f in deadly)
        if not excused:
            first = min((r.time for r in routes_of.get(call_id, [])), default=0.0)
            answered = [f"{_name(ids, a.eid)}@{_clock(a.time)}" for a in tally.answers
                        if a.call_id == call_id]
            violations.append(Violation(
                "failures", _sipp_error(run, call_id) + "call failed, routed to " + (", ".join(
                    f"{_name(ids, r.service)}@{_clock(r.time)}" for r in routes_of.get(call_id, []))
                    or "nowhere (Kamailio routed it to no box)")
                + f"; answered by {', '.join(answered) or 'no box'}", first, [call_id]))

    # back: every box fault ended with the box back in rotation within its bound
    for f in storm.faults:
        if f.target == "server" or f.began is None:
            continue
        checks["back"] += 1
        if f.error:
            violations.append(Violation("back", f"{f.kind} #{f.number} on {f.target} failed: "
                                        f"{f.error}", f.began))
            continue
        bound = BACK_BOUND_S[f.kind] + slack(f.ended or 0, (f.ended or 0) + BACK_BOUND_S[f.kind])
        if f.back is None or f.back - f.ended > bound:
            took = "never" if f.back is None else f"after {f.back - f.ended:.1f}s"
            violations.append(Violation("back", f"{f.target} back in rotation {took} (bound "
                                        f"{bound:.1f}s) after {f.kind} #{f.number}",
                                        f.ended or f.began))

    # dns: no DNS answer lists a box the healthy set dropped longer ago than TTL + lag
    checks["dns"], late = dns_invariant(storm.dns.samples)
    for when, service_id, seconds in late:
        violations.append(Violation("dns", f"DNS listed {_name(ids, service_id)} {seconds:.1f}s "
                                    "after the healthy set dropped it", when))
    if storm.dns.unknown_targets:
        violations.append(Violation("dns", "DNS answered targets that are no box: "
                                    f"{sorted(storm.dns.unknown_targets)}", storm.ended))

    # end-state
    entries = fleet.cluster.health(SERVICE)
    registered = [e["Service"]["ID"] for e in entries]
    checks["end-state"] += 1
    if sorted(registered) != sorted(ids.values()):
        violations.append(Violation("end-state", f"registered {registered}, expected one each "
                                    f"of {sorted(ids.values())}", time.time()))
    for host in fleet.hosts:
        checks["end-state"] += 2
        status = fleet.status(host)
        if status != "passing":
            violations.append(Violation("end-state", f"{host.name} {status} at the end",
                                        time.time()))
        if fleet.cluster.kv(f"fleet/{host.service_id}/{KV_KEY}")[0] is None:
            violations.append(Violation("end-state", f"{host.name}: KV key fleet/"
                                        f"{host.service_id}/{KV_KEY} missing at the end",
                                        time.time()))
    growth = {}
    before, warm = storm.samples.get("idle before", {}), storm.samples.get("warm", {})
    after = storm.samples.get("idle after", {})
    for key in sorted(set(before) & set(warm) & set(after)):
        idle0, warm0, idle1 = before[key], warm[key], after[key]
        threads = idle1.threads - idle0.threads
        rss = idle1.rss_kb - warm0.rss_kb
        checks["end-state"] += 1
        growth[f"{key[0]}/{key[1]}"] = {"seconds": round(idle1.time - warm0.time),
                                        "threads": threads, "rss_kb": rss,
                                        "rss_kb_with_warm_up": idle1.rss_kb - idle0.rss_kb}
        if threads > THREAD_GROWTH or rss > RSS_GROWTH_KB:
            violations.append(Violation("end-state", f"{key[0]} (pid {key[1]}) grew by "
                                        f"{threads} threads (idle before and after), {rss} kB "
                                        f"(warm to idle after) over "
                                        f"{idle1.time - warm0.time:.0f}s", idle1.time))
    # The module's lasting threads, per box, whichever process runs it now: the same names.
    module_threads = {}
    for name in sorted({k[0] for k in after}):
        first = [v.module_names for k, v in before.items() if k[0] == name]
        last = [v.module_names for k, v in after.items() if k[0] == name]
        module_threads[name] = (len(first[0]) if first else None, len(last[0]))
        checks["end-state"] += 1
        if first and last[0] != first[0]:
            violations.append(Violation("end-state", f"{name}: the module runs {list(last[0])} "
                                        f"at the end, {list(first[0])} at the start",
                                        time.time()))
    growth["module threads (start, end)"] = module_threads
    growth["restarted, not compared"] = sorted(k[0] for k in set(after) - set(before))

    failed_why = {}
    for call_id in tally.failed_ids:
        boxes = [f.kind for r in routes_of.get(call_id, []) for f in deadly
                 if _killed_it(f, r, ids, hold, storm)]
        why = boxes[0] if boxes else "unexplained"
        failed_why[why] = failed_why.get(why, 0) + 1
    figures = {"seed": storm.seed, "minutes": storm.minutes, "profile": fleet.profile.label,
               "sip_check": sip_check, "calls_attempted": tally.attempted,
               "calls_failed": tally.failed, "failed_why": failed_why,
               "by_transport": tally.by_transport,
               "answered_by": {_name(ids, k): v for k, v in tally.answered_by().items()},
               "refused_as_other_box": len(tally.refused),
               "faults": storm.kind_counts(),
               "dns_samples": len(storm.dns.samples),
               "dns_answered": len([x for x in storm.dns.samples if x.listed is not None]),
               "fault_errors": len([f for f in storm.faults if f.error]),
               "checks": checks, "violations": len(violations), "growth": growth}
    return Verdict(checks, violations, figures)


def _killed_it(fault, route, ids, hold, storm):
    """The call routed by route was on (or sent to) the box while fault made it unable to
    carry it: its life (setup, hold, SIPp's 20 s receive timeout) overlaps the fault."""
    return (route.service == ids.get(fault.target)
            and route.time <= (fault.ended or storm.ended) + 1.0
            and route.time + hold + 25.0 >= fault.began)


def _sipp_error(run, call_id):
    """What SIPp's error log says about a call (its line naming the call), '' if nothing."""
    for sipp in run.sipps:
        try:
            text = (sipp.dir / "errors.log").read_text(errors="replace")
        except OSError:
            continue
        for block in text.split("\n\n"):
            if call_id in block:
                first = next((ln for ln in block.splitlines() if ln.strip()), "")
                return f"[SIPp {sipp.transport}: {first.strip()[:160]}] "
    return ""


def _name(ids, service_id):
    return next((n for n, s in ids.items() if s == service_id), service_id)


def _clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def explain(storm, violation, window=20.0):
    """The seed, the faults around a violation and its calls."""
    around = [f for f in storm.faults if f.began and
              f.began - window <= violation.when <= (f.back or f.ended or f.began) + window]
    lines = [f"VIOLATION {violation.invariant}: {violation.what} at {_clock(violation.when)}",
             f"  seed {storm.seed} (CHAOS_SEED={storm.seed} CHAOS_MINUTES={storm.minutes} "
             "make chaos reproduces the schedule)",
             "  faults around it:"] + [f"    {f.line()}" for f in around]
    if violation.calls:
        lines.append("  calls: " + ", ".join(violation.calls[:10])
                     + (f" (+{len(violation.calls) - 10})" if len(violation.calls) > 10 else ""))
    return "\n".join(lines)


def table(verdict):
    fig = verdict.figures
    lines = [f"chaos: seed {fig['seed']}, {fig['minutes']} min, {fig['profile']}, sip_check "
             f"{'on' if fig['sip_check'] else 'absent'}",
             f"calls attempted {fig['calls_attempted']}, failed {fig['calls_failed']} "
             f"{fig['failed_why']}; by transport (started, ended) {fig['by_transport']}",
             f"answered by {fig['answered_by']}; refused as another box (failed over) "
             f"{fig['refused_as_other_box']}",
             "faults: " + ", ".join(f"{k} {v}" for k, v in sorted(fig["faults"].items()))
             + f" ({sum(fig['faults'].values())})",
             "invariant checks: " + ", ".join(f"{k} {v}" for k, v in verdict.checks.items()),
             f"Consul DNS sampled {fig['dns_samples']} times ({fig['dns_answered']} answers), "
             "compared with the healthy set",
             f"violations: {fig['violations']}"]
    return "\n".join(lines)
