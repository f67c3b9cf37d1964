"""The registrar's only source of time, passed in: production uses the system's clocks, unit
tests a clock they move by hand (no test waits on real time to see a schedule run)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """For schedules and durations."""

    def time(self) -> float:
        """Wall-clock seconds, for what is shown to people ("since ...")."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM_CLOCK = SystemClock()
