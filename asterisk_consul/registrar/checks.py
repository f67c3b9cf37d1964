"""The health checks: on or off, and the TTL check's reports.

`discovery set check on|off` adds or removes the checks on their own (the service is not
registered again) and lasts until the check options in the config change. The TTL check is
reported from Asterisk's state, looked at every HOST_POLL_S without network: at once when it
changes, and at least every third of the TTL.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from ..consul import ConsulError, ConsulNotFound, ConsulServerError
from ..registration import (our_check_ids, service_definition, standalone_check, ttl_check_id,
                            ttl_report_interval_s, ttl_status)
from ..settings import Settings
from .link import AgentLink
from .notify import Notifications
from .status import Result

if TYPE_CHECKING:
    from .service import ServiceRegistration

HostState = Callable[[], Tuple[bool, bool]]  # (fully booted, shutting down); cheap, no I/O
HOST_POLL_S = 1.0  # how often the TTL check looks at Asterisk's state (no I/O when unchanged)


class Checks:
    def __init__(self, link: AgentLink, notify: Notifications, host_state: HostState):
        self._link = link
        self._notify = notify
        self._host_state = host_state
        self.service: "ServiceRegistration"  # set by the Registrar once both exist
        # discovery set check on|off: None = as the config says; kept until check_key changes
        self.override: Optional[bool] = None
        self.states: Dict[str, Tuple[str, str]] = {}  # check ID -> (status, output)
        self.ttl_error = ""
        self._ttl_due: Optional[float] = None
        self._ttl_report_due = 0.0
        self._ttl_reported: Optional[Tuple[str, str]] = None

    # -- what is registered ----------------------------------------------------------------

    def definition(self, settings: Settings) -> Dict[str, Any]:
        """The service definition, with the checks the config or the operator wants."""
        return service_definition(settings, self._link.facts, self.override)

    def settings_changed(self, old: Settings, new: Settings) -> None:
        if self.override is not None and new.check_key() != old.check_key():
            self._link.log(logging.INFO, "Consul: the check options changed: 'discovery set check "
                           "%s' no longer applies; the config decides",
                           "on" if self.override else "off")
            self.override = None

    def want(self, on: bool) -> None:
        """Remembered for the next sync (its caller stopped waiting)."""
        self.override = on
        self.service.redefine(self.definition(self._link.settings), soon=True)

    def switch(self, on: bool) -> Result:
        """discovery set check on|off: the checks are added or removed on their own, the
        service stays registered as it is (no re-registration, no moment without it)."""
        self.override = on
        service = self.service
        word = "on" if on else "off"
        definition = self.definition(self._link.settings)
        service_id = definition["ID"]
        checks = definition.get("Checks") or []
        changed = service.redefine(definition)
        try:
            consul = self._link.consul
            if service.needs_register or not service.registered:
                service.converge()  # registers with the checks as now wanted
            else:
                for check in checks:
                    self._link.check_stop()
                    status = self.ttl_status()[0] if "TTL" in check else None
                    consul.agent.check.register(standalone_check(check, service_id, status))
                for unwanted in our_check_ids(service_id):
                    if unwanted not in {c["CheckID"] for c in checks}:
                        self._link.check_stop()
                        self.drop_quietly(unwanted)
                self.after_register(definition)
        except ConsulError as exc:
            service.mark_needs_register()  # the next attempt re-registers in place with them
            service.failed(exc)
            return Result(False, f"{self._link.scrub(str(exc))}; will keep trying")
        service.succeeded(f"ok, health check {word}")
        if not on:
            self.states.clear()
        if changed:
            self._link.log(logging.INFO, "Consul: health check for service %s switched %s (%s)",
                           service_id, word, ", ".join(c["CheckID"] for c in checks) or "none left")
            self._notify.checks_switched(service_id, on)
        kinds = self._link.settings.check_type if on else "all"
        return Result(True, f"Health check ({kinds}) for service {service_id} is {word} "
                            f"(Consul accepted it)")

    def drop_quietly(self, check_id: str) -> None:
        """Remove one of our checks if it is there; absent is fine (200 on 1.8.7, 404 or a
        500 "Unknown check" on other versions)."""
        try:
            self._link.consul.agent.check.deregister(check_id)
        except ConsulNotFound:
            pass
        except ConsulServerError as exc:
            if "Unknown check" not in str(exc):
                raise

    def note_live(self, checks_by_id: Dict[str, Dict[str, Any]], service_id: str) -> None:
        """The checks' status as the agent reports them (for `discovery show status`)."""
        self.states = {cid: (c.get("Status", ""), c.get("Output", ""))
                       for cid, c in checks_by_id.items() if cid in our_check_ids(service_id)}

    # -- the TTL check ---------------------------------------------------------------------

    def ttl_status(self) -> Tuple[str, str]:
        """(Consul status, output) for Asterisk's state now."""
        try:
            booted, shutting_down = self._host_state()
        except Exception as exc:  # noqa: BLE001 - a host that cannot tell is not booted
            return "warning", f"cannot read Asterisk's state: {exc}"
        return ttl_status(booted, shutting_down, self._link.facts)

    def after_register(self, definition: Dict[str, Any]) -> None:
        """The checks are (re)registered as in `definition`: report the TTL check at once."""
        if _has_ttl_check(definition):
            self._ttl_reported = None  # the output says more than the start
            self._ttl_due = 0.0
        else:
            self._ttl_due = None

    def due(self) -> Optional[float]:
        return self._ttl_due

    def run(self) -> None:
        """Look at Asterisk's state; tell Consul when it changed or the report is due."""
        definition = self.service.definition
        if not (self.service.registered and _has_ttl_check(definition)):
            self._ttl_due = None  # registering schedules it again
            return
        now = time.monotonic()
        state = self.ttl_status()
        interval = ttl_report_interval_s(self._link.settings)
        self._ttl_due = now + min(HOST_POLL_S, interval)
        if state == self._ttl_reported and now < self._ttl_report_due:
            return
        service_id = definition["ID"]
        try:
            self._link.consul.agent.check.update(ttl_check_id(service_id), *state)
        except (ConsulNotFound, ConsulServerError) as exc:
            if isinstance(exc, ConsulServerError) and "TTL" not in str(exc):
                self._note_error(exc)
                return
            # The agent forgot the check (restarted, or someone removed it): register again.
            # Consul 1.8 says so with a 500 "does not have associated TTL".
            self._link.log(logging.WARNING, "Consul: TTL check of %s is gone; re-registering",
                           service_id)
            self.service.register_now()
            return
        except ConsulError as exc:
            self._note_error(exc)
            return  # tried again at the next poll
        if self.ttl_error:
            self._link.log(logging.INFO, "Consul: TTL check reported again")
            self.ttl_error = ""
        if state[0] != (self._ttl_reported or ("",))[0]:
            self._link.log(logging.INFO if state[0] == "passing" else logging.WARNING,
                           "Consul: TTL check of %s is %s: %s", service_id, *state)
        self._ttl_reported = state
        self._ttl_report_due = now + interval
        self.states[ttl_check_id(service_id)] = state

    def _note_error(self, exc: ConsulError) -> None:
        message = self._link.scrub(str(exc))
        if message != self.ttl_error:
            self._link.log(logging.WARNING, "Consul: TTL check not reported: %s", message)
        self.ttl_error = message


def _has_ttl_check(definition: Dict[str, Any]) -> bool:
    ttl_id = ttl_check_id(definition["ID"])
    return any(c["CheckID"] == ttl_id for c in definition.get("Checks") or [])
