"""`make bench` (from the repository root; BENCH_ARGS=... passes options): res_discovery_consul
against Asterisk 16's own HTTP endpoint, and what it costs Asterisk and Consul, on the real test
bed (Asterisk 16.28, Consul 1.8.7).

    python -m bench                    every phase (about 45 minutes)
    python -m bench --quick            fewer rounds, samples and shorter windows (to try the tool)
    python -m bench --only idle,converge,fleetscale
    python -m bench --profile          also where Asterisk's time goes (perf, py-spy)
    python -m bench --module-so X.so   bench that build instead of building the work tree

Phases (each on Asterisk processes of its own, one Consul agent for all but fleetscale):
    http       the EID check endpoint vs /httpstatus: wrk, 8 keep-alive connections, A/B rounds
    load       module load / unload wall time with Consul up, refusing, blackholed; time to the
               catalog and to the check passing
    memory     RSS before load, after load, after N unload/load cycles
    idle       Asterisk's CPU time and context switches at rest, with and without the module
               (check_type both, [kv]), over the same window (--idle-seconds, 300)
    fleetscale the requests per second one instance sends its agent, by endpoint, and what
               reaches the servers (from the agent's request log, --fleet-seconds 600, four
               configurations side by side, after the start's deferred syncs: up to 8 min more;
               --quick does not wait for them), scaled to 10 000 instances
    converge   at default settings, median and worst of --converge-runs (5): load -> passing,
               maintenance and drain -> out of the healthy set, agent restart -> registered,
               core stop gracefully -> out, kill -9 -> check critical
    agentdown  Asterisk's CPU with the agent up (at rest), then stopped, over the same window
               (--agentdown-seconds, 30): http, https with ca_file, https with a ca_path of
               the system's certificates (each with an agent of its own)
    restart    time to re-register after the Consul agent restarts (resync_interval 1s)
    lifecycle  the same with resync_interval at its default, 30s (--lifecycle-restarts, 3):
               what a box left at the defaults sees

It prints the figures of each phase, then a summary table (every figure with its goal,
PASS/MISS; convergence and fleet figures without one), and writes the JSON to bench/results/
(latest.json too). A missed goal never fails the command; a phase that crashes (the tool or
the test bed broke) is reported under "errors", the others still run, and the command then
exits 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Dict

from integration_tests.testbed import paths, runtime

from . import (agentdown, converge, fleetscale, http, idle, lifecycle, memory, report, restart,
               states, summary)
from .harness import Bed, log

PHASES = ("http", "load", "memory", "idle", "agentdown", "fleetscale", "converge", "restart",
          "lifecycle")
# These restart the bed's Consul agent: after the phases that use it undisturbed.
AGENT_RESTARTS = ("converge", "restart", "lifecycle")


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds and samples: to try the tool, not figures to keep")
    parser.add_argument("--only", default=",".join(PHASES),
                        help="comma-separated phases: %s (and profile)" % ",".join(PHASES))
    parser.add_argument("--profile", action="store_true",
                        help="also profile Asterisk serving each endpoint (perf, py-spy)")
    parser.add_argument("--json", type=Path, help="write the JSON here (default bench/results/)")
    parser.add_argument("--module-so", type=Path,
                        help="bench this res_discovery_consul.so (built for Asterisk 16) "
                             "instead of building the work tree")
    parser.add_argument("--rounds", type=int, help="HTTP A/B rounds (4)")
    parser.add_argument("--seconds", type=float, help="seconds per wrk run (5)")
    parser.add_argument("--cold", type=int, help="cold loads per Consul state (5)")
    parser.add_argument("--warm", type=int, help="warm loads per Consul state (7)")
    parser.add_argument("--cycles", type=int, help="memory: unload/load cycles (200)")
    parser.add_argument("--restarts", type=int, help="Consul agent restarts (4)")
    parser.add_argument("--lifecycle-restarts", type=int,
                        help="lifecycle: agent restarts at the default resync_interval (3; "
                             "each waits up to 30 s)")
    parser.add_argument("--idle-seconds", type=float,
                        help="idle: the measured window, with and without the module (300)")
    parser.add_argument("--fleet-seconds", type=float,
                        help="fleetscale: the agents' request logs read over this long (600)")
    parser.add_argument("--converge-runs", type=int, help="converge: runs per figure (5)")
    parser.add_argument("--agentdown-seconds", type=float,
                        help="agentdown: the measured window, agent up and agent down (30)")
    parser.add_argument("--check-interval", default="1s",
                        help="the EID check's interval (1s; Consul runs a new check's first "
                             "probe after a random part of it)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"rounds": 2 if quick else 4, "seconds": 2.0 if quick else 5.0,
                "cold": 2 if quick else 5, "warm": 3 if quick else 7,
                "cycles": 40 if quick else 200, "restarts": 2 if quick else 4,
                "lifecycle_restarts": 2 if quick else 3,
                "idle_seconds": 30.0 if quick else 300.0,
                "fleet_seconds": 90.0 if quick else 600.0,
                "converge_runs": 2 if quick else 5,
                "agentdown_seconds": 10.0 if quick else 30.0}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in only if p not in PHASES + ("profile",)]
    if unknown:
        parser.error("unknown phase(s): %s" % ", ".join(unknown))
    if args.profile and "profile" not in only:
        only.append("profile")
    # Whatever the order asked, the phases that restart the agent the others use go last.
    args.only = sorted(only, key=lambda p: (p in AGENT_RESTARTS, p in ("restart", "lifecycle"),
                                            p == "profile"))
    return args


def _version(argv, env=None) -> str:
    try:
        out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=20,
                             env=env).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def _commit() -> str:
    root = str(paths.repo_root())
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        # Only what goes into the module counts as a change to what is measured.
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--",
                                "asterisk_consul", "cbridge", "setup.py", "Makefile"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head or "?") + ("+uncommitted changes" if dirty else "")


def _meta() -> Dict[str, object]:
    """Facts about this run."""
    ast_env = dict(os.environ, LD_LIBRARY_PATH=paths.ast16_library_path())
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "asterisk": _version([paths.ast16_binary(), "-V"], ast_env),
        "consul": _version([paths.consul_binary(), "version"]),
        "cpus": os.cpu_count() or 0,
        "python": platform.python_version(),
        "commit": _commit(),
        "loadavg_before": list(os.getloadavg()),
    }


def main(argv=None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    runtime.install_handlers()
    results: Dict[str, object] = {
        "meta": _meta(), "errors": {},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if args.quick:
        log("--quick: short runs to try the tool; the figures are not worth keeping")
    if args.module_so is not None:
        results["meta"]["module_so"] = str(args.module_so)
    began = time.monotonic()
    phases: Dict[str, Callable[[Bed], Dict[str, object]]] = {
        "http": lambda bed: http.compare(bed, rounds=args.rounds, seconds=args.seconds),
        "load": lambda bed: states.run(bed, cold=args.cold, warm=args.warm),
        "memory": lambda bed: memory.run(bed, cycles=args.cycles),
        "restart": lambda bed: restart.run(bed, samples=args.restarts),
        "lifecycle": lambda bed: lifecycle.run(bed, samples=args.lifecycle_restarts),
        "idle": lambda bed: idle.run(bed, seconds=args.idle_seconds),
        "agentdown": lambda bed: agentdown.run(bed, seconds=args.agentdown_seconds),
        "fleetscale": lambda bed: fleetscale.run(bed, seconds=args.fleet_seconds,
                                                 wait_deferred=not args.quick),
        "converge": lambda bed: converge.run(bed, runs=args.converge_runs),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
            with Bed(Path(workdir), check_interval=args.check_interval,
                     module_so=args.module_so) as bed:
                for name in args.only:
                    if name == "profile":
                        from . import profile

                        def run(bed, seconds=max(args.seconds, 4.0)):
                            return profile.run(bed, seconds=seconds)
                    else:
                        run = phases[name]
                    log("phase %s ..." % name)
                    try:
                        results[name] = run(bed)
                    except Exception:  # noqa: BLE001 - one failed phase must not lose the others
                        results["errors"][name] = traceback.format_exc()
                        log("phase %s FAILED:\n%s" % (name, results["errors"][name]))
    except Exception:  # noqa: BLE001 - the bed itself (build, Consul) failed: still report
        results["errors"]["bed"] = traceback.format_exc()
        log("the test bed FAILED:\n%s" % results["errors"]["bed"])
    finally:
        runtime.cleanup_all()
    results["meta"]["loadavg_after"] = list(os.getloadavg())
    results["meta"]["seconds"] = round(time.monotonic() - began, 1)
    results["goals"] = report.goals(results)
    path = report.write_json(results, args.json)
    results["json_path"] = str(path)
    print()
    print(report.table(results))
    print()
    print(summary.table(results))
    log("done in %.0f s" % results["meta"]["seconds"])
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
