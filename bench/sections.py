"""The printed figures of the idle, fleetscale and converge phases (report.py prints the
others, summary.py the closing table)."""

from __future__ import annotations

from typing import Dict, List, Optional

from . import agentlog
from .converge import FIGURES
from .fleetscale import CONFIGS, START_S

RULE = "-" * 100


def _failed_or_absent(results: Dict, phase: str) -> List[str]:
    error = results.get("errors", {}).get(phase)
    if error:
        return ["  FAILED: %s" % error.strip().splitlines()[-1][:90]]
    return ["  (not run)"]


def idle(results: Dict, goal: str = "", verdict: str = "") -> List[str]:
    lines = [RULE]
    entry = results.get("idle")
    if not entry:
        return lines + ["Idle cost"] + _failed_or_absent(results, "idle")
    lines.append("Idle cost: two Asterisks at rest for %.0f s, one with the module loaded (%s)"
                 % (entry["seconds"], entry["settings"]))

    def row(label: str, c: Dict) -> str:
        return "  %-30s %7.3f %% of one core (schedstat %.3f %%), %6.2f switches/s, %d threads" % (
            label, c["cpu_pct"], c["cpu_pct_schedstat"], c["switches_per_s"], c["thread_count"])
    lines.append(row("without the module", entry["baseline"]))
    lines.append(row("with the module", entry["module"]))
    extra = entry["extra"]
    lines.append(("  %-30s %+7.3f %% of one core (schedstat %+.3f %%), %+6.2f wakeups/s   "
                  "goal %s  %s" % ("the module adds", extra["cpu_pct"],
                                   extra["cpu_pct_schedstat"], extra["switches_per_s"], goal,
                                   verdict)).rstrip())
    for name, thread in sorted((entry.get("module_threads") or {}).items()):
        if thread:
            lines.append("    thread %-23s %7.3f %% of one core, %6.2f switches/s" % (
                name, thread["cpu_pct"], thread["switches_per_s"]))
        else:
            lines.append("    thread %-23s (not found)" % name)
    lines.append("  (CPU from utime+stime, %d ticks/s: one tick over the window is %.4f %%; "
                 "switches of the threads alive at both ends)" % (
                     entry["clock_ticks_per_s"],
                     100.0 / entry["clock_ticks_per_s"] / max(entry["seconds"], 1e-9)))
    return lines


def _rate(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else ("%.*f" % (digits, value))


def fleetscale(results: Dict) -> List[str]:
    lines = [RULE]
    entry = results.get("fleetscale")
    if not entry:
        return lines + ["Fleet scale"] + _failed_or_absent(results, "fleetscale")
    n = entry["instances"]
    names = [c[0] for c in CONFIGS if c[0] in entry["configs"]]
    configs = entry["configs"]
    lines.append("Fleet scale: requests/s one instance sends its Consul agent at rest (%.0f s of "
                 "the agent's request log), and x %d instances" % (entry["window_s"], n))
    for name in names:
        lines.append("  %-9s %s" % (name, configs[name]["settings"]))
    width = 9 * len(names)
    lines.append("  %-72s%-*s%s" % ("", width, "req/s, one instance", "req/s, x %d" % n))
    lines.append("  %-44s %-27s" % ("endpoint", "reaches")
                 + "".join("%9s" % name[:8] for name in names) * 2)
    endpoints: Dict[str, str] = {}
    for name in names:
        for endpoint, row in configs[name]["rows"].items():
            endpoints[endpoint] = row["reach"]
    order = sorted(endpoints, key=lambda e: (agentlog.REACHES.index(endpoints[e]), e))
    for endpoint in order:
        per = [configs[name]["rows"].get(endpoint, {}).get("per_s", 0.0) for name in names]
        lines.append("  %-44s %-27s" % (endpoint[:44], endpoints[endpoint][:27])
                     + "".join("%9.4f" % p for p in per)
                     + "".join("%9.0f" % agentlog.scaled(p, n) for p in per))
    lines.append("  by how far they go, per instance and x %d (reference: what a Consul server "
                 "handles)" % n)
    for reach in agentlog.REACHES:
        per = [configs[name]["by_reach"].get(reach, 0.0) for name in names]
        ref = (entry.get("reference") or {}).get(reach)
        lines.append("  %-72s" % ("  " + reach) + "".join("%9.4f" % p for p in per)
                     + "".join("%9.0f" % agentlog.scaled(p, n) for p in per)
                     + ("   vs ~%d/s" % ref[0] if ref else ""))
    lines.append("  %-72s" % "  Raft log growth of the agent (a dev server), entries/s"
                 + "".join("%9s" % _rate(configs[name]["raft_writes_per_s"]) for name in names)
                 + "   (no instance: %s)" % _rate(entry.get("baseline_raft_writes_per_s")))
    lines.append("  %-72s" % "  EID check polls of Asterisk by the agent, per s"
                 + "".join("%9.4f" % configs[name]["eid_polls_per_s"] for name in names))
    lines.append("  per start (module load, the first %g s%s), requests by endpoint:" % (
        START_S, ", and the checks' deferred first sync" if entry.get("deferred_waited") else
        "; the checks' deferred first sync not waited for"))
    for name in names:
        start = configs[name]["start"]
        lines.append("    %-8s %s" % (name, ", ".join("%s x%d" % (e, c) for e, c in start.items())
                                      or "-"))
    lines.append("  reference: %s" % entry.get("reference_source", ""))
    return lines


def converge(results: Dict) -> List[str]:
    lines = [RULE]
    entry = results.get("converge")
    if not entry:
        return lines + ["Convergence"] + _failed_or_absent(results, "converge")
    lines.append("Convergence (%s), %d runs: median and worst, no goal" % (entry["settings"],
                                                                       entry["runs"]))
    for key, text in FIGURES:
        s = entry["figures"].get(key) or {}
        if not s.get("n"):
            lines.append("  %-62s -" % text)
            continue
        lines.append("  %-62s median %8.1f ms   worst %8.1f ms" % (text, s["median_ms"],
                                                                    s["max_ms"]))
    return lines
