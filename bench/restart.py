"""Time for the module to re-register after the Consul agent restarts.

A dev agent comes back empty, as a real agent that lost its state does: the module finds out
at its next resync (resync_interval; a failed try backs off from 0.5 s, capped at the resync
interval) and registers again. Measured from the moment the agent answers again to the service
in its catalog, so the figure is about U(0, resync_interval) plus the module's own latency.
"""

from __future__ import annotations

import time
from typing import Dict, List

from asterisk_consul.values import Duration

from .harness import Bed, CatalogWatch, ModuleControl, log, summary

RESYNC_INTERVAL = "1s"  # the default is 30s: the lifecycle phase has that figure
DOWN_S = 0.5  # how long the agent stays down
SLACK_S = 15.0  # beyond one resync_interval before a re-registration counts as lost


def run(bed: Bed, samples: int = 4, resync_interval: str = RESYNC_INTERVAL) -> Dict[str, object]:
    ast = bed.asterisk(target="up", resync_interval=resync_interval)
    ctl = ModuleControl(ast)
    times: List[float] = []
    # Noticed at the next resync at the latest: one interval, and the module's own time.
    timeout = Duration(resync_interval).seconds + SLACK_S
    try:
        bed.wait_catalog_empty()
        watch = CatalogWatch(bed)
        began = time.monotonic()
        ctl.load()
        if watch.result(began) is None:
            raise RuntimeError("the service never reached the catalog")
        for _ in range(samples):
            bed.consul.stop()
            time.sleep(DOWN_S)
            bed.consul.start()
            back = time.monotonic()
            watch = CatalogWatch(bed, timeout=timeout)
            arrived = watch.result(back)
            if arrived is None:
                raise RuntimeError("not re-registered within %.0f s of the agent's restart "
                                   "(resync_interval %s)" % (timeout, resync_interval))
            times.append(arrived)
        ctl.unload()
    finally:
        ctl.close()
        bed.discard(ast)
    out = {"resync_interval": resync_interval, "agent_down_s": DOWN_S,
           "reregister_after_agent_back": summary(times)}
    log("Consul agent restart: re-registered %.0f ms (median) after the agent answered again "
        "(resync_interval %s)" % (out["reregister_after_agent_back"]["median_ms"], resync_interval))
    return out
