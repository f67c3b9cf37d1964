"""The one backoff of the module: every retry of a call to the agent waits what this says.

    backoff = Backoff(initial_s=0.5, cap_s=30.0)
    delay = backoff.next()   # 0.25..0.5, then 0.5..1, 1..2, ... never above cap_s
    backoff.reset()          # after a success: the next failure starts small again
    delay = jittered(60.0)   # a retry at a fixed pace: 30..60

Jittered (each delay is drawn in [half, whole] of its step) so that a fleet whose agents or
servers fail together does not retry in lockstep; capped so that an agent that is back is
noticed soon.
"""

from __future__ import annotations

import random
from typing import Callable

Random = Callable[[], float]  # a draw in [0, 1), random.random by default; tests inject one


def jittered(step_s: float, rand: Random = random.random) -> float:
    """A delay in [step_s / 2, step_s]: the jitter of every retry."""
    return step_s * (0.5 + 0.5 * rand())


class Backoff:
    def __init__(self, initial_s: float, cap_s: float, rand: Random = random.random):
        self.initial_s = max(float(initial_s), 0.001)
        self.cap_s = max(float(cap_s), self.initial_s)
        self.failures = 0
        self._rand = rand

    def next(self, cap_s: float = 0.0) -> float:
        """The delay before the next attempt (a failure is counted); `cap_s` lowers the cap
        for this one delay (e.g. never later than a session renewal)."""
        cap = min(self.cap_s, cap_s) if cap_s > 0 else self.cap_s
        step = min(cap, self.initial_s * (2 ** min(self.failures, 30)))
        self.failures += 1
        return jittered(step, self._rand)

    def reset(self) -> None:
        self.failures = 0
