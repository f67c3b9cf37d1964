"""`make chaos`: a seeded fault storm on the fleet, its invariants checked over the whole run.

    python -m integration_tests.fleet.chaos --seed 7 --minutes 3 [--hosts 3]

SIPp places calls through Kamailio for the whole run (UDP and TCP) while a schedule drawn
from the seed injects faults, overlapping: kill -9 of an Asterisk and its restart, `core
restart gracefully`, drain on/off, maintenance on/off, `module unload`/`load` and `module
reload` of this module, a client agent restarted with and without its data dir, a Consul
follower and the leader killed and restarted, a box's link to the Consul cluster cut and
healed (FIB rules inside its namespace prohibit Consul's ports 8300-8302: SIP still flows),
its SIP stack taken away and back (`module unload`/`load` of the SIP channel driver). Each
fault is logged with its times (faults.log in the run's directory, and on stdout).

The schedule depends on the seed, the minutes and the number of hosts only (schedule()), so
the same seed gives the same schedule. It never takes more than hosts - 1 boxes out at once
(calls need somewhere to go), never touches a box twice at once, never takes down more
than one Consul server at once (quorum), and never restarts the last box's Asterisk (one
process lives through the storm, for the threads-and-memory invariant).

Invariants (invariants.py), checked after the run from SIPp's call log, Kamailio's dispatch
log, the boxes' call logs, Consul's catalog and Consul DNS (check_invariants()):
  wrong-box     no call answered by a box other than the registration Kamailio routed it as
  out-routing   no new call routed to a box more than its kind's bound (OUT_BOUND_S) after it
                was drained, maintained, killed, deregistered, its agent stopped, its link cut,
                (with sip_check) its SIP stack taken away; plus the leader election's seconds
                when a leader kill overlaps (nothing reaches the catalog without a leader)
  failures      no call failed except one routed to a box killed or whose SIP stack was taken
                away while the call was set up or held
  back          every box back in rotation (passing in the catalog and routed) within its
                kind's bound (BACK_BOUND_S) after its fault ended
  dns           no answer of Consul DNS (the proxy agent's, only_passing, TTL 0) lists a box
                the healthy set (the catalog's passing instances) dropped more than 2 s before
                (one poll, and a follower's lag: DNS reads any server), once a second
  end-state     at the end every box registered once (no duplicate, no orphan) and passing,
                its KV key held; the module's lasting threads (LASTING_THREADS) the same
                on each box as at the start; a process that lived through the storm grew
                by at most THREAD_GROWTH threads (idle to idle) and RSS_GROWTH_KB (from the
                warm-up minute's end)
A violation prints the seed, the faults around it and the calls involved.
"""

import argparse
import concurrent.futures
import json
import os
import random
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Optional

from integration_tests.resilience import (NATIVE_NURSERY_NAME, NATIVE_PULSE_NAME,
                                          NATIVE_WATCH_NAME, NATIVE_WORKER_NAME)
from integration_tests.testbed import runtime

from . import profile as profiles
from .dnswatch import DnsWatch
from .fleet import Fleet
from .invariants import BACK_BOUND_S, OUT_BOUND_S, check_invariants, explain, table
from .measure import routed

# kind -> (weight in the draw, target: "box" / "server", takes the box out of rotation)
KINDS = {
    "kill9": (3, "box", True),
    "graceful": (2, "box", True),
    "drain": (3, "box", True),
    "maintenance": (3, "box", True),
    "module_cycle": (2, "box", True),
    "module_reload": (2, "box", False),
    "agent_restart": (2, "box", True),
    "agent_wipe": (1, "box", True),
    "cut": (2, "box", True),
    "sip_away": (2, "box", True),
    "follower": (1, "server", False),
    "leader": (1, "server", False),
}
# Faults whose end is not timed: the box comes back by itself (a graceful restart ends when
# Asterisk is up again); a module reload is one command.
UNTIMED = {"graceful", "module_reload"}
# The last box's Asterisk (the heaviest weight: the most calls, so its own warm-up is over
# first) is never restarted: one process lives through the whole storm, its threads and
# memory compared before and after (every other fault still hits it).
RESTARTS = {"kill9", "graceful"}


def long_lived(hosts):
    return f"ast{hosts}"


HOLD_S = (3.0, 10.0)        # how long a fault lasts (drawn)
# A cut lasts past its out-of-rotation bound, or that bound would never be checked.
HOLD_S_OF = {"cut": (OUT_BOUND_S["cut"] + 5.0, OUT_BOUND_S["cut"] + 15.0)}
WARM_UP_S = 60.0            # calls before the first fault and the memory baseline
SERIES_S = 10.0             # how often each Asterisk's memory and threads are sampled
GAP_MEAN_S = 5.0            # mean gap between fault starts (exponential)
SETTLE_S = 20.0             # what the schedule leaves a box after a fault before the next
CONSUL_PORTS = "8300-8302"
# The test bed's children die with the thread that started them (PR_SET_PDEATHSIG follows the
# parent thread): whatever a fault starts again (Asterisk, an agent, a server) is started by
# these threads, which live as long as the process.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="chaos-spawn")


def _spawned(function, *args):
    return _SPAWNER.submit(function, *args).result()


# The module's threads that last while it is loaded (worker, watch, pulse, nursery; threads.py
# names them on every Python). A call's deadline timer and DNS lookup live for one call, and a
# thread past its last line is "consul-ended": counting those made a look at rest see 4 or 6
# about once in a hundred (the 30-minute storm's series).
LASTING_THREADS = (NATIVE_WORKER_NAME, NATIVE_WATCH_NAME, NATIVE_PULSE_NAME, NATIVE_NURSERY_NAME)
SETTLED_LOOKS = 9           # looks at a process, 0.2 s apart, to find its settled thread count


class ProcessSample(NamedTuple):
    """One look at a host's Asterisk process (/proc)."""
    time: float
    threads: int
    rss_kb: int
    module_names: tuple     # sorted names of the module's lasting threads

    @property
    def module_threads(self) -> int:
        return len(self.module_names)


@dataclass
class Fault:
    number: int
    at: float               # seconds after the storm began
    kind: str
    target: str             # ast1.. / "server"
    hold: float             # seconds between its start and its end
    # filled in by the run (epoch seconds)
    began: Optional[float] = None
    in_effect: Optional[float] = None   # when its start completed (an agent has left ...)
    off_at: Optional[float] = None   # when the fault's end began (the box restarting ...)
    ended: Optional[float] = None
    back: Optional[float] = None
    server: Optional[str] = None
    note: str = ""
    error: str = ""

    def line(self):
        t = (lambda v: time.strftime("%H:%M:%S", time.localtime(v)) + f".{int(v % 1 * 1000):03d}"
             if v else "-")
        return (f"#{self.number:<3} +{self.at:6.1f}s {self.kind:<13} {self.target:<6} "
                f"hold {self.hold:4.1f}s began {t(self.began)} ended {t(self.ended)} "
                f"back {t(self.back)} {self.server or ''} {self.note} {self.error}").rstrip()


def schedule(seed, minutes, hosts, sip_stack_faults=True):
    """The faults of a storm: a pure function of its arguments."""
    rng = random.Random(f"asterisk-consul chaos {seed}")
    boxes = [f"ast{i + 1}" for i in range(hosts)]
    busy_until = {b: 0.0 for b in boxes}
    server_busy_until = 0.0
    out_windows = []        # (from, to) of faults that take a box out
    kinds = [k for k in KINDS if sip_stack_faults or k != "sip_away"]
    weights = [KINDS[k][0] for k in kinds]
    faults = []
    at = 10.0               # calls flowing first
    end = minutes * 60.0 - 30.0   # the last faults end and their boxes come back
    while True:
        at += rng.expovariate(1.0 / GAP_MEAN_S)
        if at >= end:
            break
        kind = rng.choices(kinds, weights)[0]
        hold = round(rng.uniform(*HOLD_S_OF.get(kind, HOLD_S)), 1)
        _weight, target_type, takes_out = KINDS[kind]
        if target_type == "server":
            if at < server_busy_until:
                continue
            server_busy_until = at + hold + SETTLE_S
            faults.append(Fault(len(faults) + 1, round(at, 1), kind, "server", hold))
            continue
        free = [b for b in boxes if busy_until[b] <= at
                and not (kind in RESTARTS and b == long_lived(hosts) and hosts > 1)]
        if takes_out:
            out_now = len([w for w in out_windows if w[0] <= at < w[1]])
            if out_now >= hosts - 1:
                continue
        if not free:
            continue
        box = rng.choice(free)
        until = at + hold + BACK_BOUND_S[kind]
        busy_until[box] = at + hold + max(SETTLE_S, BACK_BOUND_S[kind])
        if takes_out:
            out_windows.append((at, until))
        faults.append(Fault(len(faults) + 1, round(at, 1), kind, box, hold))
    return faults


# -- injecting ---------------------------------------------------------------------------------
class Storm:
    def __init__(self, fleet, seed, minutes, log=print):
        self.fleet = fleet
        self.seed = seed
        self.minutes = minutes
        self.log = log
        self.faults = schedule(seed, minutes, len(fleet.hosts))
        self.dir = fleet.dir / f"chaos-{seed}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.faults_log = self.dir / "faults.log"
        self.began = None
        self.samples = {}   # where -> {(host, pid, restarts): ProcessSample}
        # Restarts per host: `core restart gracefully` execs in place (the pid stays), and
        # a new image's memory is no growth of the old one's.
        self.restarts = {}
        # "host/pid/restarts" -> [(seconds into the storm, rss kB, threads, module threads)]
        self.series = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def record(self, fault, what):
        line = f"{time.strftime('%H:%M:%S')} {what}: {fault.line()}"
        with self._lock:
            with open(self.faults_log, "a") as fh:
                fh.write(line + "\n")
        self.log(line)

    # each fault: on, hold, off, then wait until the box is back (measured, bounded)
    def _run_fault(self, fault):
        delay = self.began + fault.at - time.time()
        if delay > 0 and self._stop.wait(delay):
            return
        try:
            if fault.target == "server":
                self._server_fault(fault)
            else:
                self._box_fault(fault, self.fleet.host(fault.target))
        except Exception as exc:  # noqa: BLE001 - recorded, reported as a violation
            fault.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.record(fault, "error")
            traceback.print_exc()

    def _server_fault(self, fault):
        cluster = self.fleet.cluster
        leader = cluster.leader()
        if fault.kind == "leader":
            server = leader
        else:
            server = next((s for s in cluster.servers if s is not leader and s.is_running()),
                          None)
        if server is None:
            fault.note = "no such server now (election under way): skipped"
            self.record(fault, "skip")
            return
        fault.server = server.node
        fault.began = time.time()
        server.kill()
        self.record(fault, "on")
        if fault.kind == "leader":
            cluster.wait_leader(30, other_than=server)
            fault.note = f"new leader after {time.time() - fault.began:.2f}s"
        self._stop.wait(max(0.0, fault.began + fault.hold - time.time()))
        _spawned(server.launch)
        fault.ended = time.time()
        self.record(fault, "off")
        fault.back = runtime.wait_until(
            lambda: cluster.leader() is not None
            and cluster.members().get(server.node) == "alive" and time.time(),
            timeout=60, interval=0.2, what=f"{server.node} back in the cluster")
        self.record(fault, "back")

    def _box_fault(self, fault, host):
        fault.began = time.time()
        getattr(self, "_on_" + fault.kind)(host, fault)
        fault.in_effect = time.time()
        self.record(fault, "on")
        if fault.kind not in UNTIMED:
            self._stop.wait(max(0.0, fault.began + fault.hold - time.time()))
        fault.off_at = time.time()
        getattr(self, "_off_" + fault.kind, lambda h, f: None)(host, fault)
        fault.ended = time.time()
        self.record(fault, "off")
        bound = BACK_BOUND_S[fault.kind]
        deadline = time.monotonic() + bound + 60.0   # measured past the bound, then judged
        while time.monotonic() < deadline:
            try:
                if host.is_running() and self.fleet.status(host) == "passing" \
                        and routed(self.fleet, host):
                    fault.back = time.time()
                    break
            except Exception:  # noqa: BLE001 - no leader, agent restarting: ask again
                pass
            time.sleep(0.1)
        self.record(fault, "back")

    def _restarted(self, host):
        with self._lock:
            self.restarts[host.name] = self.restarts.get(host.name, 0) + 1

    def _on_kill9(self, host, fault):
        self._restarted(host)
        host.kill_asterisk()

    def _off_kill9(self, host, fault):
        _spawned(host.asterisk.start)

    def _on_graceful(self, host, fault):
        fault.log_from = host.asterisk.log_offset()
        self._restarted(host)
        host.restart_gracefully()

    def _off_graceful(self, host, fault):
        # Asterisk restarts in place once its calls ended: until it is ready again.
        host.asterisk.wait_log(r"Asterisk Ready", timeout=60, since=fault.log_from)
        host.asterisk._wait_booted(60)

    def _on_drain(self, host, fault):
        host.set_drain(True, "chaos")

    def _off_drain(self, host, fault):
        host.set_drain(False, "chaos")

    def _on_maintenance(self, host, fault):
        host.set_maintenance(True, "chaos")

    def _off_maintenance(self, host, fault):
        host.set_maintenance(False, "chaos")

    def _on_module_cycle(self, host, fault):
        host.asterisk.rx("module unload res_discovery_consul.so")

    def _off_module_cycle(self, host, fault):
        host.asterisk.rx("module load res_discovery_consul.so")

    def _on_module_reload(self, host, fault):
        host.asterisk.rx("module reload res_discovery_consul.so")

    def _on_agent_restart(self, host, fault):
        host.agent.stop()

    def _off_agent_restart(self, host, fault):
        _spawned(host.agent.start)

    def _on_agent_wipe(self, host, fault):
        host.agent.stop()
        host.agent.wipe_data()

    _off_agent_wipe = _off_agent_restart

    def _cut_rules(self, host, verb):
        for selector in ("dport", "sport"):
            runtime_ip(host, "rule", verb, selector, CONSUL_PORTS, "prohibit")

    def _on_cut(self, host, fault):
        self._cut_rules(host, "add")

    def _off_cut(self, host, fault):
        self._cut_rules(host, "del")

    def _on_sip_away(self, host, fault):
        """`module unload` of the SIP channel driver. Asterisk 22's chan_pjsip keeps a use
        count far above its live channels once it has taken calls (hundreds after a few
        hundred calls, seen with 22.10), so the unload is refused for the life of the process:
        then the SIP port is taken away instead (FIB rules in the box's namespace prohibit
        port 5060 both ways, its own traffic included: the local table is looked up after
        them), which is what a dead SIP stack looks like from outside and to sip_check."""
        out = host.sip_stack_away()
        if not host.sip_stack_loaded():
            fault.note = f"{host.sip_driver} unloaded"
            return
        fault.note = f"{host.sip_driver} refused ({_use_count(out)}): SIP port prohibited"
        fault.port_rules = True
        rules = runtime_ip(host, "rule", "show")
        if not re.search(r"^100:", rules, re.M):     # the first time on this box only
            runtime_ip(host, "rule", "add", "pref", "100", "lookup", "local")
        if re.search(r"^0:", rules, re.M):
            runtime_ip(host, "rule", "del", "pref", "0")
        for pref, selector in (("10", "dport"), ("11", "sport")):
            runtime_ip(host, "rule", "add", "pref", pref, selector, "5060", "prohibit")

    def _off_sip_away(self, host, fault):
        if getattr(fault, "port_rules", False):
            for pref in ("10", "11"):
                runtime_ip(host, "rule", "del", "pref", pref)
        else:
            host.sip_stack_back()

    def _process(self, host):
        """((host, pid, restarts), ProcessSample) of the host's Asterisk now, or None."""
        for _attempt in range(5):    # a thread may end between listing and reading it
            try:
                pid = host.asterisk.pid
                status = Path(f"/proc/{pid}/status").read_text()
                names = [Path(t, "comm").read_text().strip()
                         for t in Path(f"/proc/{pid}/task").iterdir()]
                break
            except (OSError, AttributeError, TypeError):
                time.sleep(0.05)
        else:
            return None
        threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
        rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
        module = tuple(sorted(n for n in names if n in LASTING_THREADS))
        return ((host.name, pid, self.restarts.get(host.name, 0)),
                ProcessSample(time.time(), threads, rss, module))

    def _sample(self, host, where):
        """The settled look at the host's process: of SETTLED_LOOKS, one with the module
        thread count seen most often (a leaked thread is in every look; a passing one is not)."""
        looks = []
        for look in range(SETTLED_LOOKS):
            if look:
                time.sleep(0.2)
            seen = self._process(host)
            if seen is not None:
                looks.append(seen)
        if looks:
            counts = [s.module_threads for _, s in looks]
            settled = max(sorted(set(counts)), key=counts.count)
            key, sample = next(look for look in looks if look[1].module_threads == settled)
            self.samples.setdefault(where, {})[key] = sample

    def _sample_series(self):
        """Every SERIES_S during the storm: each process's RSS and threads (verdict.json)."""
        while not self._stop.wait(SERIES_S):
            for host in self.fleet.hosts:
                seen = self._process(host)
                if seen is not None:
                    key, s = seen
                    self.series.setdefault("/".join(map(str, key)), []).append(
                        (round(s.time - self.began), s.rss_kb, s.threads, s.module_threads))

    def run(self):
        self.log(f"chaos seed {self.seed}, {self.minutes} min, {len(self.faults)} faults: "
                 + ", ".join(f"{k} {n}" for k, n in sorted(self.kind_counts().items())))
        run = self.fleet.calls(f"chaos-{self.seed}",
                               max_seconds=WARM_UP_S + self.minutes * 60 + 30)
        for host in self.fleet.hosts:
            self._sample(host, "idle before")
        self.dns = DnsWatch(self.fleet).start()
        run.start()
        # Calls only, first: Asterisk 22 + PJSIP grows by ~30 MB over its first calls with or
        # without this module (pools and caches; docs/kamailio.md), before the RSS baseline.
        self._stop.wait(WARM_UP_S)
        for host in self.fleet.hosts:
            self._sample(host, "warm")
        self.began = time.time()
        threads = [threading.Thread(target=self._run_fault, args=(f,), daemon=True)
                   for f in self.faults]
        for t in threads:
            t.start()
        threading.Thread(target=self._sample_series, name="chaos-series", daemon=True).start()
        try:
            self._stop.wait(self.minutes * 60.0)    # the storm's length
            for t in threads:
                t.join(timeout=120.0)
        finally:
            self._stop.set()
            run.stop()
            self.dns.stop()
        self.ended = time.time()
        return run

    def sample_idle_end(self):
        """After the calls ended and the fleet is steady: each Asterisk's threads and memory."""
        for host in self.fleet.hosts:
            self._sample(host, "idle after")

    def kind_counts(self):
        counts = {}
        for f in self.faults:
            counts[f.kind] = counts.get(f.kind, 0) + 1
        return counts


def _use_count(cli_output):
    m = re.search(r"use count (\d+)", cli_output)
    return f"use count {m.group(1)}" if m else cli_output.strip().splitlines()[-1:]


def runtime_ip(host, *args):
    from .net import ip
    return ip("-n", host.ns.name, *args)


def run_storm(seed, minutes, hosts=3, log=print, fleet=None, rate=10.0, artifacts_dir=None):
    own = fleet is None
    if own:
        fleet = Fleet(hosts=hosts, kind="live", rate=rate, log=log,
                      artifacts_dir=artifacts_dir).start()
    try:
        storm = Storm(fleet, seed, minutes, log=log)
        run = storm.run()
        fleet.wait_steady(90)
        storm.sample_idle_end()
        verdict = check_invariants(storm, run, fleet.hold_ms)
        (storm.dir / "verdict.json").write_text(json.dumps(
            {"figures": verdict.figures, "violations": [asdict(v) for v in verdict.violations],
             "faults": [asdict(f) for f in storm.faults], "series": storm.series},
            indent=2, default=str))
        return storm, verdict
    finally:
        if own:
            fleet.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m integration_tests.fleet.chaos",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or 1))
    parser.add_argument("--minutes", type=float,
                        default=float(os.environ.get("CHAOS_MINUTES") or 3))
    parser.add_argument("--hosts", type=int, default=int(os.environ.get("FLEET_HOSTS", 3)))
    parser.add_argument("--artifacts", help="keep the fleet's files (logs, configs) here")
    parser.add_argument("--schedule-only", action="store_true",
                        help="print the seed's schedule and exit")
    args = parser.parse_args(argv)
    if args.schedule_only:
        for f in schedule(args.seed, args.minutes, args.hosts):
            print(f.line())
        return 0
    runtime.install_handlers()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log = lambda msg: print(f"[chaos] {msg}", flush=True)  # noqa: E731
    log(f"{profiles.current().label}")
    storm, verdict = run_storm(args.seed, args.minutes, args.hosts, log=log,
                               artifacts_dir=args.artifacts)
    print()
    for violation in verdict.violations:
        print(explain(storm, violation))
    print(table(verdict))
    print(f"faults log: {storm.faults_log} "
          + (f"(kept in {args.artifacts})" if args.artifacts else "(removed with the fleet)"))
    return 1 if verdict.violations else 0


if __name__ == "__main__":
    sys.exit(main())
