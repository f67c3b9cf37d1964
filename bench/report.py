"""Goals, the printed table and the JSON file of a bench run. A missed goal is printed as MISS;
it never makes the command fail."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional

from . import sections
from .harness import TARGETS

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# (key, description, comparison, limit): the figure judged is looked up by goals().
GOALS = (
    ("http_rps_ratio", "check endpoint throughput vs /httpstatus", ">=", 1.00),
    ("http_p50_ratio", "check endpoint p50 latency vs /httpstatus", "<=", 1.00),
    ("load_ms", "module load, every Consul state, cold and warm (median)", "<=", 150.0),
    ("catalog_ms", "module load -> service in Consul's catalog (median)", "<=", 250.0),
    ("rss_load_mb", "Asterisk RSS growth at the first load", "<=", 20.0),
    ("rss_cycles_mb", "Asterisk RSS growth over the unload/load cycles", "<=", 2.0),
    ("idle_cpu_pct", "CPU the module adds to an idle Asterisk (both checks, [kv])", "<=", 0.1),
)
# How each goal's figure and limit are written.
FORMATS = {"http_rps_ratio": "%.2fx", "http_p50_ratio": "%.2fx", "load_ms": "%.1f ms",
           "catalog_ms": "%.1f ms", "rss_load_mb": "%+.1f MB", "rss_cycles_mb": "%+.2f MB",
           "idle_cpu_pct": "%.3f %% of one core"}


def goal_text(key: str) -> str:
    """'>= 1.00x', '<= +20.0 MB': the goal as the tables print it."""
    for goal_key, _text, op, limit in GOALS:
        if goal_key == key:
            return "%s %s" % (op, FORMATS[key] % limit)
    raise KeyError(key)


def _get(results: Dict, *keys):
    node = results
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def figures(results: Dict) -> Dict[str, Optional[float]]:
    """The figure each goal judges (None when its phase did not run or failed)."""
    out: Dict[str, Optional[float]] = {}
    out["http_p50_ratio"] = _get(results, "http", "ratios", "p50_us", "median")
    out["http_rps_ratio"] = _get(results, "http", "ratios", "rps", "median")
    loads = []
    for state in (_get(results, "load") or {}).values():
        for kind in ("cold_load", "warm_load"):
            value = _get(state, kind, "median_ms")
            if value is not None:
                loads.append(value)
    out["load_ms"] = max(loads) if loads else None
    # The slowest of: after a cold load (Python starts first), after a warm one, and over
    # the memory cycles.
    catalog = [_get(results, "load", "up", "catalog_after_cold_load", "median_ms"),
               _get(results, "load", "up", "catalog_after_warm_load", "median_ms"),
               _get(results, "memory", "catalog_after_load", "median_ms")]
    catalog = [c for c in catalog if c is not None]
    out["catalog_ms"] = max(catalog) if catalog else None
    out["rss_load_mb"] = _get(results, "memory", "load_delta_mb")
    out["rss_cycles_mb"] = _get(results, "memory", "cycles_growth_mb")
    out["idle_cpu_pct"] = _get(results, "idle", "extra", "cpu_pct")
    return out


def goals(results: Dict) -> List[Dict[str, object]]:
    values = figures(results)
    out = []
    for key, text, op, limit in GOALS:
        value = values.get(key)
        if value is None:
            verdict = "n/a"
        elif op == "<=":
            verdict = "PASS" if value <= limit else "MISS"
        else:
            verdict = "PASS" if value >= limit else "MISS"
        out.append({"goal": key, "text": text, "op": op, "limit": limit, "value": value,
                    "verdict": verdict})
    return out


# -- the table ---------------------------------------------------------------------------------

def _ms(summary: Optional[Dict], key: str = "median_ms") -> str:
    if not summary or summary.get("n", 0) == 0:
        return "-"
    return "%.1f" % summary[key]


def _verdict(results: Dict, key: str) -> str:
    for goal in results.get("goals", []):
        if goal["goal"] == key:
            return goal["verdict"]
    return ""


def _row(label: str, value: str, goal: str = "", verdict: str = "") -> str:
    return ("  %-42s %-44s %-10s %s" % (label, value, goal, verdict)).rstrip()


def _restart_rows(results: Dict) -> List[str]:
    """Agent restart -> re-registered: the restart phase (resync 1s), the lifecycle phase
    (resync at its default)."""
    lines: List[str] = []
    for phase in ("restart", "lifecycle"):
        restart = results.get(phase)
        if restart:
            s = restart["reregister_after_agent_back"]
            lines.append(_row("agent restart -> re-registered (resync %s)"
                              % restart["resync_interval"], "median %s ms, max %s ms (n=%s)" % (
                                  _ms(s), _ms(s, "max_ms"), s.get("n", 0))))
        elif phase in results.get("errors", {}):
            lines.append(_row("agent restart (%s): FAILED" % phase,
                              results["errors"][phase].splitlines()[-1][:60]))
    if lines:
        lines.append("  (from the agent answering again: a lost registration is noticed at the "
                     "next resync, so about U(0, resync_interval) plus the module's own time)")
    return lines


def table(results: Dict) -> str:
    meta = results.get("meta", {})
    lines = []
    lines.append("res_discovery_consul bench - %s" % meta.get("started", ""))
    lines.append("  %s; %s; %d CPUs; load average (1 min) %.2f before, %.2f after; commit %s" % (
        meta.get("asterisk", "?"), meta.get("consul", "?"), meta.get("cpus", 0),
        meta.get("loadavg_before", [0])[0], meta.get("loadavg_after", [0])[0], meta.get("commit", "?")))
    lines.append("=" * 100)

    http = results.get("http")
    if http:
        lines.append("HTTP: same Asterisk, same client (%s), A/B alternated x%s rounds, %s" % (
            http.get("tool"), http.get("rounds"),
            "Asterisk on CPU 0, wrk on CPU 1" if http.get("pinned") else "not pinned"))
    else:
        lines.append("HTTP: the check endpoint vs /httpstatus")
    if http:
        for name, label in (("native", "/httpstatus (Asterisk's own)"),
                            ("check", "/res_discovery_consul/check_eid")):
            f = http[name]
            cpu = f.get("server_cpu_us_per_req")
            lines.append(_row(label, "%7.0f req/s  p50 %5.0f us  p99 %6.0f us%s" % (
                f.get("rps", 0), f.get("p50_us", 0), f.get("p99_us", 0),
                "  CPU %.1f us/req" % cpu if cpu is not None else "")))
        r = http["ratios"]
        lines.append(_row("throughput, check / native", "%.2fx" % r["rps"]["median"],
                          goal_text("http_rps_ratio"),
                          _verdict(results, "http_rps_ratio")))
        lines.append(_row("p50 latency, check / native", "%.2fx" % r["p50_us"]["median"],
                          goal_text("http_p50_ratio"),
                          _verdict(results, "http_p50_ratio")))
        lines.append(_row("p99 latency, check / native", "%.2fx" % r["p99_us"]["median"]))
        if "server_cpu_us_per_req" in r:
            lines.append(_row("Asterisk CPU per request, check / native",
                              "%.2fx  (steadier than req/s on a busy machine)"
                              % r["server_cpu_us_per_req"]["median"]))
        lines.append(_row("(per-round throughput ratios)",
                          " ".join("%.2f" % x for x in r["rps"]["per_round"])))
        if "others_cpu_pct_max" in http:
            lines.append(_row("(other processes during the runs, at most)",
                              "%.0f%% of the machine's CPU" % http["others_cpu_pct_max"]))
    elif "http" in results.get("errors", {}):
        lines.append(_row("FAILED", results["errors"]["http"].splitlines()[-1][:60]))
    else:
        lines.append(_row("(not run)", ""))

    lines.append("-" * 100)
    load = results.get("load")
    lines.append("module load / unload wall time over AMI, median ms (cold: the first load in a "
                 "new Asterisk process, which starts Python)")
    if load:
        for state in sorted(load, key=lambda s: (TARGETS + (s,)).index(s)):
            entry = load[state]
            lines.append(_row("Consul %s" % state, "load cold %7s  warm %5s   unload %7s" % (
                _ms(entry.get("cold_load")), _ms(entry.get("warm_load")),
                _ms(entry.get("warm_unload")))))
        lines.append(_row("slowest median load, any state", "%.1f ms" % figures(results)["load_ms"],
                          goal_text("load_ms"), _verdict(results, "load_ms")))
        lines.append("  (unload deregisters: with the agent blackholed it waits consul_timeout_ms, "
                     "2000 by default, by design)")
        refused = sum(int(e.get("refused_unloads") or 0) for e in load.values()) + \
            int((results.get("memory") or {}).get("refused_unloads") or 0)
        if refused:
            lines.append("  %d unload(s) refused by Asterisk ('use count': a check request still "
                         "held the module) and tried again" % refused)
    elif "load" in results.get("errors", {}):
        lines.append(_row("FAILED", results["errors"]["load"].splitlines()[-1][:60]))
    else:
        lines.append(_row("(not run)", ""))

    lines.append("-" * 100)
    lines.append("Registration (Consul up)")
    up = (load or {}).get("up", {})
    memory = results.get("memory") or {}
    if up or memory:
        lines.append(_row("module load -> in /v1/catalog/service/<name>", "", goal_text("catalog_ms"),
                          _verdict(results, "catalog_ms")))
        for label, cat in (("  after a cold load", up.get("catalog_after_cold_load")),
                           ("  after a warm load", up.get("catalog_after_warm_load")),
                           ("  over the memory cycles (warm)", memory.get("catalog_after_load"))):
            if cat and cat.get("n"):
                lines.append(_row(label, "median %s ms, max %s ms (n=%s)" % (
                    _ms(cat), _ms(cat, "max_ms"), cat.get("n", 0))))
        passing = up.get("passing_after_load")
        if passing:
            lines.append(_row("module load -> EID check passing",
                              "median %s ms, max %s ms" % (_ms(passing), _ms(passing, "max_ms"))))
            lines.append("  %s" % ("(check_interval %s: Consul runs a new check's first probe after a "
                                   "random part of the interval)" % up.get("check_interval")))
    lines += _restart_rows(results)

    lines.append("-" * 100)
    lines.append("Asterisk memory (VmRSS; anon = heap and other private memory)")
    if memory:
        rss = memory["rss_kb"]

        def mb(entry):
            return "%.1f MB (anon %.1f, file %.1f)" % (entry["VmRSS"] / 1024, entry["RssAnon"] / 1024,
                                                      entry["RssFile"] / 1024)
        lines.append(_row("before load", mb(rss["before_load"])))
        lines.append(_row("after the first load", mb(rss["after_load"])))
        lines.append(_row("  growth at load", "%+.1f MB" % memory["load_delta_mb"],
                          goal_text("rss_load_mb"),
                          _verdict(results, "rss_load_mb")))
        stages = memory.get("breakdown_kb") or {}
        for key, stage in stages.items():
            lines.append(_row("    " + stage["label"], "%+.1f MB (anon %+.1f, file %+.1f)" % (
                stage["VmRSS"] / 1024, stage["RssAnon"] / 1024, stage["RssFile"] / 1024)))
        lines.append(_row("after %d unload/load cycles" % memory["cycles"], mb(rss["after_cycles"])))
        lines.append(_row("  growth over the cycles", "%+.2f MB" % memory["cycles_growth_mb"],
                          goal_text("rss_cycles_mb"), _verdict(results, "rss_cycles_mb")))
        lines.append(_row("  steady growth after cycle 20", "%+.2f MB / 100 cycles"
                          % memory["steady_growth_mb_per_100"]))
        lines.append(_row("  cycle load / unload, median", "%s / %s ms" % (
            _ms(memory["warm_load"]), _ms(memory["warm_unload"]))))
    elif "memory" in results.get("errors", {}):
        lines.append(_row("FAILED", results["errors"]["memory"].splitlines()[-1][:60]))
    else:
        lines.append(_row("(not run)", ""))

    profile = results.get("profile")
    if profile:
        lines.append("-" * 100)
        lines.append("Profile (perf cpu-clock on Asterisk while wrk loads one endpoint): "
                     "CPU us per request by shared object")
        for name in ("native", "check"):
            dsos = ((profile.get(name) or {}).get("perf") or {}).get("by_dso") or {}
            top = sorted(dsos.items(), key=lambda kv: -kv[1]["us_per_request"])[:5]
            lines.append(_row("  %s" % name, ", ".join("%s %.1f" % (d.split(".cpython")[0], v["us_per_request"])
                                                      for d, v in top) or "(perf unavailable)"))
        spy = (profile.get("check") or {}).get("py_spy")
        if spy:
            lines.append("  py-spy, check endpoint, Python self time: "
                         + "; ".join(t.split("%", 1)[1].strip() for t in spy["top"][:3]))
        lines.append("  files: %s" % profile.get("dir"))

    lines += sections.idle(results, goal_text("idle_cpu_pct"), _verdict(results, "idle_cpu_pct"))
    lines += sections.fleetscale(results)
    lines += sections.converge(results)
    return "\n".join(lines)


def write_json(results: Dict, path: Optional[Path] = None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if path is None:
        path = RESULTS_DIR / ("bench-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=True, default=str)
    path.write_text(text)
    (RESULTS_DIR / "latest.json").write_text(text)
    return path
