"""What this Asterisk's health is, as the checks say it: pure functions, no I/O.

The worker reads Asterisk's state (a few flags and the channel count, no locks on the call
path) every HOST_POLL_S (at rest HOST_POLL_AT_REST_S) and turns it into a Verdict: what the EID
endpoint answers to Consul's poll, and what the TTL check reports. Draining is not a verdict:
it has a check of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

HOST_POLL_S = 0.5  # how often the worker looks at Asterisk's state (a few flag reads)...
# ...while anything may change soon (calls up, booting, stopping, draining, busy). At rest
# (booted, no channel) less often: each wakeup of an idle worker costs ~0.3 ms of CPU, which
# was most of the module's idle cost; a stop right after a box's first call waits up to this.
HOST_POLL_AT_REST_S = 0.75
BUSY_RELEASE = 0.9  # busy until the channels fall below 90 % of busy_channels
BUSY_DWELL_S = 5.0  # a busy or idle state lasts at least this long: no flapping


@dataclass(frozen=True)
class AsteriskState:
    booted: bool          # fully booted
    shutting_down: bool   # ast_shutting_down(): core stop gracefully/now, no new calls
    stop_requested: bool  # any core stop or restart asked for, 'when convenient' included
    channels: int         # active channels


@dataclass(frozen=True)
class SipHealth:
    """What the SIP probe makes of the SIP stack (sip_probe.py, registrar/sip.py). The reason is
    stable while the state is (no round-trip time in it): each change is a Consul write."""

    status: str  # passing, warning (503: overloaded), critical
    reason: str


@dataclass(frozen=True)
class Verdict:
    ttl_status: str   # what the TTL check reports: passing, warning, critical
    output: str       # and its output
    http_status: int  # what the EID endpoint answers to a matching request
    http_reason: str
    http_body: str

    @property
    def http_check_status(self) -> str:
        """What Consul makes of http_status (2xx passing, 429 warning, else critical)."""
        if 200 <= self.http_status < 300:
            return "passing"
        return "warning" if self.http_status == 429 else "critical"


def verdict(state: AsteriskState, busy: bool, version: str, eid: str,
            busy_channels: int, sip: Optional[SipHealth] = None) -> Verdict:
    """`sip`: the SIP stack's health while sip_check is on, None while it is off."""
    if state.shutting_down:
        return Verdict("critical", f"Asterisk {version} is shutting down",
                       503, "Service Unavailable", "Asterisk is shutting down")
    if not state.booted:
        return Verdict("warning", f"Asterisk {version} is starting: not fully booted yet",
                       503, "Service Unavailable", "Asterisk is starting")
    if sip is not None and sip.status == "critical":
        return Verdict("critical", f"Asterisk {version} takes no SIP calls: {sip.reason}",
                       503, "Service Unavailable", sip.reason)
    if sip is not None and sip.status == "warning":
        return Verdict("warning", f"Asterisk {version} is overloaded: {sip.reason}",
                       429, "Too Many Requests", sip.reason)
    if busy:
        # No live count in the output: Consul hears of busy once, not at every call.
        return Verdict("warning", f"Asterisk {version} is busy: {busy_channels} active channels "
                                  f"or more (busy_channels)",
                       429, "Too Many Requests", "EID match, busy")
    return Verdict("passing", f"Asterisk {version} is fully booted (EID {eid})",
                   200, "OK", "EID match")


class BusyState:
    """busy_channels with hysteresis: busy at the threshold, idle again below 90 % of it, and
    each state held at least BUSY_DWELL_S. Owned by the worker."""

    def __init__(self) -> None:
        self.busy = False
        self.since = 0.0  # monotonic time of the last change

    def update(self, channels: int, threshold: int, now: float) -> bool:
        """Take the channel count; True when the state changed."""
        if threshold <= 0:
            wanted = False
        elif self.busy:
            wanted = channels >= threshold * BUSY_RELEASE
        else:
            wanted = channels >= threshold
        if wanted == self.busy or (self.since and now - self.since < BUSY_DWELL_S):
            return False
        self.busy, self.since = wanted, now
        return True
