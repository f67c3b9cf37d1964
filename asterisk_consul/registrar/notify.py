"""Notifications: what the world is told once Consul accepted a change.

One place turns an accepted change into its AMI event (fired at once) and, with events = yes,
its Consul user event (queued, then fired at the end of the job, after a CLI or AMI caller has
its answer; each tried once, a failure logged and dropped).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..consul import ConsulError, ConsulUnreachable
from ..registration import event_payload, event_too_large
from .link import AgentLink

EventSink = Callable[[str, List[Tuple[str, str]]], None]
MAX_PENDING_EVENTS = 16  # Consul user events waiting for the end of the current job

_ID = ("ID", "The service ID.")
# The AMI events fired below: synopsis and headers (name, meaning), for Asterisk's help
# (`manager show event`, written by xmldoc.py); a test holds what is fired to this table.
AMI_EVENTS: Dict[str, Tuple[str, Tuple[Tuple[str, str], ...]]] = {
    "DiscoveryRegister": ("Consul accepted the service's registration (at load, after a repair, "
                          "after a reload that changed it).",
                          (_ID, ("Name", "The service name."), ("Address", "The advertised address."),
                           ("Port", "The advertised port."))),
    "DiscoveryDeregister": ("Consul removed the service (unload, shutdown, a reload to enabled = no "
                            "or to another service ID).", (_ID, ("Name", "The service name."))),
    "DiscoverySetMaintenance": ("Consul took a maintenance mode change.",
                                (_ID, ("Maintenance", "true or false."),
                                 ("Reason", "The reason given (with Maintenance: true)."))),
    "DiscoverySetCheck": ("The health checks were added or removed at run time.",
                          (_ID, ("Check", "on or off."))),
    "DiscoverySetDrain": ("Consul took a drain change (CLI, AMI or a graceful stop).",
                          (_ID, ("Drain", "on or off."),
                           ("Reason", "The reason given (with Drain: on)."))),
    "DiscoveryDrained": ("A draining Asterisk has no active channel left: it can be stopped.",
                         (_ID, ("Reason", "The drain's reason."),
                          ("DrainingSince", "When the drain began (local time, "
                                            "YYYY-MM-DD HH:MM:SS)."))),
    "DiscoveryKvConflict": ("A [kv] key is held by a live session of another Asterisk with the "
                            "same id (a copied config, a cloned machine): it is not taken over; "
                            "give each box its own id.",
                            (_ID, ("Key", "The KV key."),
                             ("Session", "The other box's session holding it."),
                             ("Node", "The Consul node of that session."))),
    "DiscoveryTokenRejected": ("The agent answered 403 \"ACL not found\" to the ACL token in use "
                               "(deleted or expired): the service cannot be kept in sync until a "
                               "live token is in the token file (read again at once, and within "
                               "a second of each change) or the config is reloaded with one.",
                               (_ID, ("Reason", "What Consul said: ACL not found."))),
}


class Notifications:
    def __init__(self, link: AgentLink, on_event: EventSink):
        self._link = link
        self._on_event = on_event
        self._pending: List[Tuple[str, bytes]] = []  # (Consul event name, payload)
        self._too_large: set = set()  # event names said to be too large for Consul
        self.fired = 0
        self.failed = 0
        self.last_event = ""        # "<name> at <time>" of the last one Consul took
        self.last_error = ""        # why the last one that failed did
        self._last_reason = ""

    # -- accepted changes ------------------------------------------------------------------

    def registered(self, definition: dict, maintenance: bool) -> None:
        self._ami("DiscoveryRegister", [("ID", definition["ID"]), ("Name", definition["Name"]),
                                        ("Address", definition["Address"]),
                                        ("Port", str(definition["Port"]))])
        self._queue("register", definition["ID"], definition["Name"], definition["Address"],
                    definition["Port"], maintenance)

    def deregistered(self, service_id: str, name: str, address: str, port: Any,
                     maintenance: bool) -> None:
        self._ami("DiscoveryDeregister", [("ID", service_id), ("Name", name)])
        self._queue("deregister", service_id, name, address, port, maintenance)

    def maintenance_changed(self, definition: dict, on: bool, reason: str) -> None:
        headers = [("ID", definition["ID"]), ("Maintenance", "true" if on else "false")]
        if on:
            headers.append(("Reason", reason))
        self._ami("DiscoverySetMaintenance", headers)
        self._queue("maintenance", definition["ID"], definition["Name"], definition["Address"],
                    definition["Port"], on)

    def checks_switched(self, service_id: str, on: bool) -> None:
        self._ami("DiscoverySetCheck", [("ID", service_id), ("Check", "on" if on else "off")])

    def drain_changed(self, service_id: str, on: bool, reason: str) -> None:
        headers = [("ID", service_id), ("Drain", "on" if on else "off")]
        if on:
            headers.append(("Reason", reason))
        self._ami("DiscoverySetDrain", headers)

    def drained(self, service_id: str, reason: str, since: float) -> None:
        """A draining service has no active channels left."""
        self._ami("DiscoveryDrained", [("ID", service_id), ("Reason", reason),
                                       ("DrainingSince", time.strftime(
                                           "%Y-%m-%d %H:%M:%S", time.localtime(since)))])

    def kv_conflict(self, service_id: str, key: str, session: str, node: str) -> None:
        self._ami("DiscoveryKvConflict", [("ID", service_id), ("Key", key),
                                          ("Session", session), ("Node", node)])

    def token_rejected(self, service_id: str, reason: str) -> None:
        self._ami("DiscoveryTokenRejected", [("ID", service_id), ("Reason", reason)])

    def shown(self) -> Dict[str, Any]:
        """Its fields of the status."""
        return dict(events_fired=self.fired, events_failed=self.failed,
                    last_event=self.last_event, last_event_error=self.last_error)

    # -- AMI -------------------------------------------------------------------------------

    def _ami(self, name: str, headers: Sequence[Tuple[str, str]]) -> None:
        if self._link.silenced.is_set():
            return
        try:
            self._on_event(name, list(headers))
        except Exception as exc:  # noqa: BLE001 - a broken listener must not stop the worker
            self._link.log(logging.ERROR, "Consul: event handler for %s failed: %s", name, exc)

    # -- Consul user events ----------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def _queue(self, kind: str, service_id: str, name: str, address: str, port: Any,
               maintenance: bool) -> None:
        settings = self._link.settings
        if not settings.events:
            return
        event_name = {"register": settings.event_register,
                      "deregister": settings.event_deregister,
                      "maintenance": settings.event_maintenance}[kind]
        facts = self._link.facts
        payload = event_payload(service_id, name, facts.eid, address, port, facts.version,
                                maintenance)
        too_large = event_too_large(event_name, payload)
        if too_large:
            # Not sent (Consul would refuse it with a 500); said once per event name.
            self.failed += 1
            self.last_error = f"event {event_name} not fired: {too_large}"
            level = logging.DEBUG if event_name in self._too_large else logging.WARNING
            self._too_large.add(event_name)
            self._link.log(level, "Consul: %s", self.last_error)
            return
        if len(self._pending) >= MAX_PENDING_EVENTS:
            dropped, _ = self._pending.pop(0)
            self.failed += 1
            self._link.log(logging.WARNING, "Consul: event %s dropped: too many waiting", dropped)
        self._pending.append((event_name, payload))

    def flush(self, budget_s: Optional[float] = None, interruptible: bool = True) -> None:
        """Fire what is queued, each once: a failure is logged and the event dropped (the
        change it reports stands). An agent that does not answer drops the rest at once."""
        deadline = None if budget_s is None else self._link.clock.monotonic() + budget_s
        consul = self._link.consul
        while self._pending:
            if interruptible and self._link.stop_requested.is_set():
                return  # the shutdown job fires what is left, within its budget
            name, payload = self._pending.pop(0)
            timeout_s = None
            if deadline is not None:
                timeout_s = deadline - self._link.clock.monotonic()
                if timeout_s <= 0:
                    self._failed(name, "no time left before unload", len(self._pending))
                    return
            try:
                answer = consul.event.fire(name, payload, timeout_s=timeout_s)
            except ConsulError as exc:
                unreachable = isinstance(exc, ConsulUnreachable)
                self._failed(name, self._link.scrub(str(exc)),
                             len(self._pending) if unreachable else 0)
                if unreachable:
                    return
                continue
            self.fired += 1
            at = time.localtime(self._link.clock.time())
            self.last_event = f"{name} at {time.strftime('%H:%M:%S', at)}"
            if self.last_error:
                self._link.log(logging.INFO, "Consul: events are accepted again")
                self.last_error = ""
                self._last_reason = ""
            self._link.log(logging.DEBUG, "Consul: event %s fired (ID %s)", name,
                           answer.get("ID", "?"))

    def drop_pending(self) -> None:
        self._pending.clear()

    def _failed(self, name: str, reason: str, also_dropped: int) -> None:
        self.failed += 1 + also_dropped
        if also_dropped:
            self._pending.clear()
        message = f"event {name} not fired: {reason}"
        if also_dropped:
            message += f" ({also_dropped} more dropped)"
        # One warning per kind of failure (an ACL token without event:write fails them all).
        level = logging.DEBUG if reason == self._last_reason else logging.WARNING
        self._link.log(level, "Consul: %s; not retried", message)
        self.last_error = message
        self._last_reason = reason
