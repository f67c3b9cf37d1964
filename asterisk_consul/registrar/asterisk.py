"""Asterisk's state as the worker follows it: every HOST_POLL_S (at rest HOST_POLL_AT_REST_S)
a few flag reads and the channel count (no network, no lock on the call path). From it come
the busy state (busy_channels, with hysteresis) and the verdict the checks say; what follows
from them (the checks, a drain) is the reconciler's business."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

from ..health import (HOST_POLL_AT_REST_S, HOST_POLL_S, AsteriskState, BusyState, SipHealth,
                      Verdict, verdict)
from .link import AgentLink

ReadState = Callable[[], AsteriskState]
VerdictSink = Callable[[Verdict], None]
NOT_BOOTED = AsteriskState(booted=False, shutting_down=False, stop_requested=False, channels=0)


@dataclass(frozen=True)
class Look:
    state: AsteriskState
    verdict_changed: bool


class AsteriskWatch:
    def __init__(self, link: AgentLink, read_state: ReadState, on_verdict: VerdictSink):
        self._link = link
        self._read_state = read_state
        self._on_verdict = on_verdict
        self.busy = BusyState()
        self.busy_since: Optional[float] = None  # wall-clock time of the last change to busy
        self.sip: Optional[SipHealth] = None  # the SIP stack's health (sip.py); None: not asked
        self.state = self.read()
        self.verdict = self._judge(self.state)
        on_verdict(self.verdict)
        self._due = 0.0

    def read(self) -> AsteriskState:
        """Asterisk's state now (a few flag reads)."""
        try:
            return self._read_state()
        except Exception as exc:  # noqa: BLE001 - a host that cannot tell is not booted
            self._link.log(logging.ERROR, "Consul: cannot read Asterisk's state: %s", exc)
            return NOT_BOOTED

    def _judge(self, state: AsteriskState) -> Verdict:
        facts, settings = self._link.facts, self._link.settings
        return verdict(state, self.busy.busy, facts.version, facts.eid, settings.busy_channels,
                       self.sip)

    def rejudge(self, sip: Optional[SipHealth]) -> bool:
        """The SIP stack's health changed: the verdict again (without a new look); True when
        the verdict changed."""
        self.sip = sip
        judged = self._judge(self.state)
        if judged == self.verdict:
            return False
        self.verdict = judged
        self._on_verdict(judged)
        return True

    def due(self) -> Optional[float]:
        return self._due

    def look(self, draining: bool) -> Look:
        """One look at Asterisk (when due); the next is sooner unless Asterisk is at rest."""
        now = self._link.clock.monotonic()
        self._due = now + HOST_POLL_S  # first: a look that raises is not retried at once
        state = self.read()
        if self.busy.update(state.channels, self._link.settings.busy_channels, now):
            self.busy_since = self._link.clock.time() if self.busy.busy else None
            self._link.log(logging.WARNING if self.busy.busy else logging.INFO,
                           "Consul: %d active channels: %s", state.channels,
                           "busy (the checks say warning)" if self.busy.busy else "no longer busy")
        self.state = state
        judged = self._judge(state)
        changed = judged != self.verdict
        if changed:
            self.verdict = judged
            self._on_verdict(judged)
        if (state.booted and not (state.shutting_down or state.stop_requested)
                and state.channels == 0 and not self.busy.busy and not draining):
            self._due = now + HOST_POLL_AT_REST_S
        return Look(state, changed)
