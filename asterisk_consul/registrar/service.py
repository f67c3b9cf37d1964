"""The service registration: its named state, its schedule (resync, retry with backoff) and
the calls that register and deregister it. It knows no other part: what follows a registration
(maintenance, the checks' reports, the KV keys, the catalog) is the reconciler's business.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Dict, Optional, Tuple

from ..backoff import Backoff, jittered
from ..consul import (ConsulAclNotFound, ConsulError, ConsulNotFound, ConsulPermissionDenied,
                      ConsulRequestError)
from .link import AgentLink


class ServiceState(enum.Enum):
    UNREGISTERED = "unregistered"             # not in the agent: registered when due
    REGISTERED = "registered"                 # in the agent as wanted: compared when due
    DRIFTED = "drifted"                       # in the agent, not as wanted: re-registered in place
    REJECTED_TEMPORARY = "rejected for now"   # the last attempt failed: again after a backoff
    REJECTED_PERMANENT = "rejected for good"  # refused as sent (ACL, request): again, slowly
    STOPPING = "stopping"                     # unload: deregistered, nothing more


_NEEDS_REGISTER = (ServiceState.UNREGISTERED, ServiceState.DRIFTED,
                   ServiceState.REJECTED_TEMPORARY, ServiceState.REJECTED_PERMANENT)


class ServiceRegistration:
    def __init__(self, link: AgentLink, definition: Dict[str, Any], *, backoff_initial_s: float,
                 backoff_max_s: float, slow_retry_s: float):
        self._link = link
        self._backoff_initial_s = backoff_initial_s
        self._slow_retry_s = slow_retry_s
        self.definition = definition
        self.state = ServiceState.UNREGISTERED
        self.registered = False  # the agent held it when last seen
        self.since: Optional[float] = None
        self.sent = False  # a register call was sent (it may have landed)
        self.health = ""
        self.last_sync: Optional[float] = None
        self.last_sync_result = ""
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._next_due = 0.0

    # -- state ------------------------------------------------------------------------------

    @property
    def needs_register(self) -> bool:
        return self.state in _NEEDS_REGISTER

    @property
    def stands(self) -> bool:
        """Registered as wanted, as far as we know: changes go to it in place."""
        return self.registered and not self.needs_register

    def mark_needs_register(self) -> None:
        if not self.needs_register:
            self.state = ServiceState.DRIFTED if self.registered else ServiceState.UNREGISTERED

    def register_now(self) -> None:
        self.mark_needs_register()
        self._next_due = 0.0

    def lost(self) -> None:
        """The agent does not know the service (any more)."""
        self.registered = False
        self.since = None
        self.state = ServiceState.UNREGISTERED

    def moved(self) -> None:
        """Another agent or service ID: nothing is registered there yet."""
        self.lost()
        self.sent = False

    def wake(self, reason: str, agent_back: bool) -> None:
        """The watch saw the agent's view change under us, or the agent come back: sync now,
        whatever the backoff said. Only if that is news: while registering anyway the
        schedule stands, and an agent that refuses us for good is not asked faster."""
        if self.state is ServiceState.REJECTED_PERMANENT:
            return
        if not agent_back and self.state not in (ServiceState.REGISTERED, ServiceState.DRIFTED):
            return
        self._link.log(logging.INFO, "Consul: %s; syncing now", reason)
        self._backoff.reset()
        self._next_due = 0.0

    def redefine(self, definition: Dict[str, Any], soon: bool = False) -> bool:
        """A new definition; with soon, registered again shortly if one may have landed.
        Returns whether it differs."""
        if definition == self.definition:
            return False
        self.definition = definition
        if soon and self.sent:
            self.mark_needs_register()
            self.sync_soon()
        return True

    def reloaded(self, definition: Dict[str, Any], elsewhere: bool) -> None:
        """Reloaded settings: register again now if what we register (or where) changed."""
        if definition != self.definition or elsewhere:
            self.definition = definition
            self.mark_needs_register()
            self._backoff.reset()
            self._next_due = 0.0
        elif not self.needs_register:
            self._next_due = self._link.clock.monotonic() + self.resync_s()

    # -- schedule ---------------------------------------------------------------------------

    def due(self) -> Optional[float]:
        return self._next_due

    def sync_now(self) -> None:
        self._next_due = 0.0

    def sync_soon(self) -> None:
        """Within the shortest backoff (an operator's wish its caller stopped waiting for)."""
        self._next_due = min(self._next_due,
                             self._link.clock.monotonic() + self._backoff_initial_s)

    def resync_s(self) -> float:
        return max(self._link.settings.resync_interval.seconds, 0.1)

    def succeeded(self, outcome: str = "ok") -> None:
        self._link.answered()
        self._backoff.reset()
        self.last_sync = self._link.clock.time()
        self.last_sync_result = outcome
        self._next_due = self._link.clock.monotonic() + self.resync_s()

    def failed(self, exc: BaseException) -> None:
        """A failed job: note it and schedule the next attempt."""
        permanent = isinstance(exc, (ConsulPermissionDenied, ConsulRequestError))
        if isinstance(exc, ConsulAclNotFound) and self._link.settings.token_file:
            # A deleted token whose successor may be in the token file any moment (it is
            # read again at once and on each change): retried on the backoff.
            permanent = False
        if permanent:
            # A configuration problem: retrying fast cannot help and would flood the agent.
            delay = jittered(self._slow_retry_s)
        else:
            # Retries never wait longer than a resync would: an agent that is back is noticed
            # as soon as a healthy one would be.
            delay = self._backoff.next(cap_s=max(self._backoff_initial_s, self.resync_s()))
        self._link.failed(exc, retry_in=delay)
        self.last_sync = self._link.clock.time()
        self.last_sync_result = "failed"
        self._next_due = self._link.clock.monotonic() + delay
        if self.needs_register:
            self.state = (ServiceState.REJECTED_PERMANENT if permanent
                          else ServiceState.REJECTED_TEMPORARY)

    def shown(self) -> Dict[str, Any]:
        """Its fields of the status."""
        definition = self.definition
        return dict(service_id=definition["ID"], service_name=definition["Name"],
                    address=definition["Address"], port=definition["Port"],
                    state=self.state.value, registered=self.registered,
                    registered_since=self.since, health=self.health, last_sync=self.last_sync,
                    last_sync_result=self.last_sync_result)

    # -- calls ------------------------------------------------------------------------------

    def agent_view(self) -> Tuple[Optional[Dict[str, Any]], Dict[str, Dict[str, Any]]]:
        """The agent's view of the service and of all its checks."""
        consul = self._link.consul
        service = consul.agent.service.get(self.definition["ID"])
        self._link.check_stop()
        return service, consul.agent.check.list()

    def register(self, body: Dict[str, Any], replace_checks: bool) -> None:
        definition = self.definition
        self._link.check_stop()
        self.sent = True
        try:
            self._link.consul.agent.service.register(body, replace_existing_checks=replace_checks)
        except ConsulRequestError as exc:
            if "TLSServerName" in str(exc):
                raise ConsulRequestError(f"{exc} (check_tls_server_name needs Consul 1.10 or "
                                         f"newer: this agent does not know the field)",
                                         exc.status) from None
            raise
        if not self.registered or self.since is None:
            self.since = self._link.clock.time()
        self.state = ServiceState.REGISTERED
        self.registered = True
        self._link.log(logging.INFO, "Consul: service %s (%s) registered as %s:%s",
                       definition["ID"], definition["Name"], definition["Address"],
                       definition["Port"])

    def deregister(self, budget_s: float) -> bool:
        """At unload; True when Consul took it."""
        link, service_id = self._link, self.definition["ID"]
        self.state = ServiceState.STOPPING
        if link.current is None or not self.sent:
            return False
        try:
            link.consul.agent.service.deregister(service_id, timeout_s=budget_s)
        except ConsulNotFound:
            link.log(logging.INFO, "Consul: service %s was no longer registered", service_id)
            self.registered, self.since = False, None
            return False
        except ConsulError as exc:
            link.log(logging.WARNING, "Consul: could not deregister service %s: %s",
                     service_id, link.scrub(str(exc)))
            return False
        self.registered = False
        self.since = None
        link.log(logging.INFO, "Consul: service %s deregistered", service_id)
        return True
