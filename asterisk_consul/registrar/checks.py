"""The health checks: on or off, and what they say.

`discovery set check on|off` adds or removes the checks on their own (the service is not
registered again) and lasts until the check options in the config change. What the checks say
follows the verdict on Asterisk's state (health.py, looked at every HOST_POLL_S): the TTL check
is reported at once when it changes and at least every third of the TTL, and every check is
registered with the status that is true at that moment. Consul keeps an existing check's
status through any re-registration, so when the HTTP check crosses the critical line (Asterisk
fully booted, or shutting down) it is registered anew at once instead of waiting for Consul's
next poll; passing and warning (busy) are left to that poll: no write.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from ..consul import ConsulError, ConsulNotFound, ConsulServerError
from ..health import Verdict
from ..registration import (check_id, drain_check_id, our_check_ids, service_definition,
                            standalone_check, ttl_check_id, ttl_report_interval_s)
from ..settings import Settings
from .link import AgentLink
from .notify import Notifications
from .status import Result

if TYPE_CHECKING:
    from .drain import Drain
    from .service import ServiceRegistration


class Checks:
    def __init__(self, link: AgentLink, notify: Notifications, verdict: Verdict):
        self._link = link
        self._notify = notify
        self.verdict = verdict  # the latest, from the Asterisk part
        self.service: "ServiceRegistration"  # set by the Registrar once all parts exist
        self.drain: "Drain"
        # discovery set check on|off: None = as the config says; kept until check_key changes
        self.override: Optional[bool] = None
        self.states: Dict[str, Tuple[str, str]] = {}  # check ID -> (status, output)
        self.ttl_error = ""
        self._ttl_due: Optional[float] = None
        self._ttl_report_due = 0.0
        self._ttl_reported: Optional[Tuple[str, str]] = None
        self._http_shown = ""  # the HTTP check's status the agent was last told ("": unknown)
        self._http_push = False

    # -- what is registered ----------------------------------------------------------------

    def definition(self, settings: Settings) -> Dict[str, Any]:
        """The service definition, with the checks the config or the operator wants (and the
        drain check while draining)."""
        return service_definition(settings, self._link.facts, self.override, self.drain.notes())

    @property
    def on(self) -> bool:
        return self._link.settings.check if self.override is None else self.override

    def status_for(self, check: Dict[str, Any]) -> str:
        """The status a check is registered with: what is true now."""
        if check["CheckID"] == drain_check_id(self._link.settings.service_id):
            return check["Status"]  # critical: that is what it is for
        return self.verdict.ttl_status if "TTL" in check else self.verdict.http_check_status

    def verdict_changed(self, verdict: Verdict) -> None:
        """A new verdict: the TTL check is reported at once; the HTTP check registered anew
        when it crosses the critical line."""
        self.verdict = verdict
        if self._ttl_due is not None:
            self._ttl_due = 0.0
        critical = verdict.http_check_status == "critical"
        if self._http_shown and critical != (self._http_shown == "critical"):
            self._http_push = True

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
                    consul.agent.check.register(standalone_check(check, service_id,
                                                                 self.status_for(check)))
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

    # -- what the checks say ----------------------------------------------------------------

    def after_register(self, definition: Dict[str, Any]) -> None:
        """The checks are (re)registered as in `definition`, with the status true now: report
        the TTL check at once (its output says more than the start)."""
        self._http_shown = self.verdict.http_check_status if _has_check(
            definition, check_id(definition["ID"])) else ""
        self._http_push = False
        if _has_check(definition, ttl_check_id(definition["ID"])):
            self._ttl_reported = None
            self._ttl_due = 0.0
        else:
            self._ttl_due = None

    def due(self) -> Optional[float]:
        return 0.0 if self._http_push else self._ttl_due

    def run(self) -> None:
        if self._http_push:
            self._push_http_status()
        if self._ttl_due is not None and time.monotonic() >= self._ttl_due:
            self._report_ttl()

    def _push_http_status(self) -> None:
        """Tell the agent the HTTP check's new status now (Consul's next poll would take up to
        check_interval). Consul keeps a registered check's status, so it goes and comes back
        with the new one: for those milliseconds the service has one check less, which never
        shows it healthier than either status would."""
        self._http_push = False
        definition = self.service.definition
        http = next((c for c in definition.get("Checks") or []
                     if c["CheckID"] == check_id(definition["ID"])), None)
        if http is None or not self.service.registered:
            return
        status = self.verdict.http_check_status
        try:
            self.drop_quietly(http["CheckID"])
            self._link.consul.agent.check.register(standalone_check(http, definition["ID"], status))
        except ConsulError as exc:
            self._link.log(logging.WARNING, "Consul: the EID check's status %s not pushed: %s "
                           "(Consul's next poll will see it)", status, self._link.scrub(str(exc)))
            return
        self._http_shown = status
        self._link.log(logging.INFO, "Consul: EID check of %s is %s: %s", definition["ID"],
                       status, self.verdict.output)

    def _report_ttl(self) -> None:
        """Tell Consul the TTL check's state when it changed or the report is due."""
        definition = self.service.definition
        if not (self.service.registered and _has_check(definition, ttl_check_id(definition["ID"]))):
            self._ttl_due = None  # registering schedules it again
            return
        now = time.monotonic()
        state = (self.verdict.ttl_status, self.verdict.output)
        interval = ttl_report_interval_s(self._link.settings)
        self._ttl_due = now + interval
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


def _has_check(definition: Dict[str, Any], wanted_id: str) -> bool:
    return any(c["CheckID"] == wanted_id for c in definition.get("Checks") or [])
