"""The EID check endpoint against Asterisk's own /httpstatus, on the same Asterisk, with the same
client: wrk (Debian's, from the test bed cache), 8 keep-alive connections, one wrk thread,
alternated A B A B over several rounds so that a change in the machine's load hits both.

With taskset and two or more CPUs, Asterisk (every thread, and so every HTTP session thread it
starts later) is pinned to CPU 0 and wrk to CPU 1, as in shared/reference/embedding.md.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import time
from typing import Dict, List, Optional

import requests

from integration_tests.testbed import paths

from .harness import Bed, ModuleControl, log

CONNECTIONS = 8
THREADS = 1

# The figures compared (medians per endpoint, and per-round ratios check/native).
KEYS = ("rps", "p50_us", "p99_us", "server_cpu_us_per_req", "server_cs_per_req")

_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1000000.0}


class WrkUnavailable(RuntimeError):
    pass


def wrk_command() -> List[str]:
    wrk = paths.wrk_binary()
    if not wrk.exists():
        raise WrkUnavailable("%s not found: run `make -C integration_tests test-setup "
                             "ONLY=consul,ast16,venv,bench` (or `make bench`)" % wrk)
    return [str(wrk)]


def wrk_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = paths.bench_library_path()
    return env


def _duration_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError("not a wrk duration: %r" % text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> Dict[str, object]:
    """The figures of `wrk --latency` output: req/s, p50/p75/p90/p99 in µs, requests, errors."""
    result: Dict[str, object] = {}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not m:
        raise ValueError("no Requests/sec in wrk output:\n" + output)
    result["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, output, re.M)
        if m:
            result["p%s_us" % pct] = _duration_us(m.group(1))
    m = re.search(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s)", output, re.M)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(m.group(1)) if m else 0
    return result


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pin(pid: int, cpu: int) -> None:
    """All threads of pid onto one CPU (threads started later inherit it)."""
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (all its threads, dead ones included)."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _perf_stat(pid: int) -> Optional[subprocess.Popen]:
    """`perf stat -e context-switches` on pid until SIGINT, if perf works here."""
    if shutil.which("perf") is None:
        return None
    try:
        return subprocess.Popen(["perf", "stat", "-x,", "-e", "context-switches", "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except OSError:
        return None


def _perf_stat_result(proc: Optional[subprocess.Popen]) -> Optional[int]:
    if proc is None:
        return None
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    m = re.search(r"^(\d+),[^,]*,context-switches", err or "", re.M)
    return int(m.group(1)) if m else None


def run_wrk(url: str, seconds: float, cpu: Optional[int] = None,
            server_pid: Optional[int] = None) -> Dict[str, object]:
    """One wrk run; with server_pid, also the server's CPU time (and context switches, where
    perf works) per request: figures that the machine's other load disturbs far less than
    req/s do."""
    argv = wrk_command() + ["-t%d" % THREADS, "-c%d" % CONNECTIONS, "-d%ds" % max(1, round(seconds)),
                            "--timeout", "2s", "--latency", url]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    perf = _perf_stat(server_pid) if server_pid else None
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    busy, children, own = _machine_busy_seconds(), _children_seconds(), _self_seconds()
    began = time.monotonic()
    proc = subprocess.run(argv, env=wrk_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=seconds + 30)
    wall = time.monotonic() - began
    cpu_used = cpu_seconds(server_pid) - cpu_before if server_pid else None
    # What the rest of the machine (other processes: other test runs, Consul ...) took
    # meanwhile, in % of all CPUs: how far to trust this run.
    others = (_machine_busy_seconds() - busy) - (_children_seconds() - children) \
        - (_self_seconds() - own) - (cpu_used or 0.0)
    switches = _perf_stat_result(perf)
    if proc.returncode != 0:
        raise RuntimeError("wrk failed (%d):\n%s" % (proc.returncode, proc.stdout))
    figures = parse_wrk(proc.stdout)
    figures["others_cpu_pct"] = max(0.0, 100.0 * others / (wall * (os.cpu_count() or 1)))
    if server_pid and figures.get("requests"):
        figures["server_cpu_us_per_req"] = cpu_used * 1e6 / figures["requests"]
        if switches is not None:
            figures["server_cs_per_req"] = switches / figures["requests"]
    return figures


def check_url(ast, eid: str, instance: str) -> str:
    """Consul's poll, exactly as the module registered it (the shim replays its answer)."""
    return ast.http_url("/res_discovery_consul/check_eid?expected_eid=%s&instance=%s"
                        % (eid, instance))


def native_url(ast) -> str:
    return ast.http_url("/httpstatus")


def _sanity(ast, url: str) -> None:
    r = requests.get(url, timeout=5)
    if r.status_code != 200 or "EID match" not in r.text:
        raise RuntimeError("the check endpoint does not answer 200 'EID match': %d %r"
                           % (r.status_code, r.text[:200]))
    r = requests.get(native_url(ast), timeout=5)
    if r.status_code != 200:
        raise RuntimeError("/httpstatus answers %d" % r.status_code)


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def compare(bed: Bed, rounds: int = 4, seconds: float = 5.0, warmup: float = 2.0,
            ast=None) -> Dict[str, object]:
    """A B A B ... rounds of (native /httpstatus, check endpoint) on one Asterisk with the module
    loaded and registered; figures per run, medians per endpoint, and the per-round ratios
    check/native with their median (the figure judged)."""
    own = ast is None
    if own:
        ast = bed.asterisk(target="up")
    ctl = ModuleControl(ast)
    try:
        if not ctl.running():
            ctl.load()
        bed.consul.wait_service(ast.eid)
        instance = bed.consul.services()[ast.eid]["Meta"]["instance"]
        urls = {"native": native_url(ast), "check": check_url(ast, ast.eid, instance)}
        _sanity(ast, urls["check"])
        pinned = can_pin()
        wrk_cpu = None
        if pinned:
            pin(ast.pid, 0)
            wrk_cpu = 1
        log("HTTP: warming up (%s s each); Asterisk %s" % (
            warmup, "pinned to CPU 0, wrk to CPU 1" if pinned else "not pinned (no taskset or 1 CPU)"))
        for name in ("native", "check"):
            run_wrk(urls[name], warmup, wrk_cpu)
        runs: Dict[str, List[Dict[str, object]]] = {"native": [], "check": []}
        for r in range(rounds):
            for name in ("native", "check"):
                figures = run_wrk(urls[name], seconds, wrk_cpu, server_pid=ast.pid)
                figures["round"] = r + 1
                runs[name].append(figures)
                log("HTTP round %d/%d %-6s %9.0f req/s  p50 %6.0f us  p99 %6.0f us  "
                    "Asterisk CPU %5.1f us/req  others %4.1f%% CPU%s%s" % (
                    r + 1, rounds, name, figures["rps"], figures.get("p50_us", 0),
                    figures.get("p99_us", 0), figures.get("server_cpu_us_per_req", 0),
                    figures["others_cpu_pct"],
                    "  %.2f cs/req" % figures["server_cs_per_req"]
                    if "server_cs_per_req" in figures else "",
                    "  (%d non-2xx, %d socket errors)" % (figures["non_2xx"], figures["socket_errors"])
                    if figures["non_2xx"] or figures["socket_errors"] else ""))
        out: Dict[str, object] = {
            "tool": "wrk -t%d -c%d -d%ds --latency (keep-alive)" % (THREADS, CONNECTIONS, round(seconds)),
            "rounds": rounds, "seconds_per_run": seconds, "pinned": pinned,
            "urls": {"native": "/httpstatus",
                     "check": "/res_discovery_consul/check_eid?expected_eid=<EID>&instance=<token>"},
            "runs": runs,
        }
        for name in ("native", "check"):
            out[name] = {key: statistics.median(run[key] for run in runs[name])
                         for key in KEYS if all(key in run for run in runs[name])}
            out[name]["errors"] = sum(run["non_2xx"] + run["socket_errors"] for run in runs[name])
        out["others_cpu_pct_max"] = max(run["others_cpu_pct"] for name in runs for run in runs[name])
        ratios = {}
        for key in KEYS:
            per_round = [_ratio(c.get(key), n.get(key)) for n, c in zip(runs["native"], runs["check"])]
            per_round = [x for x in per_round if x is not None]
            if not per_round:
                continue
            ratios[key] = {"median": statistics.median(per_round) if per_round else None,
                           "per_round": per_round}
        out["ratios"] = ratios
        return out
    finally:
        ctl.close()
        if own:
            bed.discard(ast)
