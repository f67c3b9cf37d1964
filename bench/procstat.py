"""What a process costs the machine while it waits: CPU time and context switches, from /proc.

    before = sample(pid)
    time.sleep(300)
    after = sample(pid)
    cost(before, after)     # CPU as % of one core, wakeups per second, the same per thread name

CPU comes from /proc/<pid>/stat (utime + stime: every thread, the ended ones too, in clock
ticks) and, finer, from each thread's /proc/<pid>/task/<tid>/schedstat (ns on the CPU).
Context switches are per thread (/proc/<pid>/task/<tid>/status): the sum covers the threads
alive at both samples; a thread that started and ended in between (an HTTP session of
Asterisk's) is in the CPU time but not in the switches.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class TaskSample:
    comm: str
    cpu_ns: int      # schedstat: time on the CPU
    voluntary: int   # switches because the thread waited (a sleep, a lock, a read)
    involuntary: int  # switches because the scheduler took the CPU away


@dataclass
class ProcessSample:
    at: float          # time.monotonic() of the sample
    cpu_ticks: int     # utime + stime of the whole process, ended threads included
    tasks: Dict[int, TaskSample] = field(default_factory=dict)


def parse_stat_ticks(text: str) -> int:
    """utime + stime from a /proc/<pid>/stat line. The command name, in parentheses, may hold
    spaces and parentheses itself: fields are counted after the last ')'."""
    rest = text.rpartition(")")[2].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[11]) + int(rest[12])


def parse_switches(status_text: str) -> Tuple[int, int]:
    """(voluntary, involuntary) context switches from a /proc/.../status text."""
    values = {}
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            values[key] = int(value.split()[0])
    return values.get("voluntary_ctxt_switches", 0), values.get("nonvoluntary_ctxt_switches", 0)


def _task(task_dir: Path) -> Optional[TaskSample]:
    try:
        comm = (task_dir / "comm").read_text().strip()
        cpu_ns = int((task_dir / "schedstat").read_text().split()[0])
        voluntary, involuntary = parse_switches((task_dir / "status").read_text())
    except (OSError, ValueError, IndexError):
        return None  # the thread ended while we looked
    return TaskSample(comm, cpu_ns, voluntary, involuntary)


def sample(pid: int) -> ProcessSample:
    at = time.monotonic()
    with open("/proc/%d/stat" % pid) as fh:
        ticks = parse_stat_ticks(fh.read())
    tasks = {}
    for task_dir in Path("/proc/%d/task" % pid).iterdir():
        task = _task(task_dir)
        if task is not None:
            tasks[int(task_dir.name)] = task
    return ProcessSample(at, ticks, tasks)


def _per_second(value: float, seconds: float) -> float:
    return value / seconds if seconds > 0 else 0.0


def cost(before: ProcessSample, after: ProcessSample,
         ticks_per_s: int = CLOCK_TICKS) -> Dict[str, object]:
    """The process's cost between two samples: CPU as % of one core (from ticks, and from
    schedstat for the threads alive at both), switches per second, and the same by thread
    name (threads of one name summed; 'count' is how many there were)."""
    seconds = after.at - before.at
    cpu_s = (after.cpu_ticks - before.cpu_ticks) / float(ticks_per_s)
    by_name: Dict[str, Dict[str, float]] = {}
    total_ns = total_vol = total_invol = 0
    for tid, late in after.tasks.items():
        early = before.tasks.get(tid)
        if early is None:
            continue  # started during the window: its share is in the ticks only
        d_ns = late.cpu_ns - early.cpu_ns
        d_vol = late.voluntary - early.voluntary
        d_invol = late.involuntary - early.involuntary
        total_ns += d_ns
        total_vol += d_vol
        total_invol += d_invol
        entry = by_name.setdefault(late.comm, {"count": 0, "cpu_ns": 0, "switches": 0})
        entry["count"] += 1
        entry["cpu_ns"] += d_ns
        entry["switches"] += d_vol + d_invol
    threads = {name: {"count": int(e["count"]),
                      "cpu_pct": 100.0 * _per_second(e["cpu_ns"] / 1e9, seconds),
                      "switches_per_s": _per_second(e["switches"], seconds)}
               for name, e in by_name.items()}
    return {
        "seconds": seconds,
        "cpu_s": cpu_s,
        "cpu_pct": 100.0 * _per_second(cpu_s, seconds),
        "cpu_pct_schedstat": 100.0 * _per_second(total_ns / 1e9, seconds),
        "voluntary_per_s": _per_second(total_vol, seconds),
        "involuntary_per_s": _per_second(total_invol, seconds),
        "switches_per_s": _per_second(total_vol + total_invol, seconds),
        "threads": threads,
        "thread_count": len(after.tasks),
    }


def extra(with_module: Dict[str, object], baseline: Dict[str, object]) -> Dict[str, float]:
    """What the module adds: with-module minus baseline, for the process-wide figures."""
    keys = ("cpu_pct", "cpu_pct_schedstat", "switches_per_s", "voluntary_per_s",
            "involuntary_per_s")
    return {key: float(with_module[key]) - float(baseline[key]) for key in keys}
