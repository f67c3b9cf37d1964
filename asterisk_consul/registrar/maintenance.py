"""Maintenance mode as the agent shows it, and the calls that make it show what is wanted.

What is wanted is the operator's choice (`discovery set maintenance`, DiscoverySetMaintenance:
choices.py), applied again whenever the service is registered again. Maintenance someone else
set in Consul is left alone by resyncs: that is an operator's decision too.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional

from ..registration import maintenance_check_id
from .link import AgentLink
from .notify import Notifications


def guard_check_id(service_id: str) -> str:
    return f"_asterisk_maintenance_guard:{service_id}"


class Maintenance:
    def __init__(self, link: AgentLink, notify: Notifications):
        self._link = link
        self._notify = notify
        self.in_agent: Optional[bool] = None      # what the agent last reported (None: unknown)
        self._notes_in_agent: Optional[str] = None  # the reason Consul shows
        self._guard_left = False                  # see _replace_reason
        self._dirty = False  # asked for explicitly: sent even if Consul seems to agree
        self._retoken = False  # its check was made with a token no longer in use

    def asked(self) -> None:
        """The operator asked just now: sent even if Consul seems to agree."""
        self._dirty = True

    def kept_on_register(self, wanted: bool) -> bool:
        """Registering replaces the checks, the maintenance check too: keep it while in (or
        possibly in) maintenance, so that the service never looks healthy in between."""
        return wanted or self.in_agent is True

    def retoken(self) -> None:
        """A new token: Consul keeps the maintenance check with the token that set it and syncs
        it with that one; set it again (guarded) once the service is registered again."""
        self._retoken = True

    def learn(self, checks_by_id: Mapping[str, Mapping[str, Any]], service_id: str) -> None:
        check = checks_by_id.get(maintenance_check_id(service_id))
        self.in_agent = check is not None
        self._notes_in_agent = None if check is None else check.get("Notes", "")

    def registered_without_it(self) -> None:
        """A registration that replaced the checks took any maintenance check away."""
        self.in_agent = False
        self._notes_in_agent = None

    def forget_agent_view(self) -> None:
        """Another agent or service ID: what the old one showed says nothing now."""
        self.in_agent = None

    def lost(self, wanted: bool) -> bool:
        """Wanted, but the agent does not show it (an agent restart, someone's `consul maint`)."""
        return wanted and not self.in_agent

    def converge(self, definition: Dict[str, Any], wanted: bool, reason: str) -> None:
        """Make the agent show what is wanted; says so once Consul accepted it. A guard left
        by an interrupted change of reason goes last, once maintenance is in place."""
        self._converge(definition, wanted, reason)
        if self._guard_left:
            self._drop_guard(definition["ID"])

    def _converge(self, definition: Dict[str, Any], wanted: bool, reason: str) -> None:
        in_agent = self.in_agent
        if self._retoken and wanted and in_agent is True:
            self._link.check_stop()
            self._replace_reason(definition["ID"], reason)  # Consul ignores a second "on"
            self._notes_in_agent = reason
            self._retoken = False
            return
        self._retoken = False
        if not self._dirty:
            if wanted and in_agent is True:
                return
            if not wanted:
                # Off here and nobody asked: maintenance someone set with the Consul CLI or
                # API is an operator's decision (a drained box) that a resync must not undo.
                return
        consul = self._link.consul
        service_id = definition["ID"]
        self._link.check_stop()
        if wanted and in_agent is True:
            if self._notes_in_agent == reason:
                self._dirty = False  # Consul already shows exactly this
                return
            self._replace_reason(service_id, reason)
        else:
            consul.agent.service.maintenance(service_id, wanted, reason)
        self.in_agent = wanted
        self._notes_in_agent = reason if wanted else None
        self._dirty = False
        self._link.log(logging.INFO, "Consul: maintenance mode for service %s is %s%s", service_id,
                       "set" if wanted else "unset",
                       f" ({reason})" if wanted and reason else "")
        self._notify.maintenance_changed(definition, wanted, reason)

    def _replace_reason(self, service_id: str, reason: str) -> None:
        """Consul ignores a new reason while maintenance is on, and off-then-on would show the
        service healthy in between: a temporary critical check covers the gap."""
        consul = self._link.consul
        consul.agent.check.register({"ID": guard_check_id(service_id),
                                     "Name": "Maintenance reason being changed",
                                     "ServiceID": service_id, "TTL": "1h", "Status": "critical"})
        self._guard_left = True
        consul.agent.service.maintenance(service_id, False)
        self.in_agent = False
        consul.agent.service.maintenance(service_id, True, reason)
        self.in_agent = True
        self._drop_guard(service_id)

    def _drop_guard(self, service_id: str) -> None:
        self._link.consul.agent.check.deregister(guard_check_id(service_id))
        self._guard_left = False
