"""The service registration: its named state, and the sync job that keeps the agent's view
as we want it (register, resync, repair in place, retry with backoff; never deregister to
refresh). Maintenance, the checks, the KV keys and what a reload left behind follow each sync.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from ..backoff import Backoff, jittered
from ..consul import ConsulError, ConsulNotFound, ConsulPermissionDenied, ConsulRequestError
from ..registration import drift, our_check_ids
from .link import AgentLink
from .maintenance import Maintenance
from .notify import Notifications
from .retired import Retired

if TYPE_CHECKING:
    from .catalog import Catalog
    from .checks import Checks
    from .kvsession import KvSession


class ServiceState(enum.Enum):
    UNREGISTERED = "unregistered"             # not in the agent: registered when due
    REGISTERED = "registered"                 # in the agent as wanted: compared when due
    DRIFTED = "drifted"                       # in the agent, not as wanted: re-registered in place
    REJECTED_TEMPORARY = "rejected for now"   # the last attempt failed: again after a backoff
    REJECTED_PERMANENT = "rejected for good"  # refused as sent (ACL, request): again, slowly
    STOPPING = "stopping"                     # unload: deregistered, nothing more


_NEEDS_REGISTER = (ServiceState.UNREGISTERED, ServiceState.DRIFTED,
                   ServiceState.REJECTED_TEMPORARY, ServiceState.REJECTED_PERMANENT)


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


class ServiceRegistration:
    def __init__(self, link: AgentLink, definition: Dict[str, Any], maintenance: Maintenance,
                 retired: Retired, notify: Notifications, *, backoff_initial_s: float,
                 backoff_max_s: float, slow_retry_s: float):
        self._link = link
        self._maintenance = maintenance
        self._retired = retired
        self._notify = notify
        self.checks: "Checks"    # set by the Registrar once all parts exist
        self.kv: "KvSession"     # likewise
        self.catalog: "Catalog"  # likewise
        self.on_registered: Callable[[], None] = lambda: None
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
        self.catalog.forget()

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

    def moved(self) -> None:
        """Another agent or service ID: nothing is registered there yet."""
        self.lost()
        self.sent = False

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

    def sync_soon(self) -> None:
        """Within the shortest backoff (an operator's wish its caller stopped waiting for)."""
        self._next_due = min(self._next_due, time.monotonic() + self._backoff_initial_s)

    def apply(self, definition: Dict[str, Any], elsewhere: bool) -> None:
        """Reloaded settings: register again now if what we register (or where) changed."""
        if elsewhere:
            self.catalog.forget()  # looked for again once registered there
        if definition != self.definition or elsewhere:
            self.definition = definition
            self.mark_needs_register()
            self._backoff.reset()
            self._next_due = 0.0
        elif not self.needs_register:
            self._next_due = time.monotonic() + self.resync_s()

    # -- schedule ---------------------------------------------------------------------------

    def due(self) -> Optional[float]:
        return self._next_due

    def resync_s(self) -> float:
        return max(self._link.settings.resync_interval.seconds, 0.1)

    def succeeded(self, outcome: str = "ok") -> None:
        self._link.answered()
        self._backoff.reset()
        self.last_sync = time.time()
        self.last_sync_result = outcome
        self._next_due = time.monotonic() + self.resync_s()

    def failed(self, exc: BaseException) -> None:
        """A failed job: note it and schedule the next attempt."""
        permanent = isinstance(exc, (ConsulPermissionDenied, ConsulRequestError))
        if permanent:
            # A configuration problem: retrying fast cannot help and would flood the agent.
            delay = jittered(self._slow_retry_s)
        else:
            # Retries never wait longer than a resync would: an agent that is back is noticed
            # as soon as a healthy one would be. Jitter: a fleet must not retry in lockstep.
            delay = self._backoff.next(cap_s=max(self._backoff_initial_s, self.resync_s()))
        self._link.failed(exc, retry_in=delay)
        self.last_sync = time.time()
        self.last_sync_result = "failed"
        self._next_due = time.monotonic() + delay
        if self.needs_register:
            self.state = (ServiceState.REJECTED_PERMANENT if permanent
                          else ServiceState.REJECTED_TEMPORARY)

    # -- the sync job -------------------------------------------------------------------------

    def run(self) -> None:
        """Make the agent match what we want; when due (start, retry, resync)."""
        link = self._link
        consul = link.consul
        link.check_stop()
        if not self.needs_register:
            service_id = self.definition["ID"]
            agent_service = consul.agent.service.get(service_id)
            link.check_stop()
            agent_checks = consul.agent.check.list()
            self._maintenance.learn(agent_checks, service_id)
            differences = drift(self.definition, agent_service, agent_checks)
            if differences:
                if agent_service is None:
                    self.lost()
                link.log(logging.WARNING, "Consul: service %s drifted (%s); re-registering",
                         service_id, "; ".join(differences))
                self.mark_needs_register()
                outcome = _short("ok, re-registered (" + "; ".join(differences)) + ")"
            elif self._maintenance.lost():
                link.log(logging.WARNING, "Consul: maintenance mode of %s was lost; "
                         "setting it again", service_id)
                outcome = "ok, maintenance mode set again (it was lost)"
            else:
                outcome = "ok, in sync"
        else:
            outcome = "ok, registered"
        self.converge()
        self.succeeded(outcome)
        self.kv.sync_soon(verify=True)  # someone may have edited or deleted our keys

    def converge(self) -> None:
        """Register if needed, then maintenance, then clean up what a reload left behind."""
        for attempt in (1, 2):
            try:
                if self.needs_register:
                    self._register()
                self._maintenance.converge(self.definition)
                break
            except ConsulNotFound:
                # The agent forgot the service between two calls (it restarted): once more.
                if attempt == 2:
                    raise
                self.lost()
        self._retired.clean_up()

    def _register(self) -> None:
        link, definition = self._link, self.definition
        service_id = definition["ID"]
        keep_maintenance = self._maintenance.kept_on_register
        link.check_stop()
        self.sent = True
        try:
            link.consul.agent.service.register(self._registration_body(),
                                               replace_existing_checks=not keep_maintenance)
        except ConsulRequestError as exc:
            if "TLSServerName" in str(exc):
                raise ConsulRequestError(f"{exc} (check_tls_server_name needs Consul 1.10 or "
                                         f"newer: this agent does not know the field)",
                                         exc.status) from None
            raise
        if not keep_maintenance:
            self._maintenance.registered_without_it()
        else:
            wanted = {c["CheckID"] for c in definition.get("Checks") or []}
            for stale in our_check_ids(service_id):
                if stale not in wanted:
                    self.checks.drop_quietly(stale)
        self.checks.after_register(definition)
        self.kv.sync_soon()
        self.catalog.after_register()
        self.on_registered()
        if not self.registered or self.since is None:
            self.since = time.time()
        self.state = ServiceState.REGISTERED
        self.registered = True
        link.log(logging.INFO, "Consul: service %s (%s) registered as %s:%s", service_id,
                 definition["Name"], definition["Address"], definition["Port"])
        self._notify.registered(definition, self._maintenance.wanted)

    def _registration_body(self) -> Dict[str, Any]:
        """The definition, each check starting with the status true now: a new check would
        otherwise start critical until its first report or Consul's first poll (staggered up
        to an interval), and a fresh Asterisk would wait that long to be routable."""
        body = dict(self.definition)
        if body.get("Checks"):
            body["Checks"] = [dict(c, Status=self.checks.status_for(c)) for c in body["Checks"]]
        return body

    # -- status and stop --------------------------------------------------------------------

    def refresh_live_status(self) -> None:
        """Health and checks as the agent reports them now (for `discovery show status`)."""
        link = self._link
        service_id = self.definition["ID"]
        link.check_stop()
        try:
            health, checks = link.consul.agent.health.service_by_id(service_id)
            link.seen()
            link.version_or_blank()
        except ConsulError as exc:
            link.failed(exc)
            return
        self.health = health
        by_id = {c.get("CheckID"): c for c in checks}
        self.checks.note_live(by_id, service_id)
        if health == "unknown":
            if self.registered:
                link.log(logging.WARNING, "Consul: the agent no longer knows service %s; "
                         "re-registering", service_id)
            self.lost()
        else:
            self._maintenance.learn(by_id, service_id)
        if self.needs_register:
            self._next_due = 0.0  # the agent answers: no reason to wait for the backoff

    def deregister(self, deadline: float) -> None:
        """At unload: within what is left of the caller's budget, but never so little that a
        healthy local agent could not answer."""
        link, definition = self._link, self.definition
        self.state = ServiceState.STOPPING
        if link.current is None or not self.sent:
            return
        timeout_s = link.settings.timeout_s
        budget = min(timeout_s, max(deadline - time.monotonic(), min(0.1, timeout_s)))
        service_id = definition["ID"]
        try:
            link.consul.agent.service.deregister(service_id, timeout_s=budget)
        except ConsulError as exc:
            link.log(logging.WARNING, "Consul: could not deregister service %s: %s",
                     service_id, link.scrub(str(exc)))
            return
        self.registered = False
        self.since = None
        self.catalog.forget()
        link.log(logging.INFO, "Consul: service %s deregistered", service_id)
        self._notify.deregistered(service_id, definition["Name"], definition["Address"],
                                  definition["Port"], self._maintenance.wanted)
