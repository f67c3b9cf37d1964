"""What the health checks say, told to the agent: the TTL check's reports and the HTTP check's
status when it crosses the critical line; and the checks' status as the agent last showed them.

What the checks say follows the verdict on Asterisk's state (health.py, looked at every
HOST_POLL_S): the TTL check is reported at once when it changes and at least every third of the
TTL. Consul keeps an existing check's status through any re-registration, so when the HTTP check
crosses the critical line (Asterisk fully booted, or shutting down) it is registered anew at
once instead of waiting for Consul's next poll; passing and warning (busy) are left to that
poll: no write. Which checks exist is the definition's business (wanted.py).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

from ..consul import ConsulError, ConsulNotFound, ConsulServerError
from ..health import Verdict
from ..registration import check_id, our_check_ids, standalone_check, ttl_check_id, \
    ttl_report_interval_s
from .link import AgentLink
from .wanted import check_status, has_http_check, has_ttl_check, wanted_checks


class Checks:
    def __init__(self, link: AgentLink):
        self._link = link
        self.states: Dict[str, Tuple[str, str]] = {}  # check ID -> (status, output)
        self.ttl_error = ""
        self._ttl_due: Optional[float] = None
        self._ttl_report_due = 0.0
        self._ttl_reported: Optional[Tuple[str, str]] = None
        self._http_shown = ""  # the HTTP check's status the agent was last told ("": unknown)
        self._http_push = False

    # -- calls ------------------------------------------------------------------------------

    def put(self, definition: Dict[str, Any], verdict: Verdict) -> None:
        """Each check of the definition registered on its own (the service stays as it is),
        with the status true now."""
        service_id = definition["ID"]
        for check in wanted_checks(definition):
            self._link.check_stop()
            self._link.consul.agent.check.register(
                standalone_check(check, service_id, check_status(check, verdict, service_id)))

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

    # -- what the agent shows ---------------------------------------------------------------

    def note_live(self, checks_by_id: Dict[str, Dict[str, Any]], service_id: str) -> None:
        """The checks' status as the agent reports them (for `discovery show status`)."""
        self.states = {cid: (c.get("Status", ""), c.get("Output", ""))
                       for cid, c in checks_by_id.items() if cid in our_check_ids(service_id)}

    # -- what the checks say ----------------------------------------------------------------

    def registered(self, definition: Dict[str, Any], verdict: Verdict) -> None:
        """The checks are (re)registered as in `definition`, with the status true now: report
        the TTL check at once (its output says more than the start)."""
        self._http_shown = verdict.http_check_status if has_http_check(definition) else ""
        self._http_push = False
        if has_ttl_check(definition):
            self._ttl_reported = None
            self._ttl_due = 0.0
        else:
            self._ttl_due = None

    def verdict_changed(self, verdict: Verdict) -> None:
        """A new verdict: the TTL check is reported at once; the HTTP check registered anew
        when it crosses the critical line."""
        if self._ttl_due is not None:
            self._ttl_due = 0.0
        critical = verdict.http_check_status == "critical"
        if self._http_shown and critical != (self._http_shown == "critical"):
            self._http_push = True

    def due(self) -> Optional[float]:
        return 0.0 if self._http_push else self._ttl_due

    def tell(self, definition: Dict[str, Any], registered: bool, verdict: Verdict) -> bool:
        """When due: push the HTTP check's status, report the TTL check. False when the agent
        lost the TTL check (the service is to be registered again)."""
        if self._http_push:
            self._push_http_status(definition, registered, verdict)
        if self._ttl_due is not None and self._link.clock.monotonic() >= self._ttl_due:
            return self._report_ttl(definition, registered, verdict)
        return True

    def _push_http_status(self, definition: Dict[str, Any], registered: bool,
                          verdict: Verdict) -> None:
        """Tell the agent the HTTP check's new status now (Consul's next poll would take up to
        check_interval). Consul keeps a registered check's status, so it goes and comes back
        with the new one: for those milliseconds the service has one check less, which never
        shows it healthier than either status would."""
        self._http_push = False
        http = next((c for c in wanted_checks(definition)
                     if c["CheckID"] == check_id(definition["ID"])), None)
        if http is None or not registered:
            return
        status = verdict.http_check_status
        try:
            self.drop_quietly(http["CheckID"])
            self._link.consul.agent.check.register(standalone_check(http, definition["ID"], status))
        except ConsulError as exc:
            self._link.log(logging.WARNING, "Consul: the EID check's status %s not pushed: %s "
                           "(Consul's next poll will see it)", status, self._link.scrub(str(exc)))
            return
        self._http_shown = status
        self._link.log(logging.INFO, "Consul: EID check of %s is %s: %s", definition["ID"],
                       status, verdict.output)

    def _report_ttl(self, definition: Dict[str, Any], registered: bool, verdict: Verdict) -> bool:
        """Tell Consul the TTL check's state when it changed or the report is due."""
        if not (registered and has_ttl_check(definition)):
            self._ttl_due = None  # registering schedules it again
            return True
        now = self._link.clock.monotonic()
        state = (verdict.ttl_status, verdict.output)
        interval = ttl_report_interval_s(self._link.settings)
        self._ttl_due = now + interval
        if state == self._ttl_reported and now < self._ttl_report_due:
            return True
        service_id = definition["ID"]
        try:
            self._link.consul.agent.check.update(ttl_check_id(service_id), *state)
        except (ConsulNotFound, ConsulServerError) as exc:
            if isinstance(exc, ConsulServerError) and "TTL" not in str(exc):
                self._note_error(exc)
                return True
            # The agent forgot the check (restarted, or someone removed it): register again.
            # Consul 1.8 says so with a 500 "does not have associated TTL".
            self._link.log(logging.WARNING, "Consul: TTL check of %s is gone; re-registering",
                           service_id)
            return False
        except ConsulError as exc:
            self._note_error(exc)
            return True  # tried again at the next poll
        if self.ttl_error:
            self._link.log(logging.INFO, "Consul: TTL check reported again")
            self.ttl_error = ""
        if state[0] != (self._ttl_reported or ("",))[0]:
            self._link.log(logging.INFO if state[0] == "passing" else logging.WARNING,
                           "Consul: TTL check of %s is %s: %s", service_id, *state)
        self._ttl_reported = state
        self._ttl_report_due = now + interval
        self.states[ttl_check_id(service_id)] = state
        return True

    def _note_error(self, exc: ConsulError) -> None:
        message = self._link.scrub(str(exc))
        if message != self.ttl_error:
            self._link.log(logging.WARNING, "Consul: TTL check not reported: %s", message)
        self.ttl_error = message
