"""Lifecycle figures, on Asterisk 16 with the real module and a real Consul 1.8.7 agent:

    module load wall time (median of >= 5) with the agent up, refusing connections and
    blackholed (accepts, never answers), cold (first load in a new Asterisk process: starts
    Python) and warm;
    time from `module load` to the service in Consul's catalog and to its EID check passing;
    time to re-register after the Consul agent restarts (a dev agent comes back empty), with
    resync_interval 1s and with the default (30s).

    ~/.cache/asterisk-consul/venv/bin/python -m bench.lifecycle [--samples 5]
        [--default-samples 3] [--skip-default]

Prints a table; writes bench/results/lifecycle.json. Load times are measured over a
logged-in AMI session (ModuleLoad), so they are Asterisk's own plus one loopback round trip;
`asterisk -rx` adds the cost of starting the remote console (~10 ms here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from integration_tests.testbed import runtime

from . import restart, states
from .harness import TARGETS, Bed
from .report import RESULTS_DIR

DEFAULT_RESYNC = "30s"  # Settings.resync_interval's default
FAST_RESYNC = "1s"


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5,
                        help="loads per Consul state, cold and warm each; restarts at 1s (5)")
    parser.add_argument("--default-samples", type=int, default=3,
                        help="agent restarts with the default resync_interval (3; each "
                             "waits up to 30 s)")
    parser.add_argument("--skip-default", action="store_true",
                        help="skip the restarts with the default resync_interval")
    parser.add_argument("--check-interval", default="1s",
                        help="the EID check's interval (1s; Consul runs a new check's first "
                             "probe after a random part of it)")
    args = parser.parse_args(argv)
    if args.samples < 5:
        parser.error("--samples must be at least 5 (the figures are medians of >= 5)")
    return args


def _ms(summary: Dict, key: str = "median_ms") -> str:
    if not summary or not summary.get("n"):
        return "-"
    return "%.1f" % summary[key]


def _range(summary: Dict) -> str:
    if not summary or not summary.get("n"):
        return "-"
    return "%s-%s" % (_ms(summary, "min_ms"), _ms(summary, "max_ms"))


def table(results: Dict) -> str:
    rows: List[List[str]] = []
    for target in TARGETS:
        entry = results["load"][target]
        for kind in ("cold", "warm"):
            s = entry["%s_load" % kind]
            rows.append(["module load, Consul %s (%s)" % (target, kind), _ms(s), _range(s),
                         str(s.get("n", 0))])
    up = results["load"]["up"]
    for key, label in (("catalog_after_load", "load -> service in the catalog"),
                       ("passing_after_load", "load -> EID check passing (check_interval %s)"
                        % up.get("check_interval", "?"))):
        s = up[key]
        rows.append([label, _ms(s), _range(s), str(s.get("n", 0))])
    for key, entry in results["restart"].items():
        s = entry["reregister_after_agent_back"]
        rows.append(["agent restart -> re-registered (resync %s)" % entry["resync_interval"],
                     _ms(s), _range(s), str(s.get("n", 0))])
    width = max(len(r[0]) for r in rows) + 2
    lines = ["res_discovery_consul lifecycle on %s, %s (%s CPUs, load average %.2f)" % (
        results["meta"]["asterisk"], results["meta"]["consul"], results["meta"]["cpus"],
        results["meta"]["loadavg_before"][0]),
        "  %s%12s  %-20s %s" % ("".ljust(width), "median ms", "min-max ms", "n")]
    lines += ["  %s%12s  %-20s %s" % (r[0].ljust(width), r[1], r[2], r[3]) for r in rows]
    lines.append("  (unload with Consul blackholed waits for consul_timeout_ms by design; "
                 "medians: %s)" % ", ".join("%s %s ms" % (t, _ms(results["load"][t]["warm_unload"]))
                                            for t in TARGETS))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    runtime.install_handlers()
    from .__main__ import _meta  # the same facts as `python -m bench` records

    results: Dict[str, object] = {"meta": _meta(), "settings": vars(args), "restart": {}}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as workdir:
        with Bed(Path(workdir), check_interval=args.check_interval) as bed:
            results["load"] = states.run(bed, cold=args.samples, warm=args.samples)
            results["restart"]["resync_1s"] = restart.run(bed, samples=args.samples,
                                                          resync_interval=FAST_RESYNC)
            if not args.skip_default:
                results["restart"]["resync_default"] = restart.run(
                    bed, samples=args.default_samples, resync_interval=DEFAULT_RESYNC)
    results["meta"]["seconds"] = round(time.monotonic() - began, 1)
    results["meta"]["loadavg_after"] = list(os.getloadavg())
    results["meta"]["python"] = platform.python_version()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "lifecycle.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    print(table(results))
    print("JSON: %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
