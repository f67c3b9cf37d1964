"""The closing table of `make bench`: every figure with its goal and PASS/MISS, then the
convergence and fleet figures, which have no goal (they are printed to be read)."""

from __future__ import annotations

from typing import Dict, List

from . import agentlog
from .converge import FIGURES
from .report import FORMATS, goal_text


def _row(label: str, value: str, goal: str = "", verdict: str = "") -> str:
    return ("  %-62s %-22s %-24s %s" % (label, value, goal, verdict)).rstrip()


def _goal_rows(results: Dict) -> List[str]:
    lines = []
    for goal in results.get("goals", []):
        value = goal["value"]
        shown = "-" if value is None else FORMATS[goal["goal"]] % value
        verdict = goal["verdict"] if value is not None else "n/a (not run)"
        lines.append(_row(goal["text"], shown, goal_text(goal["goal"]), verdict))
    return lines


def _convergence_rows(results: Dict) -> List[str]:
    entry = results.get("converge")
    if not entry:
        return [_row("(convergence not run)", "")]
    lines = []
    for key, text in FIGURES:
        s = entry["figures"].get(key) or {}
        value = ("%.0f / %.0f ms" % (s["median_ms"], s["max_ms"])) if s.get("n") else "-"
        lines.append(_row(text, value, "(median / worst, n=%d)" % s.get("n", 0)))
    return lines


def _agentdown_rows(results: Dict) -> List[str]:
    entry = results.get("agentdown")
    if not entry:
        return [_row("(agent down not run)", "")]
    lines = []
    for name, figures in entry.items():
        ratio = figures.get("ratio")
        lines.append(_row("%s: Asterisk's CPU, agent up -> down" % name,
                          "%.3f -> %.3f %%" % (figures["rest_cpu_pct"], figures["down_cpu_pct"]),
                          "(%s; module threads %.3f -> %.3f %%)" % (
                              "x%.1f" % ratio if ratio else "rest below a tick",
                              figures["rest_module_threads_cpu_pct"],
                              figures["down_module_threads_cpu_pct"])))
    return lines


def _fleet_rows(results: Dict) -> List[str]:
    entry = results.get("fleetscale")
    if not entry:
        return [_row("(fleet scale not run)", "")]
    n = entry["instances"]
    reference = entry.get("reference") or {}
    lines = []
    for name, config in entry["configs"].items():
        reach = config["by_reach"]
        lines.append(_row("%s (%s)" % (name, config["settings"]), ""))
        lines.append(_row("  requests to the agents", "%.0f /s" % agentlog.scaled(
            sum(reach.values()), n), "(%.4f /s each)" % sum(reach.values())))
        for kind in agentlog.REACHES[1:]:
            total = agentlog.scaled(reach.get(kind, 0.0), n)
            ref = reference.get(kind)
            note = ("(%.1f %% of ~%d/s)" % (100.0 * total / ref[0], ref[0])) if ref else ""
            lines.append(_row("  %s" % kind, "%.0f /s" % total, note))
    return lines


def table(results: Dict) -> str:
    lines = ["=" * 100, "SUMMARY", _row("figure", "value", "goal", "verdict")]
    lines += _goal_rows(results)
    lines.append(_row("convergence at default settings (no goal)", ""))
    lines += _convergence_rows(results)
    lines.append(_row("an agent outage vs rest, % of one core (no goal)", ""))
    lines += _agentdown_rows(results)
    fleet = results.get("fleetscale") or {}
    lines.append(_row("at rest, x %d instances (no goal)" % fleet.get("instances", 10000), ""))
    lines += _fleet_rows(results)
    lines.append("=" * 100)
    goals = results.get("goals", [])
    missed = [g for g in goals if g["verdict"] == "MISS"]
    passed = [g for g in goals if g["verdict"] == "PASS"]
    lines.append("goals: %d PASS, %d MISS%s%s" % (
        len(passed), len(missed), (": " + ", ".join(g["goal"] for g in missed)) if missed else "",
        ", %d not run" % (len(goals) - len(passed) - len(missed))
        if len(goals) > len(passed) + len(missed) else ""))
    if results.get("errors"):
        lines.append("phases that FAILED (tool or test bed problem, not a goal): "
                     + ", ".join(sorted(results["errors"])))
    if results.get("json_path"):
        lines.append("JSON: %s" % results["json_path"])
    return "\n".join(lines)
