"""The fleet's table and its JSON file (bench/results/fleet-<timestamp>.json)."""

import json
import time
from pathlib import Path

from integration_tests.testbed import paths

RESULTS_DIR = paths.repo_root() / "bench" / "results"


def table(results, meta):
    lines = [f"fleet: {meta.get('hosts')} hosts, {meta.get('profile', 'Asterisk 16')}; "
             "3 Consul servers; "
             f"SIPp {meta.get('rate')} calls/s held {meta.get('hold_ms')} ms; "
             f"check_interval {meta.get('check_interval')}, resync_interval "
             f"{meta.get('resync_interval')}",
             "",
             "%-14s %-40s %9s %7s %8s  %s" % ("", "scenario", "attempted", "failed", "seconds",
                                               "(seconds measure)"),
             "-" * 110]
    for r in results:
        seconds = "-" if r.get("seconds") is None else "%.2f" % r["seconds"]
        lines.append("%-14s %-40s %9s %7s %8s  %s" % (
            r["scenario"], r["title"], r["attempted"], r["failed"], seconds, r["measures"]))
    for r in results:
        if r.get("error"):
            lines.append(f"{r['scenario']}: FAILED: {r['error']}")
    return "\n".join(lines)


def write_json(results, meta, path=None):
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = Path(path) if path else RESULTS_DIR / f"fleet-{time.strftime('%Y%m%d-%H%M%S')}.json"
    doc = {"meta": meta, "scenarios": {r["scenario"]: r for r in results}}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
    return path
