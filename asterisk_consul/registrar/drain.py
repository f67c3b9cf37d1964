"""Drain: out of Consul's healthy set for new calls, still registered, until it is switched
off; the calls already up are followed until they end (DiscoveryDrained).

A check of its own (check-asterisk-drain-<id>, critical, its Notes saying why) keeps the
service out of `/v1/health/service/<name>?passing` whatever check_type is, and is part of the
service definition while draining, so every re-registration keeps it. It is not maintenance:
either can be on or off without touching the other. With drain_on_shutdown, any `core stop` or
`core restart` that waits for calls ('gracefully', 'when convenient') starts a drain at once.

A stop can be cancelled (`core abort shutdown`). After a graceful one Asterisk says so (it is no
longer shutting down) and the shutdown drain ends by itself. After 'when convenient' nothing in
Asterisk changes back: the operator ends the drain (`discovery set drain off`), and the module
then forgets that stop for the life of the process (Host.forget_stop_request), so later loads
and reloads start undrained.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Optional

from ..consul import ConsulError
from ..health import AsteriskState
from ..registration import drain_check_definition, drain_check_id, standalone_check
from .link import AgentLink
from .notify import Notifications
from .status import Result

if TYPE_CHECKING:
    from .asterisk import AsteriskWatch
    from .checks import Checks
    from .service import ServiceRegistration

BY_OPERATOR, BY_SHUTDOWN = "operator", "shutdown"
SHUTDOWN_REASON = "Asterisk is stopping (core stop or restart): no new calls"


def _clock(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp))


class Drain:
    def __init__(self, link: AgentLink, notify: Notifications):
        self._link = link
        self._notify = notify
        self.service: "ServiceRegistration"  # set by the Registrar once all parts exist
        self.checks: "Checks"
        self.asterisk: "AsteriskWatch"
        self.on = False
        self.reason = ""
        self.by = ""
        self.since: Optional[float] = None       # time.time() it started
        self.drained_at: Optional[float] = None  # when the channels first reached 0
        self.channels = 0                        # active channels when last looked at
        self._shutdown_seen = False              # a stop asked for, not (yet) cancelled
        self._shutting_down_seen = False         # ...that Asterisk said it was carrying out

    def notes(self) -> Optional[str]:
        """The drain check's notes while draining (None: no drain check)."""
        if not self.on:
            return None
        return (f"res_discovery_consul: draining since {_clock(self.since or 0)}"
                f" ({self.by}): {self.reason or 'no reason given'}")

    def switch(self, on: bool, reason: str, by: str = BY_OPERATOR) -> Result:
        """discovery set drain on|off: the drain check is added or removed on its own, at once;
        the service stays registered as it is."""
        link, service = self._link, self.service
        if on and not self.on:
            self.since, self.drained_at = time.time(), None
        self.on, self.reason, self.by = on, (reason if on else ""), (by if on else "")
        definition = self.checks.definition(link.settings)
        service_id = definition["ID"]
        service.redefine(definition)
        try:
            if service.needs_register or not service.registered:
                service.converge()  # registers with the drain check as now wanted
            elif on:
                link.consul.agent.check.register(standalone_check(
                    drain_check_definition(service_id, self.notes() or ""), service_id))
            else:
                self.checks.drop_quietly(drain_check_id(service_id))
        except ConsulError as exc:
            service.mark_needs_register()  # the next attempt re-registers in place with it
            service.failed(exc)
            return Result(False, f"{link.scrub(str(exc))}; will keep trying")
        if not on and by == BY_OPERATOR and self._shutdown_seen:
            # The operator's word that the stop is off: 'when convenient' leaves no other.
            self._forget_stop()
        word = "on" if on else "off"
        service.succeeded(f"ok, drain {word}")
        link.log(logging.INFO, "Consul: drain for service %s is %s%s", service_id, word,
                 f" ({self.reason})" if on and self.reason else "")
        self._notify.drain_changed(service_id, on, self.reason)
        if on:
            self._note_channels(self.asterisk.read().channels)  # now, not at the last poll
        return Result(True, f"Drain for service {service_id} is {word} (Consul accepted it)")

    def want(self, on: bool, reason: str) -> None:
        """Remembered for the next sync (its caller stopped waiting)."""
        if on and not self.on:
            self.since, self.drained_at = time.time(), None
        self.on, self.reason, self.by = on, (reason if on else ""), (BY_OPERATOR if on else "")
        self.service.redefine(self.checks.definition(self._link.settings), soon=True)

    def observe(self, state: AsteriskState) -> None:
        """Asterisk's state, every poll: a stop asked for starts a drain, a cancelled one ends
        it; the channels are followed until they reach 0."""
        if state.stop_requested:
            cancelled = self._shutting_down_seen and not state.shutting_down
            self._shutting_down_seen |= state.shutting_down
            if cancelled:
                # 'core abort shutdown' of a graceful stop: the message queue that the stop
                # dropped is not made again, so that sign of a stop is forgotten too.
                self._stop_cancelled()
            elif not self._shutdown_seen:
                self._shutdown_seen = True
                if self._link.settings.drain_on_shutdown and not self.on:
                    self._link.log(logging.INFO, "Consul: Asterisk is stopping: draining "
                                   "service %s", self.service.definition["ID"])
                    self.switch(True, SHUTDOWN_REASON, BY_SHUTDOWN)
        elif self._shutdown_seen:
            self._stop_cancelled()
        self._note_channels(state.channels)

    def _forget_stop(self) -> None:
        self._shutdown_seen = self._shutting_down_seen = False
        self.asterisk.forget_stop()

    def _stop_cancelled(self) -> None:
        self._forget_stop()
        if self.on and self.by == BY_SHUTDOWN:
            self._link.log(logging.INFO, "Consul: Asterisk's stop was cancelled: ending the "
                           "shutdown drain of service %s", self.service.definition["ID"])
            self.switch(False, "")

    def _note_channels(self, channels: int) -> None:
        self.channels = channels
        if self.on and channels == 0 and self.drained_at is None:
            self.drained_at = time.time()
            service_id = self.service.definition["ID"]
            self._link.log(logging.INFO, "Consul: service %s is drained: no active channels",
                           service_id)
            self._notify.drained(service_id, self.reason, self.since or 0.0)
