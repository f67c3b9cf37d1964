"""Asterisk's state as the worker follows it: every HOST_POLL_S (at rest HOST_POLL_AT_REST_S)
a few flag reads and the channel count (no network, no lock on the call path). From it come
the busy state (busy_channels, with hysteresis), the verdict the checks say, and what drain
follows."""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from ..health import (HOST_POLL_AT_REST_S, HOST_POLL_S, AsteriskState, BusyState, Verdict,
                      verdict)
from .checks import Checks
from .drain import Drain
from .link import AgentLink

ReadState = Callable[[], AsteriskState]
VerdictSink = Callable[[Verdict], None]


class AsteriskWatch:
    def __init__(self, link: AgentLink, read_state: ReadState, on_verdict: VerdictSink,
                 forget_stop: Callable[[], None] = lambda: None):
        self._link = link
        self._read_state = read_state
        self.forget_stop = forget_stop  # the stop seen was cancelled (Host.forget_stop_request)
        self._on_verdict = on_verdict
        self.busy = BusyState()
        self.busy_since: Optional[float] = None  # time.time() of the last change to busy
        self.state = self.read()
        self.verdict = self._judge(self.state)
        on_verdict(self.verdict)
        self._due = 0.0
        self.checks: Checks  # set by the Registrar once all parts exist
        self.drain: Drain

    def read(self) -> AsteriskState:
        """Asterisk's state now (a few flag reads)."""
        try:
            return self._read_state()
        except Exception as exc:  # noqa: BLE001 - a host that cannot tell is not booted
            self._link.log(logging.ERROR, "Consul: cannot read Asterisk's state: %s", exc)
            return AsteriskState(booted=False, shutting_down=False, stop_requested=False,
                                 channels=0)

    def _judge(self, state: AsteriskState) -> Verdict:
        facts, settings = self._link.facts, self._link.settings
        return verdict(state, self.busy.busy, facts.version, facts.eid, settings.busy_channels)

    def due(self) -> Optional[float]:
        return self._due

    def run(self) -> bool:
        """One look at Asterisk; False when it changed nothing the status shows."""
        now = time.monotonic()
        self._due = now + HOST_POLL_S  # first: a look that raises is not retried at once
        before = self._seen()
        state = self.read()
        if self.busy.update(state.channels, self._link.settings.busy_channels, now):
            self.busy_since = time.time() if self.busy.busy else None
            self._link.log(logging.WARNING if self.busy.busy else logging.INFO,
                           "Consul: %d active channels: %s", state.channels,
                           "busy (the checks say warning)" if self.busy.busy else "no longer busy")
        self.state = state
        judged = self._judge(state)
        if judged != self.verdict:
            self.verdict = judged
            self._on_verdict(judged)
            self.checks.verdict_changed(judged)
        self.drain.observe(state)
        if self._at_rest(state):
            self._due = now + HOST_POLL_AT_REST_S
        return self._seen() != before

    def _at_rest(self, state: AsteriskState) -> bool:
        return (state.booted and not (state.shutting_down or state.stop_requested)
                and state.channels == 0 and not self.busy.busy and not self.drain.on)

    def _seen(self) -> tuple:
        drain = self.drain
        return (self.state, self.busy.busy, self.verdict, drain.on, drain.drained_at)
