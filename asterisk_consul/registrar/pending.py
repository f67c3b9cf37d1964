"""A reload whose settings could not be taken (a client that cannot be built from them): the
running settings and registration stay whole, and the reload is tried again with backoff until
it works or another reload replaces it."""

from __future__ import annotations

from typing import Callable, Optional

from ..backoff import Backoff
from ..clock import Clock
from ..settings import Settings


class PendingReload:
    def __init__(self, apply: Callable[[Settings], None], clock: Clock):
        self._apply = apply
        self._clock = clock
        self.settings: Optional[Settings] = None
        self.reason = ""  # why the last attempt failed
        self._due: Optional[float] = None
        self._backoff = Backoff(0.5, 30.0)

    def failed(self, settings: Settings, reason: str) -> bool:
        """Returns whether the reason is news (to be logged)."""
        news = reason != self.reason
        self.settings, self.reason = settings, reason
        self._due = self._clock.monotonic() + self._backoff.next()
        return news

    def clear(self) -> None:
        self.settings, self.reason, self._due = None, "", None
        self._backoff.reset()

    def due(self) -> Optional[float]:
        return self._due

    def run(self) -> None:
        self._due = None
        if self.settings is not None:
            self._apply(self.settings)
