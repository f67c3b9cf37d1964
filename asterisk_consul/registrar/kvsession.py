"""The [kv] keys and the session that holds them, on the worker's schedule: written once the
service is registered, the session renewed every half TTL, Consul's tree looked at again at
each resync, retried with backoff, never later than the next renewal (the session must outlive
a conflict)."""

from __future__ import annotations

import logging
from typing import Optional

from ..backoff import Backoff, jittered
from ..consul import ConsulError, ConsulPermissionDenied, ConsulRequestError
from ..kv import KvConflict, KvPublisher
from ..settings import Settings
from .link import AgentLink
from .notify import Notifications

KV_RETRY_MAX_S = 10.0


class KvSession:
    def __init__(self, link: AgentLink, backoff_initial_s: float,
                 notify: Optional[Notifications] = None):
        self._link = link
        self._notify = notify
        self._conflicts_said: dict = {}  # the same-id conflicts already told on AMI
        self.publisher = KvPublisher()
        self.publisher.want(link.settings, link.facts)
        self.error = ""
        self._due: Optional[float] = None
        self._backoff = Backoff(backoff_initial_s, KV_RETRY_MAX_S)

    @property
    def active(self) -> bool:
        return self.publisher.active

    def want(self, settings: Settings, registered: bool) -> None:
        """New settings: the next sync writes, moves and deletes accordingly."""
        self.publisher.want(settings, self._link.facts)
        if self.active and registered:
            self._due = 0.0

    def sync_soon(self, verify: bool = False) -> None:
        """After a registration (or a resync: verify, someone may have edited our keys)."""
        if self.active:
            if verify:
                self.publisher.verify = True
            self._due = 0.0

    def due(self) -> Optional[float]:
        return self._due

    def run(self, registered: bool, resync_s: float) -> None:
        publisher = self.publisher
        if not self.active or not registered:
            self._due = None  # registering schedules it again
            return
        try:
            done = publisher.sync(self._link.consul)
        except Exception as exc:  # noqa: BLE001 - whatever failed, retried later: never a spin
            self._tell_conflicts()
            if isinstance(exc, (KvConflict, ConsulPermissionDenied, ConsulRequestError)):
                # Waits for someone to act: no point hurrying.
                delay = jittered(min(resync_s, publisher.renew_interval_s()))
            else:
                delay = self._backoff.next(cap_s=publisher.renew_interval_s())
            message = self._link.scrub(str(exc) if isinstance(exc, ConsulError) else
                                       f"unexpected {type(exc).__name__}: {exc}")
            if message != self.error:
                self._link.log(logging.WARNING, "Consul: KV keys under %s not in place: %s; "
                               "retrying in %.1f s", publisher.prefix or "/", message, delay)
            self.error = message
            self._due = self._link.clock.monotonic() + delay
            return
        self._tell_conflicts()
        if self.error:
            self._link.log(logging.INFO, "Consul: KV keys under %s are in place again",
                           publisher.prefix or "/")
        self.error = ""
        self._backoff.reset()
        if done:
            self._link.log(logging.INFO, "Consul: KV under %s: %s", publisher.prefix or "/", done)
        self._due = (self._link.clock.monotonic() + publisher.renew_interval_s()
                     if self.active else None)

    def shown(self) -> dict:
        """Its fields of the status."""
        publisher = self.publisher
        return dict(kv_prefix=publisher.prefix,
                    kv_keys=tuple((k, v.decode("utf-8", "replace"))
                                  for k, v in publisher.written.items()),
                    kv_wanted=len(publisher.wanted), kv_session=publisher.session_id,
                    kv_renewed=publisher.renewed_at, kv_error=self.error)

    def _tell_conflicts(self) -> None:
        """An AMI event for each key another box with our id came to hold (once per holder)."""
        conflicts = self.publisher.same_id_conflicts
        if self._notify is not None:
            for key, (session, node) in conflicts.items():
                if self._conflicts_said.get(key) != (session, node):
                    self._notify.kv_conflict(self._link.settings.service_id, key, session, node)
        self._conflicts_said = dict(conflicts)

    def remove(self, budget_s: float) -> None:
        """At unload: the keys go with the session (or with its TTL if Consul cannot be told)."""
        if not self.publisher.session_id:
            return
        try:
            self.publisher.remove(self._link.consul, timeout_s=budget_s)
            self._link.log(logging.INFO, "Consul: KV keys under %s removed",
                           self.publisher.prefix or "/")
        except ConsulError as exc:
            self._link.log(logging.WARNING, "Consul: could not remove the KV keys under %s: %s "
                           "(they go when the session's TTL runs out)",
                           self.publisher.prefix or "/", self._link.scrub(str(exc)))
