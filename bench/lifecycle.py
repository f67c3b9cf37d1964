"""The lifecycle figure no other phase has: re-registration after the Consul agent restarts
with resync_interval at its default (30s), what a box left at the defaults sees. The restart
phase measures the same at 1s (the module's own latency); this adds the wait for the next
resync, about U(0, resync_interval). Module load times and load -> registered / passing are
the load phase's figures.
"""

from __future__ import annotations

from typing import Dict

from asterisk_consul.options import option

from . import restart
from .harness import Bed

DEFAULT_RESYNC = str(option("resync_interval").default)


def run(bed: Bed, samples: int = 3) -> Dict[str, object]:
    return restart.run(bed, samples=samples, resync_interval=DEFAULT_RESYNC)
