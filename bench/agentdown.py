"""What an agent outage costs Asterisk: its CPU time with the module registered and the agent
up (at rest), then with the agent stopped, over the same window, for the three ways to talk
to the agent: http, https with ca_file, https with a ca_path of the system's certificates (the
test CA added to a copy of the directory, so that the agent is trusted while it is up).

While the agent is down the module retries (the watch and the registration, each with its
jittered, capped backoff): the figure to read is the down cost next to the rest cost.
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from pathlib import Path
from typing import Dict

from integration_tests.resilience import NATIVE_WATCH_NAME, NATIVE_WORKER_NAME
from integration_tests.testbed.consul import ConsulAgent

from . import procstat
from .harness import Bed, ModuleControl, log, module_running

SYSTEM_CERTS = "/etc/ssl/certs"
SETTLE_S = 5.0   # after the agent stops: the first retries are over
MODULE_THREADS = (NATIVE_WORKER_NAME, NATIVE_WATCH_NAME, "consul-deadline")


def _ca_path_with(ca_file: str, workdir: Path) -> (str, int):
    """A copy of the system's CA directory (its PEM files) with the test CA added."""
    target = workdir / "ca_path"
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(glob.glob(os.path.join(SYSTEM_CERTS, "*.pem"))):
        try:
            shutil.copyfile(path, target / os.path.basename(path))
            count += 1
        except OSError:
            continue
    shutil.copyfile(ca_file, target / "zz-test-ca.pem")
    return str(target), count + 1


def _module_cpu(cost: Dict[str, object]) -> float:
    threads = cost["threads"]
    return sum(threads.get(name, {}).get("cpu_pct", 0.0) for name in MODULE_THREADS)


def _measure(ast, seconds: float) -> Dict[str, object]:
    before = procstat.sample(ast.pid)
    time.sleep(seconds)
    return procstat.cost(before, procstat.sample(ast.pid))


def _variant(bed: Bed, name: str, seconds: float) -> Dict[str, object]:
    agent = ConsulAgent(bed.workdir / ("agentdown-" + name), tls=name != "http")
    agent.start()
    ast = None
    try:
        options = {"port": agent.http_port}
        certs = 0
        if name != "http":
            options.update(scheme="https", port=agent.https_port)
            if name == "https-ca_file":
                options["ca_file"] = agent.ca_file
            else:
                options["ca_path"], certs = _ca_path_with(agent.ca_file, bed.workdir / name)
        ast = bed.asterisk(check="no", **options)
        ctl = ModuleControl(ast)
        try:
            ctl.load()
        finally:
            ctl.close()
        deadline = time.monotonic() + 20.0
        while not agent.services():
            if time.monotonic() > deadline:
                raise RuntimeError("%s: the service never reached the agent" % name)
            time.sleep(0.1)
        time.sleep(SETTLE_S)
        rest = _measure(ast, seconds)
        agent.stop()
        time.sleep(SETTLE_S)
        down = _measure(ast, seconds)
        if not module_running(ast):
            raise RuntimeError("%s: the module is not running after the outage" % name)
    finally:
        if ast is not None:
            bed.discard(ast)
        agent.stop()
    out = {"seconds": seconds, "ca_path_files": certs,
           "rest_cpu_pct": rest["cpu_pct"], "down_cpu_pct": down["cpu_pct"],
           "rest_module_threads_cpu_pct": _module_cpu(rest),
           "down_module_threads_cpu_pct": _module_cpu(down),
           "rest_cpu_pct_schedstat": rest["cpu_pct_schedstat"],
           "down_cpu_pct_schedstat": down["cpu_pct_schedstat"],
           "rest_switches_per_s": rest["switches_per_s"],
           "down_switches_per_s": down["switches_per_s"]}
    out["ratio"] = (out["down_cpu_pct"] / out["rest_cpu_pct"]) if out["rest_cpu_pct"] else None
    log("agentdown %-14s Asterisk at rest %.3f %% of a core, agent down %.3f %% (by schedstat "
        "%.3f -> %.3f %%; module threads %.3f -> %.3f %%; wakeups %.1f/s -> %.1f/s)%s"
        % (name, out["rest_cpu_pct"], out["down_cpu_pct"], out["rest_cpu_pct_schedstat"],
           out["down_cpu_pct_schedstat"], out["rest_module_threads_cpu_pct"],
           out["down_module_threads_cpu_pct"], out["rest_switches_per_s"],
           out["down_switches_per_s"], " [%d CA files]" % certs if certs else ""))
    return out


def run(bed: Bed, seconds: float = 30.0) -> Dict[str, object]:
    return {name: _variant(bed, name, seconds)
            for name in ("http", "https-ca_file", "https-ca_path")}
