"""What the module costs an idle Asterisk: CPU time and context switches over the same window,
of two Asterisk processes started alike, one with the module loaded and one without.

The module runs as an operator would run it with everything on: its default intervals,
check = yes, check_type = both (Consul polls the EID endpoint every 15 s, the module reports
the TTL check every 10 s) and a [kv] section (a session renewed every 15 s). Both Asterisks
have the module installed and the same config; only one loads it. The window starts once the
service passes in Consul and the first catalog looks are over (SETTLE_S), and nothing talks to
either Asterisk during it (no CLI, no AMI).
"""

from __future__ import annotations

import time
from typing import Dict

from integration_tests.resilience import (NATIVE_NURSERY_NAME, NATIVE_PULSE_NAME,
                                         NATIVE_WATCH_NAME, NATIVE_WORKER_NAME)

from . import procstat
from .harness import Bed, CatalogWatch, ModuleControl, log, module_running

SETTLE_S = 20.0  # after the load: the catalog looks (0.5 .. 8 s apart) are over by then
KV = {"role": "pbx", "sip": "${ADDRESS}:${PORT}"}
MODULE_THREADS = (NATIVE_WORKER_NAME, NATIVE_WATCH_NAME, NATIVE_PULSE_NAME, NATIVE_NURSERY_NAME)


def module_options() -> Dict[str, object]:
    """Everything on, every interval at its default."""
    return {"check": "yes", "check_type": "both", "check_interval": None}


def run(bed: Bed, seconds: float = 300.0) -> Dict[str, object]:
    baseline = bed.asterisk(kv=KV, **module_options())
    with_module = bed.asterisk(kv=KV, **module_options())
    try:
        ctl = ModuleControl(with_module)
        try:
            watch = CatalogWatch(bed, passing=True)
            began = time.monotonic()
            ctl.load()
            if watch.result(began) is None:
                raise RuntimeError("the service never passed in Consul")
        finally:
            ctl.close()  # its AMI session is a thread of Asterisk's: none during the window
        time.sleep(SETTLE_S)
        log("idle: measuring both Asterisks for %.0f s ..." % seconds)
        before = {name: procstat.sample(ast.pid) for name, ast in
                  (("baseline", baseline), ("module", with_module))}
        time.sleep(seconds)
        after = {name: procstat.sample(ast.pid) for name, ast in
                 (("baseline", baseline), ("module", with_module))}
        if not module_running(with_module):
            raise RuntimeError("the module is not running after the window")
    finally:
        bed.discard(baseline)
        bed.discard(with_module)
    costs = {name: procstat.cost(before[name], after[name]) for name in before}
    extra = procstat.extra(costs["module"], costs["baseline"])
    threads = {name: costs["module"]["threads"].get(name) for name in MODULE_THREADS}
    out = {"seconds": seconds, "settings": "check = yes, check_type = both, [kv] with %d keys, "
                                          "defaults otherwise" % len(KV),
           "baseline": costs["baseline"], "module": costs["module"], "extra": extra,
           "module_threads": threads, "clock_ticks_per_s": procstat.CLOCK_TICKS}
    log("idle: the module adds %.3f %% of one core (%.3f %% by schedstat) and %.2f wakeups/s "
        "over %.0f s" % (extra["cpu_pct"], extra["cpu_pct_schedstat"], extra["switches_per_s"],
                         seconds))
    return out
