"""`make fleet` / `make fleet-stop`: the fleet's scenarios live, with a table.

    python -m integration_tests.fleet [--hosts 3] [--only a,b,...] [--rate 10] [--hold]
    python -m integration_tests.fleet stop

run: starts the fleet (3 Consul servers, N Asterisk hosts, Kamailio, SIPp in network
namespaces of their own), runs the scenarios in order, prints the table and writes
bench/results/fleet-<timestamp>.json; then stops everything (with --hold: after Ctrl-C or
`make fleet-stop`, leaving the fleet up to look at in between). A failed scenario is
reported, the next one runs on a repaired fleet, and the command exits 1.
stop: ends a running `make fleet` of this cache and removes whatever a killed run left
(namespaces, bridge, processes in them), then shows that nothing is left.
"""

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from integration_tests.testbed import paths, runtime
from integration_tests.testbed.asterisk import sweep_stale

from . import net, profile, report
from .fleet import Fleet
from .host import MODULE_OPTIONS
from .scenarios import SCENARIOS


def log(msg):
    print(f"[fleet] {msg}", flush=True)


def run(args):
    only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else list(
        SCENARIOS)
    unknown = [k for k in only if k not in SCENARIOS]
    if unknown:
        log(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
        return 2
    runtime.install_handlers()
    stack = profile.current()
    meta = {"hosts": args.hosts, "profile": stack.label, "asterisk": stack.asterisk,
            "sip_check": stack.sip_check, "rate": args.rate, "hold_ms": args.hold_ms,
            "check_interval": MODULE_OPTIONS["check_interval"],
            "resync_interval": MODULE_OPTIONS["resync_interval"],
            "started": time.strftime("%F %T"), "machine": platform.node(),
            "cpus": os.cpu_count(), "commit": _commit()}
    fleet = Fleet(hosts=args.hosts, kind="live", rate=args.rate, hold_ms=args.hold_ms, log=log,
                  profile=stack)
    results = []
    began = time.monotonic()
    try:
        fleet.start()
        meta["fleet_start_seconds"] = round(time.monotonic() - began, 1)
        for key in only:
            function, kwargs = SCENARIOS[key]
            log(f"scenario {key}: {function.__doc__.strip().splitlines()[0]}")
            t0 = time.monotonic()
            try:
                result = function(fleet, **kwargs).as_json()
            except Exception as exc:  # noqa: BLE001 - report it, repair, go on
                traceback.print_exc()
                result = {"scenario": key, "title": function.__name__, "attempted": None,
                          "failed": None, "seconds": None, "measures": "-",
                          "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            result["wall_seconds"] = round(time.monotonic() - t0, 1)
            results.append(result)
            log(f"scenario {key}: attempted {result['attempted']}, failed {result['failed']}, "
                f"seconds {result['seconds']} ({result['measures']}) "
                f"details {result.get('details')}")
            fleet.ensure_steady()
        meta["total_seconds"] = round(time.monotonic() - began, 1)
        path = report.write_json(results, meta)
        print()
        print(report.table(results, meta))
        print(f"\nJSON: {path}\ntotal {meta['total_seconds']} s")
        if args.hold:
            log("the fleet stays up: Ctrl-C or `make fleet-stop` ends it. Look at it with\n"
                f"  LD_LIBRARY_PATH={paths.fleet_library_path()} {paths.kamcmd_binary()} "
                f"-s unix:{fleet.proxy.ctl} dispatcher.list\n"
                f"  curl http://{fleet.cluster.servers[0].ns.address}:8500"
                "/v1/health/service/Asterisk")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        fleet.stop()
        log("fleet stopped")
    return 1 if any(r.get("error") for r in results) or len(results) < len(only) else 0


def _commit():
    try:
        return subprocess.run(["git", "-C", str(paths.repo_root()), "rev-parse", "--short",
                               "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def stop(_args):
    """End live runs of this cache, sweep what dead runs left, show what is left."""
    cache = os.environ.get("ASTERISK_CONSUL_CACHE", "")
    for path, state in net.recorded_runs():
        owner = int(state.get("owner", 0))
        if state.get("kind") == "live" and state.get("cache", "") == cache and owner:
            try:
                os.kill(owner, signal.SIGTERM)
            except ProcessLookupError:
                log(f"the fleet run {state['prefix']} died (pid {owner}): removing what it left")
                continue
            log(f"stopping the fleet run {state['prefix']} (pid {owner})")
            deadline = time.monotonic() + 60
            while path.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            if path.exists():
                log(f"pid {owner} did not finish in 60 s: killing it")
                os.kill(owner, signal.SIGKILL)
    time.sleep(0.5)
    net.sweep_abandoned()
    sweep_stale(Path("/tmp"))  # Asterisk instance dirs of runs that were killed
    sweep_stale(paths.sid_root() / "tmp")
    left_ns = [n for n in net.ip("netns", "list", check=False).split()
               if n.startswith(net.NAME_PREFIX)]
    left_links = [line.split(":")[1].strip().split("@")[0] for line in
                  net.ip("-o", "link", check=False).splitlines()
                  if line.split(":")[1].strip().startswith(net.NAME_PREFIX)]
    mine = [state["prefix"] for _p, state in net.recorded_runs()
            if state.get("cache", "") == cache]
    log(f"namespaces {net.NAME_PREFIX}*: {left_ns or 'none'}; links: {left_links or 'none'}; "
        f"runs of this cache still recorded: {mine or 'none'}")
    return 1 if mine else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m integration_tests.fleet",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "stop"))
    parser.add_argument("--hosts", type=int, default=int(os.environ.get("FLEET_HOSTS", 3)),
                        help="Asterisk hosts (3; FLEET_HOSTS)")
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--rate", type=float, default=10.0, help="calls per second (10)")
    parser.add_argument("--hold-ms", type=int, default=2000, help="call length in ms (2000)")
    parser.add_argument("--hold", action="store_true",
                        help="keep the fleet up after the table until Ctrl-C or fleet-stop")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else stop(args)


if __name__ == "__main__":
    sys.exit(main())
