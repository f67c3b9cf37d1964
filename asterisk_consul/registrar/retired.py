"""Registrations a reload left behind (another service ID, or another agent), deregistered
once the new registration is in: consumers never see a moment without one. An old agent that
does not answer is tried again at the next syncs and given up after a few: an agent that is
gone took its services along."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional

from ..consul import Consul, ConsulError, ConsulUnreachable
from .link import AgentLink
from .notify import Notifications

RETIRED_ATTEMPTS = 10


@dataclass
class _Retired:
    consul: Consul
    service_id: str
    name: str
    address: str
    port: int
    attempts: int = 0


class Retired:
    def __init__(self, link: AgentLink, notify: Notifications):
        self._link = link
        self._notify = notify
        self._left: List[_Retired] = []

    def add(self, consul: Consul, service_id: str, name: str, address: str, port: int) -> None:
        self._left.append(_Retired(consul, service_id, name, address, port))

    def holds(self, consul: Consul) -> bool:
        return any(r.consul is consul for r in self._left)

    def clients(self) -> List[Consul]:
        return [r.consul for r in self._left]

    def __bool__(self) -> bool:
        return bool(self._left)

    def clean_up(self) -> None:
        """After a sync: our own registration is in place, so an old agent that does not
        answer fails only this part."""
        try:
            self.deregister()
        except ConsulError as exc:
            retired = self._left[0]
            retired.attempts += 1
            if retired.attempts >= RETIRED_ATTEMPTS:
                self._link.log(logging.WARNING, "Consul: giving up deregistering old service %s "
                               "from %s after %d attempts: %s", retired.service_id,
                               retired.consul.url, retired.attempts, self._link.scrub(str(exc)))
                self._forget_first()
            elif retired.attempts == 1:
                self._link.log(logging.WARNING, "Consul: could not deregister old service %s "
                               "from %s yet (will retry): %s", retired.service_id,
                               retired.consul.url, self._link.scrub(str(exc)))

    def deregister(self, budget_s: Optional[float] = None, interruptible: bool = True) -> None:
        settings = self._link.settings
        current = (settings.agent_url, settings.service_id)
        while self._left:
            retired = self._left[0]
            if (retired.consul.url, retired.service_id) != current:
                if interruptible:
                    self._link.check_stop()
                if retired.service_id != current[1] or self._other_agent(
                        retired.consul, budget_s, interruptible):
                    retired.consul.agent.service.deregister(retired.service_id,
                                                            timeout_s=budget_s)
                    self._link.log(logging.INFO, "Consul: old service %s deregistered from %s",
                                   retired.service_id, retired.consul.url)
                    self._notify.deregistered(retired.service_id, retired.name, retired.address,
                                              retired.port, False)
            self._forget_first()

    def _forget_first(self) -> None:
        retired = self._left.pop(0)
        if retired.consul is not self._link.current and not self.holds(retired.consul):
            retired.consul.close()

    def _other_agent(self, old: Consul, budget_s: Optional[float], interruptible: bool) -> bool:
        """Is `old` (the agent before a reload) another agent than the current one? The same
        agent may be reached under another URL (http -> https, a host name for its address):
        deregistering our ID there would remove the registration just made."""
        settings = self._link.settings
        try:
            old_node = old.agent.node_id(timeout_s=budget_s)
            if interruptible:
                self._link.check_stop()
            new_node = self._link.consul.agent.node_id(timeout_s=budget_s)
        except ConsulUnreachable:
            raise  # retried: the old agent is still to be cleaned when it answers
        except ConsulError as exc:
            self._link.log(logging.WARNING, "Consul: service %s is left registered with %s: "
                           "cannot tell whether that is the same agent as %s (%s)",
                           settings.service_id, old.url, settings.agent_url,
                           self._link.scrub(str(exc)))
            return False
        if old_node and old_node == new_node:
            self._link.log(logging.INFO, "Consul: %s and %s are the same agent; service %s stays",
                           old.url, settings.agent_url, settings.service_id)
            return False
        return True
