"""`module load` and `module unload` wall time with the Consul agent up, refusing connections
and blackholed (accepts, never answers), and, with it up, the time from `module load` to the
service in Consul's catalog and to its EID check passing.

cold: the first load in a fresh Asterisk process (it starts the embedded Python and imports
      the package): one new Asterisk per sample.
warm: later loads in the same process (Python is up, the package is imported again).
Unload deregisters: with the agent blackholed it waits for the Consul timeout
(consul_timeout_ms, default 2000) by design.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional

from .harness import TARGETS, Bed, CatalogWatch, ModuleControl, log, summary

SETTLE_S = 0.3  # between a load and its unload: the registrar has tried the agent by then


def _cold_sample(bed: Bed, target: str, timed_catalog: bool) -> Dict[str, Optional[float]]:
    ast = bed.asterisk(target=target)
    ctl = ModuleControl(ast)
    try:
        watches = None
        if timed_catalog:
            bed.wait_catalog_empty()
            watches = (CatalogWatch(bed), CatalogWatch(bed, passing=True))
        began = time.monotonic()
        load = ctl.load()
        catalog = passing = None
        if watches:
            catalog = watches[0].result(began)
            passing = watches[1].result(began)
        else:
            time.sleep(SETTLE_S)
        unload = ctl.unload()
        return {"load": load, "unload": unload, "catalog": catalog, "passing": passing,
                "refused": ctl.refused_unloads}
    finally:
        ctl.close()
        bed.discard(ast)


def run(bed: Bed, cold: int = 5, warm: int = 7, targets=TARGETS) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for target in targets:
        samples: List[Dict[str, Optional[float]]] = []
        for _ in range(cold):
            samples.append(_cold_sample(bed, target, timed_catalog=(target == "up")))
        ast = bed.asterisk(target=target)
        ctl = ModuleControl(ast)
        warm_loads: List[float] = []
        warm_unloads: List[float] = []
        catalog: List[float] = []
        passing: List[float] = []
        try:
            ctl.load()  # the cold one of this process: not counted
            time.sleep(SETTLE_S)
            ctl.unload()
            for _ in range(warm):
                watches = None
                if target == "up":
                    bed.wait_catalog_empty()
                    watches = (CatalogWatch(bed), CatalogWatch(bed, passing=True))
                began = time.monotonic()
                warm_loads.append(ctl.load())
                if watches:
                    catalog.append(watches[0].result(began))
                    passing.append(watches[1].result(began))
                else:
                    time.sleep(SETTLE_S)
                warm_unloads.append(ctl.unload())
            refused = ctl.refused_unloads
        finally:
            ctl.close()
            bed.discard(ast)
        entry = {
            "cold_load": summary([s["load"] for s in samples]),
            "cold_unload": summary([s["unload"] for s in samples]),
            "warm_load": summary(warm_loads),
            "warm_unload": summary(warm_unloads),
            # Unloads Asterisk refused while a request held the module (tried again).
            "refused_unloads": refused + sum(s["refused"] for s in samples),
        }
        if target == "up":
            entry["catalog_after_load"] = summary([s["catalog"] for s in samples] + catalog)
            entry["catalog_after_cold_load"] = summary([s["catalog"] for s in samples])
            entry["catalog_after_warm_load"] = summary(catalog)
            entry["passing_after_load"] = summary([s["passing"] for s in samples] + passing)
            entry["check_interval"] = bed.check_interval
        out[target] = entry
        log("load/unload, Consul %-10s cold load %6.1f ms, warm load %6.1f ms, "
            "unload %7.1f ms (medians)" % (
                target, entry["cold_load"].get("median_ms", float("nan")),
                entry["warm_load"].get("median_ms", float("nan")),
                entry["warm_unload"].get("median_ms", float("nan"))))
    return out
