"""The one reconciler: what the module wants the agent to hold (wanted.py, a pure function of
the settings, this Asterisk, the operator's choices and the verdict) against what the agent was
last seen to hold; it makes the calls and records the answers. It owns every part and is the
only code that calls them; the parts know none of each other.

    reconciler.jobs            what is due when: Asterisk's state, the service's sync, the checks'
                               reports, the catalog, the KV keys, a reload to retry
    reconciler.change(Change)  an operator's change (maintenance, check, drain): one path
    reconciler.apply(settings) a reload (and a rotated token: the token file is watched)
    reconciler.refresh()       the agent's live view, for `discovery show status`
    reconciler.shutdown(...)   deregister within a budget

It runs on one thread (the worker's, worker.py) and takes its time from link.clock, so unit
tests drive it turn by turn with a clock of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Optional, Tuple

from ..consul import ConsulError, ConsulNotFound, ConsulRequestError
from ..safetext import short
from ..registration import check_id, drain_check_id, drift, meta_problems, ttl_check_id
from ..settings import Settings
from .asterisk import AsteriskWatch, ReadState, VerdictSink
from .catalog import Catalog
from .checks import Checks
from .choices import (BY_OPERATOR, BY_SHUTDOWN, CANCELLED, CHECK, DRAIN, MAINTENANCE,
                      SHUTDOWN_REASON, STARTED, Change, Choices, StopSeen, choose, follow_stop)
from .kvsession import KvSession
from .link import TOKEN_NOT_FOUND, AgentLink
from .maintenance import Maintenance
from .notify import Notifications
from .pending import PendingReload
from .retired import Retired
from .service import ServiceRegistration
from .sip import HasTech, SipWatch
from .status import Result, StatusSnapshot
from .tokenfile import TokenFile
from .wanted import checks_on, registration_body, unwanted_check_ids, wanted_checks, \
    wanted_definition

OUTCOME_LIMIT = 158  # characters of a sync's outcome shown in the status (with "…" and ")")
# The first agent version that takes SuccessBeforePassing / FailuresBeforeCritical in the
# agent API (what Consul's changelog says; 1.8.7 seen taking and honouring both on the HTTP
# check). An agent whose version cannot be read is sent them: a refusal is caught.
THRESHOLDS_SINCE = (1, 8, 1)
_THRESHOLD_FIELDS = ("SuccessBeforePassing", "FailuresBeforeCritical")


def version_at_least(version: str, wanted: Tuple[int, ...]) -> bool:
    """"1.8.7" (or "1.10.0-beta", "v1.9.1+ent") against (1, 8, 1); unreadable: True."""
    numbers = []
    for part in version.lstrip("v").split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            return True
        numbers.append(int(digits))
    return tuple(numbers) >= wanted


@dataclass(frozen=True)
class Job:
    name: str
    due: Callable[[], Optional[float]]
    run: Callable[[], Any]  # returns False when it changed nothing the status shows
    own_retries: bool = False  # schedules its own retries (the worker does not hold it back)


# What each kind of change says once Consul took it: (outcome, message), with {word} and {id}.
_SAID = {
    MAINTENANCE: ("ok, maintenance mode {word}",
                  "Maintenance mode for service {id} is {word} (Consul accepted it)"),
    CHECK: ("ok, health check {word}",
            "Health check ({kinds}) for service {id} is {word} (Consul accepted it)"),
    DRAIN: ("ok, drain {word}", "Drain for service {id} is {word} (Consul accepted it)"),
}


def _owned_checks(kind: str, service_id: str) -> Tuple[str, ...]:
    """The checks a change of this kind adds or removes in place (maintenance owns none:
    Consul makes its check)."""
    if kind == CHECK:
        return check_id(service_id), ttl_check_id(service_id)
    if kind == DRAIN:
        return (drain_check_id(service_id),)
    return ()


class Reconciler:
    def __init__(self, link: AgentLink, notify: Notifications, read_state: ReadState,
                 on_verdict: VerdictSink, *, backoff_initial_s: float, backoff_max_s: float,
                 slow_retry_s: float, forget_stop: Callable[[], None],
                 on_registered: Callable[[Settings], None],
                 on_reloaded: Callable[[Settings], None],
                 on_secret: Callable[[str], None] = lambda token: None,
                 sip_techs: HasTech = lambda tech: False):
        self.link, self.notify = link, notify
        self.choices = Choices()
        self.stop_seen = StopSeen()
        self.drained_at: Optional[float] = None  # wall-clock time a drain reached 0 channels
        self._forget_stop_request = forget_stop  # Host.forget_stop_request
        self._on_registered, self._on_reloaded = on_registered, on_reloaded
        self._on_secret = on_secret  # a rotated token joins the log's masked secrets
        self.thresholds = True  # the agent takes the EID check's thresholds (as far as known)
        self._thresholds_asked: Any = None  # the client whose agent's version was read for it
        self.token_file = TokenFile(link)
        self._rejections_told = 0
        # The last rotation, wall-clock: (first read, in use, registered again with it).
        self.rotation: Tuple[Optional[float], ...] = ()
        self.asterisk = AsteriskWatch(link, read_state, on_verdict)
        self.sip = SipWatch(link, sip_techs)
        self.maintenance = Maintenance(link, notify)
        self.retired = Retired(link, notify)
        self.checks = Checks(link)
        self.service = ServiceRegistration(
            link, self.wanted(), backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s, slow_retry_s=slow_retry_s)
        self.kv = KvSession(link, backoff_initial_s, notify)
        self.catalog = Catalog(link)
        self.pending_reload = PendingReload(self.apply, link.clock)
        service = self.service
        self.jobs = (
            Job("asterisk", self.asterisk.due, self.look_at_asterisk),
            # Before the service: the first registration already carries the SIP verdict.
            Job("sip", self.sip.due, self.look_at_sip),
            Job("service", service.due, self.sync, own_retries=True),
            Job("checks", self.checks.due, self.tell_checks),
            Job("catalog", self.catalog.due,
                lambda: self.catalog.run(service.definition, service.registered)),
            Job("kv", self.kv.due, lambda: self.kv.run(service.registered, service.resync_s())),
            Job("reload", self.pending_reload.due, self.pending_reload.run),
            Job("token", self._token_due, self.look_at_token),
        )

    def wanted(self, settings: Optional[Settings] = None) -> Dict[str, Any]:
        return wanted_definition(settings or self.link.settings, self.link.facts, self.choices,
                                 thresholds=self.thresholds)

    def failed(self, exc: BaseException, job: Optional[Job] = None) -> None:
        """A job (or an operator's command: no job) raised. The service's sync schedules its
        retry; another job's failure is noted (logged once per kind) without moving it."""
        if job is None or job.own_retries:
            self.service.failed(exc)
        else:
            self.link.note_error(exc)

    # -- Asterisk ---------------------------------------------------------------------------

    def look_at_asterisk(self) -> bool:
        """When due: Asterisk's state; a stop asked for starts a drain, a cancelled one ends
        it; a drain's channels are followed until they reach 0."""
        before = self._seen()
        look = self.asterisk.look(self.choices.drain)
        if look.verdict_changed:
            self.checks.verdict_changed(self.asterisk.verdict)
        self.stop_seen, stop = follow_stop(self.stop_seen, look.state)
        if stop == CANCELLED:
            self._stop_cancelled()
        elif stop == STARTED and self.link.settings.drain_on_shutdown and not self.choices.drain:
            self.link.log(logging.INFO, "Consul: Asterisk is stopping: draining service %s",
                          self.service.definition["ID"])
            self.change(Change(DRAIN, True, SHUTDOWN_REASON, BY_SHUTDOWN))
        self._note_channels(look.state.channels)
        return self._seen() != before

    def look_at_sip(self) -> bool:
        """When due (about once a second): the SIP stack; its health is one more input of the
        verdict. Not on any Asterisk thread: the probe may wait up to its timeout."""
        if not self.sip.look():
            return False
        if self.asterisk.rejudge(self.sip.health):
            self.checks.verdict_changed(self.asterisk.verdict)
        return True

    def _seen(self) -> tuple:
        asterisk = self.asterisk
        return (asterisk.state, asterisk.busy.busy, asterisk.verdict, self.choices.drain,
                self.drained_at)

    def _stop_cancelled(self) -> None:
        self._forget_stop()
        if self.choices.drain and self.choices.drain_by == BY_SHUTDOWN:
            self.link.log(logging.INFO, "Consul: Asterisk's stop was cancelled: ending the "
                          "shutdown drain of service %s", self.service.definition["ID"])
            self.change(Change(DRAIN, False))

    def _forget_stop(self) -> None:
        self.stop_seen = StopSeen()
        self._forget_stop_request()

    def _note_channels(self, channels: int) -> None:
        if self.choices.drain and channels == 0 and self.drained_at is None:
            self.drained_at = self.link.clock.time()
            service_id = self.service.definition["ID"]
            self.link.log(logging.INFO, "Consul: service %s is drained: no active channels",
                          service_id)
            self.notify.drained(service_id, self.choices.drain_reason,
                                self.choices.drain_since or 0.0)

    # -- the service ------------------------------------------------------------------------

    def sync(self) -> None:
        """When due (start, retry, resync): make the agent hold what we want."""
        link, service = self.link, self.service
        link.check_stop()
        if not service.needs_register:
            service_id = service.definition["ID"]
            agent_service, agent_checks = service.agent_view()
            self.maintenance.learn(agent_checks, service_id)
            differences = drift(service.definition, agent_service, agent_checks)
            if differences:
                if agent_service is None:
                    self._lost()
                link.log(logging.WARNING, "Consul: service %s drifted (%s); re-registering",
                         service_id, "; ".join(differences))
                service.mark_needs_register()
                outcome = short("ok, re-registered (" + "; ".join(differences), OUTCOME_LIMIT) + ")"
            elif self.maintenance.lost(self.choices.maintenance):
                link.log(logging.WARNING, "Consul: maintenance mode of %s was lost; "
                         "setting it again", service_id)
                outcome = "ok, maintenance mode set again (it was lost)"
            else:
                outcome = "ok, in sync"
        else:
            outcome = "ok, registered"
        self._learn_thresholds()
        self._converge()
        service.succeeded(outcome)
        self.kv.sync_soon(verify=True)  # someone may have edited or deleted our keys

    def _converge(self, in_place: Tuple[str, ...] = ()) -> None:
        """Register if needed (else put the checks `in_place` names as wanted), then
        maintenance, then clean up what a reload left behind."""
        for attempt in (1, 2):
            try:
                if self.service.needs_register:
                    self._register()
                elif in_place and self.service.registered:
                    self._put_checks(in_place)
                self.maintenance.converge(self.service.definition, self.choices.maintenance,
                                          self.choices.maintenance_reason)
                break
            except ConsulNotFound:
                # The agent forgot the service between two calls (it restarted): once more.
                if attempt == 2:
                    raise
                self._lost()
        self.retired.clean_up()

    def _register(self) -> None:
        service, verdict = self.service, self.asterisk.verdict
        keep_maintenance = self.maintenance.kept_on_register(self.choices.maintenance)
        try:
            service.register(registration_body(service.definition, verdict),
                             replace_checks=not keep_maintenance)
        except ConsulRequestError as exc:
            if not (self.thresholds and any(f in str(exc) for f in _THRESHOLD_FIELDS)):
                raise
            # An agent that does not know the fields: registered without them, never refused.
            self._set_thresholds(False, "it refused them: " + self.link.scrub(str(exc)))
            service.register(registration_body(service.definition, verdict),
                             replace_checks=not keep_maintenance)
        definition = service.definition
        if self.rotation and self.rotation[2] is None:
            self.rotation = (*self.rotation[:2], self.link.clock.time())
        if not keep_maintenance:
            self.maintenance.registered_without_it()
        else:
            for stale in unwanted_check_ids(definition):
                self.checks.drop_quietly(stale)
        self.checks.registered(definition, verdict)
        self.kv.sync_soon()
        self.catalog.after_register()
        self._on_registered(self.link.settings)
        self.notify.registered(definition, self.choices.maintenance)

    def _put_checks(self, owned: Tuple[str, ...]) -> None:
        """The checks of `owned` as the definition wants them, the service left as it is (no
        re-registration, no moment without it)."""
        definition = self.service.definition
        wanted = [c for c in wanted_checks(definition) if c["CheckID"] in owned]
        self.checks.put(dict(definition, Checks=wanted), self.asterisk.verdict)
        for unwanted in unwanted_check_ids(definition):
            if unwanted in owned:
                self.link.check_stop()
                self.checks.drop_quietly(unwanted)
        if check_id(definition["ID"]) in owned:
            self.checks.registered(definition, self.asterisk.verdict)

    def _lost(self) -> None:
        self.service.lost()
        self.catalog.forget()

    def tell_checks(self) -> None:
        service = self.service
        if not self.checks.tell(service.definition, service.registered, self.asterisk.verdict):
            service.register_now()

    def wake(self, reason: str, agent_back: bool) -> None:
        self.service.wake(reason, agent_back)

    # -- the EID check's thresholds ------------------------------------------------------------

    def _learn_thresholds(self) -> None:
        """Before a registration: does this agent take SuccessBeforePassing and
        FailuresBeforeCritical? Its version is read once per client, only when they are set."""
        settings, link = self.link.settings, self.link
        if not (settings.check_success_before_passing or settings.check_failures_before_critical):
            return
        if self._thresholds_asked is link.consul:
            return
        version = link.version_or_blank()
        self._thresholds_asked = link.consul
        if version and not version_at_least(version, THRESHOLDS_SINCE):
            self._set_thresholds(False, f"Consul {version} does not know them (1.8.1 or newer)")
        else:
            self._set_thresholds(True)

    def _set_thresholds(self, taken: bool, why: str = "") -> None:
        if taken == self.thresholds:
            return
        self.thresholds = taken
        if not taken:
            self.link.log(logging.WARNING, "Consul: check_success_before_passing and "
                          "check_failures_before_critical are left out of the EID check: %s; "
                          "a single failed poll turns it critical", why)
        self.service.redefine(self.wanted())

    # -- the token ------------------------------------------------------------------------------

    def _token_due(self) -> Optional[float]:
        if self.link.token_rejections != self._rejections_told:
            return 0.0
        return self.token_file.due()

    def look_at_token(self) -> bool:
        """When due: say at once that Consul no longer knows the token in use (and look at
        the file now); about once a second, a new token in the token file is put to use."""
        link, changed = self.link, False
        if link.token_rejections != self._rejections_told:
            self._rejections_told = link.token_rejections
            self._token_rejected()
            changed = True
        due = self.token_file.due()
        if due is not None and link.clock.monotonic() >= due:
            token = self.token_file.look()
            if token is not None:
                self._rotate(token)
                changed = True
        return changed

    def _token_rejected(self) -> None:
        service_id = self.service.definition["ID"]
        if self.token_file.path:
            then = "reading the token file again now, and after each change of it"
        else:
            then = ("the token comes from the config or the environment: a reload with a live "
                    "token is needed")
        self.link.log(logging.WARNING, "Consul: the agent does not know the ACL token in use "
                      "(403 ACL not found: deleted or expired); service %s cannot be kept in "
                      "sync with it; %s", service_id, then)
        self.notify.token_rejected(service_id, TOKEN_NOT_FOUND)
        self.token_file.look_now()

    def _rotate(self, token: str) -> None:
        """A new token in the token file: used for every later call, and the service and its
        checks registered again with it in place (the agent syncs each with the token it was
        registered with), so that the old token can be deleted."""
        link = self.link
        self._on_secret(token)
        link.keep_secret(token)
        link.log(logging.INFO, "Consul: the token file holds a new token: using it, and "
                 "registering service %s again with it", self.service.definition["ID"])
        self.rotation = (self.token_file.seen_at, None, None)
        self.apply(replace(link.settings, token=token), rotated=True)
        if link.settings.token == token:
            self.rotation = (self.rotation[0], link.clock.time(), None)

    # -- an operator's change: maintenance, check, drain ----------------------------------------

    def change(self, change: Change, abandoned: bool = False) -> Result:
        """Fold the change into the choices and make the agent hold what follows. `abandoned`:
        its caller has answered "will keep trying"; the wish stands and the next sync (on the
        retry schedule) carries it out."""
        link, service = self.link, self.service
        before = self.choices
        self.choices = choose(before, change, link.clock.time())
        if change.kind == DRAIN and change.on and not before.drain:
            self.drained_at = None
        if change.kind == MAINTENANCE:
            self.maintenance.asked()
        definition = self.wanted()
        if abandoned:
            service.redefine(definition, soon=True)
            service.sync_soon()
            return Result(False, "queued")
        service_id = definition["ID"]
        owned = _owned_checks(change.kind, service_id)
        redefined = service.redefine(definition)
        try:
            self._converge(in_place=owned)
        except ConsulError as exc:
            if owned:
                service.mark_needs_register()  # the next attempt re-registers in place with them
            service.failed(exc)
            return Result(False, f"{link.scrub(str(exc))}; will keep trying")
        word = {MAINTENANCE: "set" if change.on else "unset"}.get(change.kind,
                                                               "on" if change.on else "off")
        outcome, message = _SAID[change.kind]
        service.succeeded(outcome.format(word=word))
        self._changed(change, service_id, redefined)
        kinds = link.settings.check_type if change.on else "all"
        return Result(True, message.format(word=word, id=service_id, kinds=kinds))

    def _changed(self, change: Change, service_id: str, redefined: bool) -> None:
        """What follows a change Consul took: the log line and the AMI event of its kind
        (maintenance says its own, once Consul shows it)."""
        link, word = self.link, "on" if change.on else "off"
        if change.kind == CHECK:
            if not change.on:
                self.checks.states.clear()
            if redefined:
                link.log(logging.INFO, "Consul: health check for service %s switched %s (%s)",
                         service_id, word, ", ".join(c["CheckID"] for c in wanted_checks(
                             self.service.definition)) or "none left")
                self.notify.checks_switched(service_id, change.on)
        elif change.kind == DRAIN:
            if not change.on and change.by == BY_OPERATOR and self.stop_seen.requested:
                # The operator's word that the stop is off: 'when convenient' leaves no other.
                self._forget_stop()
            reason = self.choices.drain_reason
            link.log(logging.INFO, "Consul: drain for service %s is %s%s", service_id, word,
                     f" ({reason})" if change.on and reason else "")
            self.notify.drain_changed(service_id, change.on, reason)
            if change.on:
                self._note_channels(self.asterisk.read().channels)  # now, not at the last look

    # -- a reload ---------------------------------------------------------------------------

    def apply(self, settings: Settings, rotated: bool = False) -> None:
        """A reload (or, `rotated`, a new token from the token file): all or nothing. What can
        fail comes before anything changes; if it fails, the running settings stay and the
        reload is tried again later."""
        link, service = self.link, self.service
        old = link.settings
        if settings == old:
            self.pending_reload.clear()  # this one replaces any earlier one
            return
        agent_changed = settings.transport_key() != old.transport_key()
        # Only the token: the same agent, its catalog view still holds.
        token_only = replace(settings, token=old.token).transport_key() == old.transport_key()
        try:
            client = link.client_for(settings) if agent_changed else None
        except Exception as exc:  # noqa: BLE001 - whatever it is, nothing changed
            reason = link.scrub(f"{type(exc).__name__}: {exc}")
            news = self.pending_reload.failed(settings, reason)
            link.log(logging.ERROR if news else logging.DEBUG, "Consul: reloaded settings not "
                     "applied, the running ones stay in use (tried again): %s", reason)
            return
        self.pending_reload.clear()
        if self.choices.checks is not None and settings.check_key() != old.check_key():
            link.log(logging.INFO, "Consul: the check options changed: 'discovery set check "
                     "%s' no longer applies; the config decides",
                     "on" if self.choices.checks else "off")
            self.choices = replace(self.choices, checks=None)
        definition = self.wanted(settings)
        moved = settings.agent_url != old.agent_url or settings.service_id != old.service_id
        self.kv.want(settings, service.registered)
        if moved and service.sent:
            # Deregistered only once the new registration is in: never a moment without one.
            self.retired.add(link.consul, old.service_id, old.name,
                             service.definition["Address"], service.definition["Port"])
        link.reload(settings, client, keep_old=self.retired.holds(link.consul))
        self._on_reloaded(settings)
        if (settings.sip_check, settings.sip_transports, settings.discovery_port) != \
                (old.sip_check, old.sip_transports, old.discovery_port):
            self.sip.reloaded()
        if moved:
            service.moved()
            self.maintenance.forget_agent_view()
        elif settings.token != old.token:
            self.maintenance.retoken()  # its check was made with the old token
        if not rotated:
            link.log(logging.INFO, "Consul: settings reloaded")
            for problem in meta_problems(settings):
                link.log(logging.WARNING, "Consul: %s", problem)
        if moved or (agent_changed and not token_only):
            self.catalog.forget()  # looked for again once registered there
        service.reloaded(definition, elsewhere=moved or agent_changed)

    # -- status and stop --------------------------------------------------------------------

    def refresh(self) -> None:
        """Health and checks as the agent reports them now (for `discovery show status`), and
        the catalog for a registration that stands."""
        link, service = self.link, self.service
        service_id = service.definition["ID"]
        link.check_stop()
        try:
            health, checks = link.consul.agent.health.service_by_id(service_id)
            link.seen()
            link.version_or_blank()
        except ConsulError as exc:
            link.failed(exc)
            return
        service.health = health
        by_id = {str(c.get("CheckID", "")): c for c in checks}
        self.checks.note_live(by_id, service_id)
        if health == "unknown":
            if service.registered:
                link.log(logging.WARNING, "Consul: the agent no longer knows service %s; "
                         "re-registering", service_id)
            self._lost()
        else:
            self.maintenance.learn(by_id, service_id)
        if service.needs_register:
            service.sync_now()  # the agent answers: no reason to wait for the backoff
        elif service.registered:
            self.catalog.look(service.definition)

    def shutdown(self, deregister: bool, deadline: float) -> None:
        """At unload: within what is left of the caller's budget (monotonic `deadline`), but
        never so little that a healthy local agent could not answer."""
        link, clock = self.link, self.link.clock
        timeout_s = link.settings.timeout_s

        def budget() -> float:
            return min(timeout_s, max(deadline - clock.monotonic(), min(0.1, timeout_s)))

        if deregister:
            self._token_before_leaving()
            definition = self.service.definition
            if self.service.deregister(budget()):
                self.catalog.forget()
                self.notify.deregistered(definition["ID"], definition["Name"],
                                         definition["Address"], definition["Port"],
                                         self.choices.maintenance)
            if link.current is not None:
                self.kv.remove(budget())
            if self.retired and deadline > clock.monotonic():
                try:
                    self.retired.deregister(budget_s=max(deadline - clock.monotonic(), 0.05),
                                            interruptible=False)
                except ConsulError as exc:
                    link.log(logging.WARNING, "Consul: could not deregister an old "
                             "service: %s", link.scrub(str(exc)))
        if self.notify.pending:
            self.notify.flush(budget(), interruptible=False)

    def _token_before_leaving(self) -> None:
        """The deregistration goes with the token the file holds now: the one in use may be
        deleted already (rotated without the minute the watch needs, or out of order)."""
        link = self.link
        if not self.token_file.path or link.current is None:
            return
        token = self.token_file.look(settle=False)
        if token is None:
            return
        try:
            client = link.client_for(replace(link.settings, token=token))
        except Exception as exc:  # noqa: BLE001 - the old token is tried all the same
            link.log(logging.WARNING, "Consul: the token file's new token cannot be used to "
                     "deregister: %s", link.scrub(f"{type(exc).__name__}: {exc}"))
            return
        self._on_secret(token)
        link.reload(replace(link.settings, token=token), client,
                    keep_old=self.retired.holds(link.consul))
        link.log(logging.INFO, "Consul: the token file holds a new token: deregistering with it")

    def snapshot(self, running: bool) -> StatusSnapshot:
        """What `discovery show status` shows, from each part's own view."""
        link, choices, service = self.link, self.choices, self.service
        settings, definition = link.settings, service.definition
        shown = [c for c in wanted_checks(definition)
                 if c["CheckID"] != drain_check_id(definition["ID"])]
        asterisk = self.asterisk
        return StatusSnapshot(
            agent_url=settings.agent_url, running=running, **service.shown(),
            agent_reachable=link.reachable, agent_version=link.version,
            last_error=link.last_error, instance=link.facts.instance,
            maintenance=choices.maintenance, maintenance_reason=choices.maintenance_reason,
            maintenance_in_agent=self.maintenance.in_agent,
            checks_on=checks_on(settings, choices),
            checks_set_by="config" if choices.checks is None else "discovery set check",
            check_type=settings.check_type,
            check_problem=settings.check_problem if settings.http_check else "",
            checks=tuple(("ttl" if "TTL" in c else "http", c["CheckID"],
                          *self.checks.states.get(c["CheckID"], ("", ""))) for c in shown),
            ttl_error=self.checks.ttl_error, **self.kv.shown(), events=settings.events,
            **self.notify.shown(), **self.catalog.shown(),
            drain=choices.drain, drain_reason=choices.drain_reason, drain_by=choices.drain_by,
            drain_since=choices.drain_since, drained_at=self.drained_at,
            channels=asterisk.state.channels, busy_channels=settings.busy_channels,
            busy=asterisk.busy.busy, busy_since=asterisk.busy_since,
            verdict=asterisk.verdict.output,
            token_from=_token_from(settings), token_read_at=self.token_file.read_at,
            token_standing=link.token_standing, token_problem=self.token_file.problem,
            token_rotation=self.rotation, **self._sip_shown(),
        )

    def _sip_shown(self) -> Dict[str, Any]:
        sip, last = self.sip, self.sip.last
        return dict(sip_check=self.link.settings.sip_check, sip_on=sip.on,
                    sip_status=sip.health.status if sip.health else "",
                    sip_reason=sip.health.reason if sip.health else "",
                    sip_last=last.reason if last else "",
                    sip_rtt_s=last.rtt_s if last else None, sip_probed_at=sip.probed_at,
                    sip_since=sip.since, sip_drivers=sip.drivers)


def _token_from(settings: Settings) -> str:
    """Where the token in use came from, for the status: a file (watched), the environment or
    the config; "" when no token is set."""
    if settings.token_file:
        where = ("env CONSUL_HTTP_TOKEN_FILE" if settings.sources.get("token_file", "")
                 .startswith("env") else "token_file")
        return f"file {settings.token_file} ({where}, watched)"
    if not settings.token:
        return ""
    source = settings.sources.get("token", "")
    return "env CONSUL_HTTP_TOKEN" if source.startswith("env") else f"config ({source or 'token'})"
