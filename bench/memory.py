"""Asterisk's memory with the module, the real application against a real Consul agent:

    RSS before the first `module load`, after it (registered, check passing), and after
    `cycles` unload/load cycles (each one registered in Consul's catalog before the next
    unload deregisters it).

The cycles also time every warm load and unload and the time from each load to the service
in the catalog, so their medians come with the RSS figures.

breakdown() says where the growth at load goes: the same load, each in a fresh Asterisk, of
modules built around applications that stop part of the way (integration_tests/apps/memstages.py).
"""

from __future__ import annotations

import time
from typing import Dict, List

from integration_tests.testbed.build import build_module

from .harness import Bed, CatalogWatch, ModuleControl, log, rss_kb, summary

SETTLE_S = 1.0  # after a load: the registrar's first sync and the first check are done by then
SAMPLE_EVERY = 20  # cycles between two RSS samples
# Each stage includes the one before it; the real module's growth (run()) is the last.
STAGES = (("python", "memstages:PythonOnly", "Python, cffi and the bridge"),
          ("package", "memstages:PythonAndPackage", "+ the package imported"),
          ("requests", "memstages:PythonPackageAndRequests", "+ requests imported"))


def _settled_rss(pid: int) -> Dict[str, int]:
    time.sleep(SETTLE_S)
    return rss_kb(pid)


def run(bed: Bed, cycles: int = 200) -> Dict[str, object]:
    stages = breakdown(bed)
    ast = bed.asterisk(target="up")
    ctl = ModuleControl(ast)
    try:
        before = _settled_rss(ast.pid)
        bed.wait_catalog_empty()
        in_catalog = CatalogWatch(bed)
        passing = CatalogWatch(bed, passing=True)
        began = time.monotonic()
        first_load = ctl.load()
        first_catalog = in_catalog.result(began)
        first_passing = passing.result(began)
        after_load = _settled_rss(ast.pid)
        log("memory: RSS %d kB before load, %d kB after (+%.1f MB); first load %.0f ms, "
            "in the catalog after %.0f ms, passing after %.0f ms" % (
                before["VmRSS"], after_load["VmRSS"], (after_load["VmRSS"] - before["VmRSS"]) / 1024,
                first_load * 1000, (first_catalog or 0) * 1000, (first_passing or 0) * 1000))

        loads: List[float] = []
        unloads: List[float] = []
        catalog: List[float] = []
        series = [{"cycle": 0, **after_load}]
        started = time.monotonic()
        for cycle in range(1, cycles + 1):
            unloads.append(ctl.unload())
            bed.wait_catalog_empty()
            watch = CatalogWatch(bed)
            began = time.monotonic()
            loads.append(ctl.load())
            arrived = watch.result(began)
            if arrived is None:
                raise RuntimeError("cycle %d: the service never reached the catalog" % cycle)
            catalog.append(arrived)
            if cycle % SAMPLE_EVERY == 0 or cycle == cycles:
                series.append({"cycle": cycle, **rss_kb(ast.pid)})
        took = time.monotonic() - started
        after_cycles = _settled_rss(ast.pid)
        series.append({"cycle": cycles, "settled": True, **after_cycles})
        if not ctl.running():
            raise RuntimeError("the module is not running after the cycles")
        log("memory: %d unload/load cycles in %.1f s; RSS %d kB after them (%+.2f MB)" % (
            cycles, took, after_cycles["VmRSS"], (after_cycles["VmRSS"] - after_load["VmRSS"]) / 1024))
        steady_from = next((s for s in series if s["cycle"] >= min(SAMPLE_EVERY, cycles)), series[0])
        return {
            "cycles": cycles,
            "rss_kb": {"before_load": before, "after_load": after_load, "after_cycles": after_cycles},
            "load_delta_mb": (after_load["VmRSS"] - before["VmRSS"]) / 1024,
            "cycles_growth_mb": (after_cycles["VmRSS"] - after_load["VmRSS"]) / 1024,
            # Growth once the first cycles' one-time costs (allocator arenas, caches) are paid.
            "steady_growth_mb_per_100": ((after_cycles["VmRSS"] - steady_from["VmRSS"]) / 1024
                                         * 100 / max(1, cycles - steady_from["cycle"])),
            "series": series,
            "first_load_ms": first_load * 1000,
            "first_catalog_ms": None if first_catalog is None else first_catalog * 1000,
            "first_passing_ms": None if first_passing is None else first_passing * 1000,
            "warm_load": summary(loads),
            "warm_unload": summary(unloads),
            "catalog_after_load": summary(catalog),
            "seconds": took,
            "refused_unloads": ctl.refused_unloads,
            "breakdown_kb": stages,
        }
    finally:
        ctl.close()
        bed.discard(ast)


def _growth_at_load(bed: Bed, module_so) -> Dict[str, int]:
    ast = bed.asterisk(target="up", module_so=module_so)
    ctl = ModuleControl(ast)
    try:
        before = _settled_rss(ast.pid)
        ctl.load()
        after = _settled_rss(ast.pid)
        return {key: after[key] - before[key] for key in before}
    finally:
        ctl.close()
        bed.discard(ast)


def breakdown(bed: Bed) -> Dict[str, object]:
    """RSS growth at load (kB) of each stage, each in a fresh Asterisk 16."""
    stages = {}
    for key, app, label in STAGES:
        growth = _growth_at_load(bed, build_module("16", app=app))
        stages[key] = {"label": label, **growth}
        log("memory breakdown: %s: %+.1f MB (anon %+.1f, file %+.1f)" % (
            label, growth["VmRSS"] / 1024, growth["RssAnon"] / 1024, growth["RssFile"] / 1024))
    return stages
