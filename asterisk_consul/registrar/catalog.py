"""Catalog truth: has the registration reached Consul's catalog (the servers), and since when?

An agent accepts a registration it cannot sync when its own ACL token lacks the rights (a known
Consul pitfall): consumers, who read the catalog, then never see the service. After each
registration the catalog is asked at growing intervals until the service shows up (and on
`discovery show status`), never at every resync: at fleet scale that would be one server
read per instance per resync."""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from ..backoff import Backoff
from ..consul import ConsulError
from .link import AgentLink

FIRST_LOOK_S = 0.5
LOOKS = 5  # after a registration: 0.5, 1, 2, 4 and 8 s apart at most (jittered), then on demand


class Catalog:
    def __init__(self, link: AgentLink):
        self._link = link
        self.present: Optional[bool] = None  # None: not asked since the last registration
        self.since: Optional[float] = None   # time.time() it was first seen there
        self.error = ""
        self._due: Optional[float] = None
        self._backoff = Backoff(FIRST_LOOK_S, FIRST_LOOK_S * 2 ** (LOOKS - 1))
        self._looks_left = 0

    def after_register(self) -> None:
        self.present, self.since, self.error = None, None, ""
        self._backoff.reset()
        self._looks_left = LOOKS
        self._due = self._link.clock.monotonic() + self._backoff.next()

    def forget(self) -> None:
        """Not registered (any more), or registered elsewhere: nothing to look for now."""
        self.present, self.since, self._due = None, None, None

    def due(self) -> Optional[float]:
        return self._due

    def run(self, definition: Dict[str, Any], registered: bool) -> None:
        self._due = None
        if not registered:
            return
        self.look(definition)
        self._looks_left -= 1
        if self.present or self.error:
            return  # found, or this token may not look: on demand only
        if self._looks_left > 0:
            self._due = self._link.clock.monotonic() + self._backoff.next()
        elif self.present is False:
            self._link.log(logging.WARNING, "Consul: service %s is registered with the agent "
                           "but not in Consul's catalog: the agent cannot sync it (its own ACL "
                           "token may lack node write), or this module's token cannot see it "
                           "(node:read)", definition["ID"])

    def shown(self) -> dict:
        """Its fields of the status."""
        return dict(in_catalog=self.present, catalog_since=self.since, catalog_error=self.error)

    def look(self, definition: Dict[str, Any]) -> None:
        """Ask the catalog now (worker thread)."""
        try:
            entry = self._link.consul.catalog.service_instance(definition["Name"], definition["ID"])
        except ConsulError as exc:
            self.error = self._link.scrub(str(exc))
            return
        self.error = ""
        self.present = entry is not None
        if self.present and self.since is None:
            self.since = self._link.clock.time()
        elif not self.present:
            self.since = None
