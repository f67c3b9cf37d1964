"""Where Asterisk's time goes while it serves each endpoint (`python -m bench --profile`).

With wrk loading one endpoint (same setup as the HTTP phase), for a few seconds:
    perf record -e cpu-clock -g -p <asterisk>   (where perf works): samples per shared object
                                                 and top symbols, per request
    py-spy record -p <asterisk> --format raw     (py-spy from bench/requirements.txt): the
                                                 Python lines of the check endpoint
Outputs go to bench/results/profile-<time>/; the summary is returned for the JSON.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Optional

from integration_tests.testbed import paths

from . import http
from .harness import Bed, ModuleControl, log
from .report import RESULTS_DIR


def _perf_works() -> bool:
    if shutil.which("perf") is None:
        return False
    proc = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
                          capture_output=True, text=True)
    return proc.returncode == 0


def _perf_summary(data: Path, requests: int, out: Path) -> Dict[str, object]:
    by_dso = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-n", "--no-children",
                             "--sort", "dso", "-g", "none"], capture_output=True, text=True).stdout
    by_sym = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-n", "--no-children",
                             "--sort", "dso,sym", "-g", "none"], capture_output=True, text=True).stdout
    out.write_text(by_dso + "\n\n" + by_sym)
    freq = 1999.0
    dsos = {}
    for m in re.finditer(r"^\s+([\d.]+)%\s+(\d+)\s+(\S+)\s*$", by_dso, re.M):
        samples = int(m.group(2))
        dsos[m.group(3)] = {"percent": float(m.group(1)),
                            "us_per_request": samples / freq * 1e6 / max(1, requests)}
    return {"by_dso": dsos, "report": str(out)}


def _pyspy_summary(raw: Path, out: Path) -> Dict[str, object]:
    """Self time per Python function (the leaf frame) of the samples taken in Python."""
    leaves: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if "Registrar._run" in stack or "Condition.wait" in stack:
            continue  # the registrar's idle worker
        total += int(count)
        leaves[stack.split(";")[-1]] += int(count)
    lines = ["%6d  %5.1f%%  %s" % (n, 100.0 * n / max(1, total), frame)
             for frame, n in leaves.most_common(30)]
    out.write_text("\n".join(lines) + "\n")
    return {"python_samples": total, "top": lines[:10], "report": str(out)}


def _profile_one(ast, name: str, url: str, seconds: float, outdir: Path, perf: bool,
                 spy: Optional[Path]) -> Dict[str, object]:
    wrk = subprocess.Popen((["taskset", "-c", "1"] if http.can_pin() else [])
                           + http.wrk_command() + ["-t1", "-c8", "-d%ds" % round(seconds + 2),
                                                   "--latency", url],
                           env=http.wrk_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    time.sleep(1.0)
    result: Dict[str, object] = {}
    data = outdir / ("perf-%s.data" % name)
    if perf:
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-g", "-p",
                        str(ast.pid), "-o", str(data), "--", "sleep", str(seconds / 2)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if spy is not None and name == "check":
        raw = outdir / "pyspy-check.txt"
        subprocess.run([str(spy), "record", "-p", str(ast.pid), "-d", str(max(1, int(seconds / 2))),
                        "-r", "250", "-f", "raw", "-o", str(raw)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if raw.exists():
            result["py_spy"] = _pyspy_summary(raw, outdir / "pyspy-check-top.txt")
    output, _ = wrk.communicate(timeout=seconds + 60)
    figures = http.parse_wrk(output)
    result["wrk"] = figures
    if perf and data.exists():
        requests = int(figures["rps"] * seconds / 2)
        result["perf"] = _perf_summary(data, requests, outdir / ("perf-%s.txt" % name))
    return result


def run(bed: Bed, seconds: float = 6.0) -> Dict[str, object]:
    outdir = RESULTS_DIR / ("profile-%s" % time.strftime("%Y%m%d-%H%M%S"))
    outdir.mkdir(parents=True, exist_ok=True)
    perf = _perf_works()
    spy = paths.host_venv() / "bin" / "py-spy"
    spy = spy if spy.exists() else None
    log("profile: perf %s, py-spy %s; outputs in %s" % (
        "yes" if perf else "no", "yes" if spy else "no", outdir))
    ast = bed.asterisk(target="up")
    ctl = ModuleControl(ast)
    try:
        ctl.load()
        time.sleep(0.5)
        if http.can_pin():
            http.pin(ast.pid, 0)
        out = {"dir": str(outdir)}
        bed.consul.wait_service(ast.eid)
        instance = bed.consul.services()[ast.eid]["Meta"]["instance"]
        for name, url in (("native", http.native_url(ast)),
                          ("check", http.check_url(ast, ast.eid, instance))):
            out[name] = _profile_one(ast, name, url, seconds, outdir, perf, spy)
        return out
    finally:
        ctl.close()
        bed.discard(ast)
