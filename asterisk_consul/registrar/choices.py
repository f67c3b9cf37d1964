"""The operator's choices and Asterisk's stop, as plain values and pure functions (no I/O, no
clock: the time comes in as an argument).

An operator's change — `discovery set maintenance|check|drain`, the AMI actions, a graceful
stop that drains — is a `Change`; `choose` folds it into the `Choices`, which the module keeps
for its life and applies again whenever the service is registered again. What Consul should
hold follows from the choices (wanted.py); the reconciler makes it so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Optional, Tuple

from ..health import AsteriskState

MAINTENANCE, CHECK, DRAIN = "maintenance", "check", "drain"
BY_OPERATOR, BY_SHUTDOWN = "operator", "shutdown"
SHUTDOWN_REASON = "Asterisk is stopping (core stop or restart): no new calls"


@dataclass(frozen=True)
class Change:
    kind: str  # MAINTENANCE, CHECK or DRAIN
    on: bool
    reason: str = ""
    by: str = BY_OPERATOR  # a drain a stop started says so


@dataclass(frozen=True)
class Choices:
    maintenance: bool = False
    maintenance_reason: str = ""
    checks: Optional[bool] = None  # discovery set check on|off; None: as the config says
    drain: bool = False
    drain_reason: str = ""
    drain_by: str = ""
    drain_since: Optional[float] = None  # wall-clock time the drain began


def choose(choices: Choices, change: Change, now: float) -> Choices:
    """The choices after `change`, made at wall-clock time `now`."""
    on, reason = change.on, (change.reason if change.on else "")
    if change.kind == MAINTENANCE:
        return replace(choices, maintenance=on, maintenance_reason=reason)
    if change.kind == CHECK:
        return replace(choices, checks=on)
    if change.kind == DRAIN:
        since = choices.drain_since if choices.drain else now
        return replace(choices, drain=on, drain_reason=reason,
                       drain_by=change.by if on else "", drain_since=since if on else None)
    raise ValueError(f"unknown change {change.kind!r}")


def is_on(choices: Choices, kind: str) -> bool:
    return {MAINTENANCE: choices.maintenance, CHECK: bool(choices.checks),
            DRAIN: choices.drain}[kind]


def drain_notes(choices: Choices) -> Optional[str]:
    """The drain check's notes while draining (None: no drain check)."""
    if not choices.drain:
        return None
    began = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(choices.drain_since or 0))
    return (f"res_discovery_consul: draining since {began} ({choices.drain_by}): "
            f"{choices.drain_reason or 'no reason given'}")


# -- Asterisk's stop ------------------------------------------------------------------------------
# A stop can be cancelled (`core abort shutdown`). After a graceful one Asterisk says so (it is no
# longer shutting down); after 'when convenient' nothing in Asterisk changes back, and only the
# operator's `discovery set drain off` says the stop is off.

STARTED, CANCELLED = "started", "cancelled"


@dataclass(frozen=True)
class StopSeen:
    requested: bool = False      # a stop asked for, not (yet) cancelled
    carried_out: bool = False    # ...that Asterisk said it was carrying out (shutting down)


def follow_stop(seen: StopSeen, state: AsteriskState) -> Tuple[StopSeen, Optional[str]]:
    """What Asterisk's state says of a stop: (what is seen now, STARTED / CANCELLED / None)."""
    if state.stop_requested:
        if seen.carried_out and not state.shutting_down:
            # 'core abort shutdown' of a graceful stop: the sign of that stop is forgotten too.
            return StopSeen(), CANCELLED
        carried_out = seen.carried_out or state.shutting_down
        if not seen.requested:
            return StopSeen(True, carried_out), STARTED
        return StopSeen(True, carried_out), None
    if seen.requested:
        return StopSeen(), CANCELLED
    return seen, None
