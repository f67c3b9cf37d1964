"""The one owner of this module's Consul state, and the only place that talks to Consul.

All Consul I/O happens on one worker thread ("consul-registrar"). Asterisk's threads talk to
it through a command queue and never wait longer than the bound they pass in:

    registrar = Registrar(settings, HostFacts(eid, version), on_event)
    registrar.start()                              # returns at once
    registrar.set_maintenance(True, "upgrade", 2)  # -> Result(ok, message)
    registrar.status(1.0)                          # -> StatusSnapshot
    registrar.apply(new_settings)                  # reload; returns at once
    registrar.stop()                               # deregisters (bounded), joins the thread

The worker registers, retries with capped exponential backoff while Consul is unreachable,
and every resync_interval re-registers in place if the agent's view drifted (agent restarted,
someone deregistered us, maintenance lost). It never deregisters to refresh.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import sys
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .consul import (Consul, ConsulError, ConsulNotFound, ConsulPermissionDenied,
                     ConsulRequestError, ConsulServerError, ConsulUnreachable)
from .kv import KvConflict, KvPublisher
from .registration import (HostFacts, drift, maintenance_check_id, meta_problems,
                           our_check_ids, service_definition, standalone_check, ttl_check_id,
                           ttl_report_interval_s, ttl_status)
from .settings import Settings, parse_go_duration

log = logging.getLogger(__name__)

EventSink = Callable[[str, List[Tuple[str, str]]], None]
HostState = Callable[[], Tuple[bool, bool]]  # (fully booted, shutting down); cheap, no I/O

WORKER_THREAD_NAME = "consul-registrar"
DEFAULT_RESYNC_S = 30.0
RETIRED_ATTEMPTS = 10  # tries to deregister what a reload left at another ID or agent
MAX_PENDING_EVENTS = 16  # Consul user events waiting for the end of the current job
HOST_POLL_S = 1.0  # how often the TTL check looks at Asterisk's state (no I/O when unchanged)
KV_RETRY_MAX_S = 10.0


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str


@dataclass(frozen=True)
class StatusSnapshot:
    """What the module knows about its registration. Times are time.time() seconds."""

    agent_url: str
    service_id: str
    service_name: str
    address: str
    port: int
    running: bool = False
    agent_reachable: Optional[bool] = None  # None: not tried yet
    agent_version: str = ""
    registered: bool = False
    registered_since: Optional[float] = None
    last_error: str = ""
    maintenance: bool = False  # what we want (and keep re-applying)
    maintenance_reason: str = ""
    maintenance_in_agent: Optional[bool] = None  # what the agent last reported
    health: str = ""  # aggregated: passing, warning, critical, unknown ("" = not fetched)
    checks_on: bool = False
    checks_set_by: str = "config"  # or "discovery set check" (kept until the check config changes)
    check_type: str = "http"
    # (kind "http"/"ttl", check ID, status, output) of each check we register
    checks: Tuple[Tuple[str, str, str, str], ...] = ()
    ttl_error: str = ""
    kv_prefix: str = ""
    kv_keys: Tuple[Tuple[str, str], ...] = ()  # (key, value) Consul holds for us
    kv_wanted: int = 0
    kv_session: str = ""
    kv_renewed: Optional[float] = None
    kv_error: str = ""
    last_sync: Optional[float] = None
    last_sync_result: str = ""
    events: bool = False  # Consul user events enabled
    events_fired: int = 0
    events_failed: int = 0
    last_event: str = ""  # "<name> at <time>" of the last one Consul took
    last_event_error: str = ""  # why the last one that failed did
    stale: bool = False  # True: the worker did not answer in time; this is the cached view


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _name_native_thread(name: str) -> None:
    """Give the worker its name in /proc/<pid>/task/*/comm and `top -H` (Python does so
    itself from 3.14 on). Linux keeps 15 bytes. Best effort: nothing depends on it."""
    if sys.version_info >= (3, 14) or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, ctypes.c_char_p(name.encode("ascii", "replace")[:15]), 0, 0, 0)  # PR_SET_NAME
    except Exception:  # noqa: BLE001
        pass


def _maintenance_guard_id(service_id: str) -> str:
    return f"_asterisk_maintenance_guard:{service_id}"


class _Stopping(Exception):
    """Raised between two Consul calls once stop() was asked: abandon the current job."""


@dataclass
class _Command:
    kind: str  # "apply", "maintenance", "checks", "status", "stop"
    args: Tuple[Any, ...]
    future: "Future[Any]"
    # Set by a caller that stopped waiting: the worker records the intent (maintenance) or
    # drops the job (status) instead of spending another Consul timeout on nobody.
    abandoned: bool = False


@dataclass
class _Retired:
    """A registration left behind by a reload (other ID or other agent), to deregister."""

    consul: Consul
    service_id: str
    name: str
    attempts: int = 0
    address: str = ""
    port: int = 0


class Registrar:
    def __init__(self, settings: Settings, facts: HostFacts, on_event: EventSink, *,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 slow_retry_s: float = 60.0, consul_factory: Callable[[Settings], Consul] = Consul,
                 host_state: HostState = lambda: (True, False)):
        self._on_event = on_event
        self._facts = facts
        self._host_state = host_state
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._slow_retry_s = slow_retry_s
        self._consul_factory = consul_factory

        self._commands: "queue.Queue[_Command]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lifecycle = threading.Lock()
        self._stop_requested = threading.Event()
        self._silenced = threading.Event()  # set when stop() returns: no events, no logs

        # Everything below is the worker's alone once start() has run.
        self._settings = settings
        self._definition = service_definition(settings, facts)
        self._consul: Optional[Consul] = None
        self._need_register = True
        self._maybe_registered = False  # a register call was sent (it may have landed)
        self._registered = False
        self._registered_since: Optional[float] = None
        self._maintenance_wanted = False
        self._maintenance_reason = ""
        self._maintenance_in_agent: Optional[bool] = None
        self._maintenance_notes_in_agent: Optional[str] = None  # the reason Consul shows
        self._maintenance_guard_left = False  # see _replace_maintenance_reason
        self._maintenance_dirty = False  # asked for explicitly: send even if Consul agrees
        self._retired: List[_Retired] = []
        self._failures = 0
        self._next_due = 0.0
        self._last_error = ""
        self._last_error_kind = ""
        self._agent_reachable: Optional[bool] = None
        self._agent_version = ""
        self._agent_self_denied: Optional[Consul] = None
        self._health = ""
        # discovery set check on|off: None = as the config says; kept until check_key changes
        self._checks_override: Optional[bool] = None
        self._check_states: Dict[str, Tuple[str, str]] = {}  # check ID -> (status, output)
        # The TTL check: Asterisk's state is looked at every HOST_POLL_S, reported to Consul
        # when it changes and at least every third of the TTL.
        self._ttl_due: Optional[float] = None
        self._ttl_report_due = 0.0
        self._ttl_reported: Optional[Tuple[str, str]] = None
        self._ttl_error = ""
        # The [kv] keys and their session; synced when due (after registering, renewals).
        self._kv = KvPublisher()
        self._kv.want(settings, facts)
        self._kv_due: Optional[float] = None
        self._kv_failures = 0
        self._kv_error = ""
        self._last_sync: Optional[float] = None
        self._last_sync_result = ""
        # Consul user events: (kind, payload) queued when Consul accepted a change, fired at
        # the end of that job (a CLI/AMI caller has its answer by then), each tried once.
        self._pending_events: List[Tuple[str, bytes]] = []
        self._events_fired = 0
        self._events_failed = 0
        self._last_event = ""
        self._last_event_error = ""
        self._last_event_reason = ""
        # Immutable snapshot, replaced whole by the worker; readable from any thread.
        self._snapshot = self._make_snapshot(running=False)

    # -- API for Asterisk threads --------------------------------------------------------------

    def start(self) -> None:
        """Start the worker; it registers in the background. Returns at once."""
        with self._lifecycle:
            if self._stop_requested.is_set():
                raise RuntimeError("a stopped Registrar cannot be started again")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=WORKER_THREAD_NAME,
                                            daemon=True)
            self._thread.start()

    def stop(self, deregister: bool = True, timeout: Optional[float] = None) -> None:
        """Deregister (if asked) within `timeout` (default: the Consul timeout), stop the
        worker and join it. Afterwards no thread of ours runs and nothing is logged or fired."""
        budget = self._settings.timeout_s if timeout is None else max(float(timeout), 0.0)
        deadline = time.monotonic() + budget
        with self._lifecycle:
            thread = self._thread
            already = self._stop_requested.is_set()
            self._stop_requested.set()
        if thread is None:
            self._silenced.set()
            return
        if not already:
            self._commands.put(_Command("stop", (deregister, deadline), Future()))
        if thread is threading.current_thread():
            return  # called from on_event: the worker exits after this job
        # The worker finishes at most one in-flight call (bounded by the Consul timeout), then
        # deregisters within what is left of `budget`.
        thread.join(budget + self._settings.timeout_s + 5.0)
        if thread.is_alive():
            log.error("Consul worker did not stop in time; it is left to finish on its own")
        self._silenced.set()

    def apply(self, settings: Settings) -> None:
        """Reload with new settings: re-register in place if what we register changed.
        Returns at once; `enabled=False` is the caller's business (it calls stop)."""
        if self._stop_requested.is_set():
            return
        self._commands.put(_Command("apply", (settings,), Future()))

    def set_maintenance(self, enable: bool, reason: str = "", timeout: float = 2.0) -> Result:
        """Put the service in (or out of) maintenance. Remembered and re-applied whenever the
        service is registered again; waits for Consul's answer at most `timeout` seconds."""
        return self._change("maintenance", (bool(enable), reason or ""), timeout)

    def set_checks(self, enable: bool, timeout: float = 2.0) -> Result:
        """Add or remove the health checks without re-registering the service; kept across
        resyncs and reloads until the check options in the config change."""
        return self._change("checks", (bool(enable),), timeout)

    def _change(self, kind: str, args: Tuple[Any, ...], timeout: float) -> Result:
        """Queue an operator's change and wait for Consul's answer at most `timeout`; past it
        the worker still carries it out (the caller is told it will keep trying)."""
        if self._stop_requested.is_set():
            return Result(False, "the discovery module is stopping")
        command = _Command(kind, args, Future())
        self._commands.put(command)
        try:
            return command.future.result(timeout=max(float(timeout), 0.0))
        except FutureTimeout:
            command.abandoned = True
            if self._stop_requested.is_set():
                return Result(False, "the discovery module is stopping")
            return Result(False, f"timed out after {int(timeout * 1000)} ms; will keep trying")

    def status(self, timeout: float = 1.0) -> StatusSnapshot:
        """The registration state, with live parts fetched from Consul within `timeout`;
        past it, the cached state marked stale."""
        thread = self._thread
        if self._stop_requested.is_set() or thread is None or not thread.is_alive():
            return replace(self._snapshot, stale=True)
        command = _Command("status", (), Future())
        self._commands.put(command)
        try:
            return command.future.result(timeout=max(float(timeout), 0.0))
        except FutureTimeout:
            command.abandoned = True
            command.future.cancel()  # not started yet: the worker will skip it
            return replace(self._snapshot, stale=True)

    # -- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        _name_native_thread(WORKER_THREAD_NAME)
        self._consul = self._consul_factory(self._settings)
        self._log(logging.INFO, "Consul: registering service %s with the agent at %s",
                  self._settings.service_id, self._settings.agent_url)
        for problem in meta_problems(self._settings):
            self._log(logging.WARNING, "Consul: %s", problem)
        self._publish()
        try:
            while True:
                due = min(d for d in (self._next_due, self._ttl_due, self._kv_due) if d is not None)
                wait = max(0.0, due - time.monotonic())
                try:
                    command = self._commands.get(timeout=wait)
                except queue.Empty:
                    command = None
                if command is not None:
                    if command.kind == "stop":
                        self._guarded(self._shutdown, *command.args)
                        return
                    if self._stop_requested.is_set():
                        # Stopping: what is still queued ahead of "stop" gets a quick "no".
                        self._refuse(command)
                        continue
                    if command.future.set_running_or_notify_cancel():
                        self._guarded(self._handle, command)
                if time.monotonic() >= self._next_due:
                    self._guarded(self._sync)
                if self._ttl_due is not None and time.monotonic() >= self._ttl_due:
                    self._guarded(self._report_ttl)
                if self._kv_due is not None and time.monotonic() >= self._kv_due:
                    self._guarded(self._sync_kv)
        finally:
            self._fail_pending_commands()
            for consul in {id(c): c for c in [self._consul] + [r.consul for r in self._retired]
                           if c is not None}.values():
                consul.close()
            self._publish(running=False)
            self._silenced.set()  # also when stop() was called from on_event and did not join

    def _guarded(self, job: Callable[..., Any], *args: Any) -> None:
        """Run one job; a bug in it must not kill the worker (and with it the registration)."""
        failure = "the discovery module is stopping"
        try:
            job(*args)
        except _Stopping:
            pass
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            failure = self._last_error
        self._publish()
        command = args[0] if args and isinstance(args[0], _Command) else None
        if command is not None and not command.future.done():
            # Never leave a caller waiting for its full timeout on a job that already ended.
            if command.kind in ("maintenance", "checks"):
                command.future.set_result(Result(False, failure))
            elif command.kind == "status":
                command.future.set_result(replace(self._snapshot, stale=True))
            else:
                command.future.set_result(None)
        if self._pending_events and not self._stop_requested.is_set():
            # After the caller has its answer: an event never delays a CLI or AMI command.
            try:
                self._flush_events()
            except Exception as exc:  # noqa: BLE001
                self._pending_events.clear()
                self._log(logging.ERROR, "Consul: firing events failed: %s", exc)
            self._publish()

    def _refuse(self, command: _Command) -> None:
        # A reload queued just before stop is not applied: stop deregisters what is registered.
        if command.future.set_running_or_notify_cancel():
            command.future.set_result(
                Result(False, "the discovery module is stopping")
                if command.kind in ("maintenance", "checks") else None)

    def _handle(self, command: _Command) -> None:
        if command.kind == "apply":
            self._apply(*command.args)
            command.future.set_result(None)
        elif command.kind == "maintenance":
            if command.abandoned:
                # Its caller has answered "will keep trying": remember the wish and let the
                # next attempt (on the retry schedule) carry it out.
                self._want_maintenance(*command.args)
                self._next_due = min(self._next_due, time.monotonic() + self._backoff_initial_s)
                command.future.set_result(Result(False, "queued"))
                return
            command.future.set_result(self._set_maintenance(*command.args))
        elif command.kind == "checks":
            if command.abandoned:
                self._want_checks(*command.args)
                command.future.set_result(Result(False, "queued"))
                return
            command.future.set_result(self._set_checks(*command.args))
        elif command.kind == "status":
            self._refresh_live_status()
            self._publish()
            command.future.set_result(self._snapshot)

    # -- jobs ----------------------------------------------------------------------------------

    def _sync(self) -> None:
        """Make the agent match what we want; called when due (start, retry, resync)."""
        consul = self._require_consul()
        self._check_stop()
        if not self._need_register:
            service_id = self._definition["ID"]
            agent_service = consul.agent.service.get(service_id)
            self._check_stop()
            agent_checks = consul.agent.check.list()
            self._learn_maintenance(agent_checks)
            differences = drift(self._definition, agent_service, agent_checks)
            if differences:
                if agent_service is None:
                    self._registered = False
                    self._registered_since = None
                self._log(logging.WARNING, "Consul: service %s drifted (%s); re-registering",
                          service_id, "; ".join(differences))
                self._need_register = True
                outcome = _short("ok, re-registered (" + "; ".join(differences)) + ")"
            elif self._maintenance_wanted and not self._maintenance_in_agent:
                self._log(logging.WARNING, "Consul: maintenance mode of %s was lost; "
                          "setting it again", service_id)
                outcome = "ok, maintenance mode set again (it was lost)"
            else:
                outcome = "ok, in sync"
        else:
            outcome = "ok, registered"
        self._converge()
        self._succeeded(outcome)
        if self._kv.active:
            self._kv.verify = True  # someone may have edited or deleted our keys
            self._kv_due = 0.0

    def _converge(self) -> None:
        """Register if needed, then maintenance, then clean up what a reload left behind."""
        for attempt in (1, 2):
            try:
                if self._need_register:
                    self._register()
                self._converge_maintenance()
                if self._maintenance_guard_left:
                    self._drop_maintenance_guard(self._require_consul(), self._definition["ID"])
                break
            except ConsulNotFound:
                # The agent forgot the service between two calls (it restarted): once more.
                if attempt == 2:
                    raise
                self._need_register = True
                self._registered = False
        self._clean_up_retired()

    def _clean_up_retired(self) -> None:
        """Deregister what a reload left behind. Our own registration is in place by now, so
        an old agent that does not answer fails only this part: it is retried at the next
        syncs and given up after a few, as an agent that is gone took its services along."""
        try:
            self._deregister_retired()
        except _Stopping:
            raise
        except ConsulError as exc:
            retired = self._retired[0]
            retired.attempts += 1
            if retired.attempts >= RETIRED_ATTEMPTS:
                self._log(logging.WARNING, "Consul: giving up deregistering old service %s "
                          "from %s after %d attempts: %s", retired.service_id,
                          retired.consul.url, retired.attempts, self._scrub(str(exc)))
                self._retired.pop(0)
                if retired.consul is not self._consul and all(
                        r.consul is not retired.consul for r in self._retired):
                    retired.consul.close()
            elif retired.attempts == 1:
                self._log(logging.WARNING, "Consul: could not deregister old service %s from "
                          "%s yet (will retry): %s", retired.service_id, retired.consul.url,
                          self._scrub(str(exc)))

    def _register(self) -> None:
        consul = self._require_consul()
        definition = self._definition
        service_id = definition["ID"]
        # replace-existing-checks also drops the maintenance check: keep it when in maintenance
        # so that the service never looks healthy in between.
        keep_maintenance = self._maintenance_wanted or self._maintenance_in_agent is True
        self._check_stop()
        self._maybe_registered = True
        try:
            consul.agent.service.register(self._registration_body(),
                                          replace_existing_checks=not keep_maintenance)
        except ConsulRequestError as exc:
            if "TLSServerName" in str(exc):
                raise ConsulRequestError(f"{exc} (check_tls_server_name needs Consul 1.10 or "
                                         f"newer: this agent does not know the field)",
                                         exc.status) from None
            raise
        if not keep_maintenance:
            self._maintenance_in_agent = False
            self._maintenance_notes_in_agent = None
        else:
            wanted = {c["CheckID"] for c in definition.get("Checks") or []}
            for stale in our_check_ids(service_id):
                if stale not in wanted:
                    self._drop_check_quietly(consul, stale)
        self._schedule_after_register()
        was_registered = self._registered
        self._need_register = False
        self._registered = True
        if not was_registered or self._registered_since is None:
            self._registered_since = time.time()
        self._log(logging.INFO, "Consul: service %s (%s) registered as %s:%s", service_id,
                  definition["Name"], definition["Address"], definition["Port"])
        self._emit("DiscoveryRegister", [("ID", service_id), ("Name", definition["Name"]),
                                         ("Address", definition["Address"]),
                                         ("Port", str(definition["Port"]))])
        self._queue_event("register", service_id, definition["Name"], definition["Address"],
                          definition["Port"], self._maintenance_wanted)

    def _registration_body(self) -> Dict[str, Any]:
        """The definition, with the TTL check starting in Asterisk's current state (a new
        check would otherwise start critical until the first report)."""
        body = dict(self._definition)
        if body.get("Checks"):
            status = self._current_ttl_status()[0]
            body["Checks"] = [dict(c, Status=status) if "TTL" in c else c for c in body["Checks"]]
        return body

    def _has_ttl_check(self) -> bool:
        ttl_id = ttl_check_id(self._definition["ID"])
        return any(c["CheckID"] == ttl_id for c in self._definition.get("Checks") or [])

    def _schedule_after_register(self) -> None:
        if self._has_ttl_check():
            self._ttl_reported = None  # report at once: the output says more than the start
            self._ttl_due = 0.0
        else:
            self._ttl_due = None
        if self._kv.active:
            self._kv_due = 0.0

    def _drop_check_quietly(self, consul: Consul, stale_check_id: str) -> None:
        """Remove our EID check if it is there; absent is fine (200 on 1.8.7, 404 or a
        500 "Unknown check" on other versions)."""
        try:
            consul.agent.check.deregister(stale_check_id)
        except ConsulNotFound:
            pass
        except ConsulServerError as exc:
            if "Unknown check" not in str(exc):
                raise

    def _converge_maintenance(self) -> None:
        wanted, in_agent = self._maintenance_wanted, self._maintenance_in_agent
        if not self._maintenance_dirty:
            if wanted and in_agent is True:
                return
            if not wanted:
                # Off here and nobody asked: maintenance someone set with the Consul CLI or
                # API is an operator's decision (a drained box) that a resync must not undo.
                return
        consul = self._require_consul()
        service_id = self._definition["ID"]
        self._check_stop()
        if wanted and in_agent is True:
            if self._maintenance_notes_in_agent == self._maintenance_reason:
                self._maintenance_dirty = False  # Consul already shows exactly this
                return
            self._replace_maintenance_reason(consul, service_id)
        else:
            consul.agent.service.maintenance(service_id, wanted, self._maintenance_reason)
        self._maintenance_in_agent = wanted
        self._maintenance_notes_in_agent = self._maintenance_reason if wanted else None
        self._maintenance_dirty = False
        self._log(logging.INFO, "Consul: maintenance mode for service %s is %s%s", service_id,
                  "set" if wanted else "unset",
                  f" ({self._maintenance_reason})" if wanted and self._maintenance_reason else "")
        headers = [("ID", service_id), ("Maintenance", "true" if wanted else "false")]
        if wanted:
            headers.append(("Reason", self._maintenance_reason))
        self._emit("DiscoverySetMaintenance", headers)
        self._queue_event("maintenance", service_id, self._definition["Name"],
                          self._definition["Address"], self._definition["Port"], wanted)

    def _replace_maintenance_reason(self, consul: Consul, service_id: str) -> None:
        """Consul ignores a new reason while maintenance is on, and off-then-on would show the
        service healthy in between: a temporary critical check covers the gap."""
        guard_id = _maintenance_guard_id(service_id)
        consul.agent.check.register({"ID": guard_id, "Name": "Maintenance reason being changed",
                                     "ServiceID": service_id, "TTL": "1h",
                                     "Status": "critical"})
        self._maintenance_guard_left = True
        consul.agent.service.maintenance(service_id, False)
        self._maintenance_in_agent = False
        consul.agent.service.maintenance(service_id, True, self._maintenance_reason)
        self._maintenance_in_agent = True
        self._drop_maintenance_guard(consul, service_id)

    def _drop_maintenance_guard(self, consul: Consul, service_id: str) -> None:
        consul.agent.check.deregister(_maintenance_guard_id(service_id))
        self._maintenance_guard_left = False

    def _learn_maintenance(self, checks_by_id: Mapping[str, Mapping[str, Any]]) -> None:
        check = checks_by_id.get(maintenance_check_id(self._definition["ID"]))
        self._maintenance_in_agent = check is not None
        self._maintenance_notes_in_agent = None if check is None else check.get("Notes", "")

    def _deregister_retired(self, budget_s: Optional[float] = None,
                            interruptible: bool = True) -> None:
        current = (self._settings.agent_url, self._definition["ID"])
        while self._retired:
            retired = self._retired[0]
            if (retired.consul.url, retired.service_id) != current:
                if interruptible:
                    self._check_stop()
                if retired.service_id != current[1] or self._other_agent(
                        retired.consul, budget_s, interruptible):
                    retired.consul.agent.service.deregister(retired.service_id,
                                                            timeout_s=budget_s)
                    self._log(logging.INFO, "Consul: old service %s deregistered from %s",
                              retired.service_id, retired.consul.url)
                    self._emit("DiscoveryDeregister", [("ID", retired.service_id),
                                                       ("Name", retired.name)])
                    self._queue_event("deregister", retired.service_id, retired.name,
                                      retired.address, retired.port, False)
            self._retired.pop(0)
            if retired.consul is not self._consul and all(
                    r.consul is not retired.consul for r in self._retired):
                retired.consul.close()

    def _other_agent(self, old: Consul, budget_s: Optional[float],
                     interruptible: bool = True) -> bool:
        """Is `old` (the agent before a reload) another agent than the current one? The same
        agent may be reached under another URL (http -> https, a host name for its address):
        deregistering our ID there would remove the registration just made."""
        try:
            old_node = old.agent.node_id(timeout_s=budget_s)
            if interruptible:
                self._check_stop()
            new_node = self._require_consul().agent.node_id(timeout_s=budget_s)
        except ConsulUnreachable:
            raise  # retried: the old agent is still to be cleaned when it answers
        except ConsulError as exc:
            self._log(logging.WARNING, "Consul: service %s is left registered with %s: cannot "
                      "tell whether that is the same agent as %s (%s)", self._definition["ID"],
                      old.url, self._settings.agent_url, self._scrub(str(exc)))
            return False
        if old_node and old_node == new_node:
            self._log(logging.INFO, "Consul: %s and %s are the same agent; service %s stays",
                      old.url, self._settings.agent_url, self._definition["ID"])
            return False
        return True

    def _apply(self, settings: Settings) -> None:
        old = self._settings
        if settings == old:
            return
        if self._checks_override is not None and settings.check_key() != old.check_key():
            self._log(logging.INFO, "Consul: the check options changed: 'discovery set check "
                      "%s' no longer applies; the config decides", "on" if
                      self._checks_override else "off")
            self._checks_override = None
        definition = service_definition(settings, self._facts, self._checks_override)
        self._kv.want(settings, self._facts)
        if self._kv.active and self._registered:
            self._kv_due = 0.0
        agent_changed = settings.transport_key() != old.transport_key()
        moved = settings.agent_url != old.agent_url or settings.service_id != old.service_id
        old_consul = self._require_consul()
        if moved and self._maybe_registered:
            # Deregistered only once the new registration is in: never a moment without one.
            self._retired.append(_Retired(old_consul, old.service_id, old.name,
                                          address=self._definition["Address"],
                                          port=self._definition["Port"]))
        if agent_changed:
            self._consul = self._consul_factory(settings)
            self._agent_version = ""  # another agent (or token): asked again
            if not any(r.consul is old_consul for r in self._retired):
                old_consul.close()
        if moved:
            self._registered = False
            self._registered_since = None
            self._maintenance_in_agent = None
            self._maybe_registered = False
        self._settings = settings
        self._log(logging.INFO, "Consul: settings reloaded")
        for problem in meta_problems(settings):
            self._log(logging.WARNING, "Consul: %s", problem)
        if definition != self._definition or moved or agent_changed:
            self._definition = definition
            self._need_register = True
            self._failures = 0
            self._next_due = 0.0  # now
        elif not self._need_register:
            self._next_due = time.monotonic() + self._resync_s()

    def _want_maintenance(self, enable: bool, reason: str) -> None:
        self._maintenance_wanted = enable
        self._maintenance_reason = reason if enable else ""
        self._maintenance_dirty = True

    def _set_maintenance(self, enable: bool, reason: str) -> Result:
        self._want_maintenance(enable, reason)
        service_id = self._definition["ID"]
        try:
            self._converge()
        except ConsulError as exc:
            self._failed(exc)
            return Result(False, f"{self._scrub(str(exc))}; will keep trying")
        self._succeeded(f"ok, maintenance mode {'set' if enable else 'unset'}")
        return Result(True, f"Maintenance mode for service {service_id} is "
                            f"{'set' if enable else 'unset'} (Consul accepted it)")

    # -- the health checks: on/off, the TTL check --------------------------------------------

    def _want_checks(self, enable: bool) -> None:
        self._checks_override = enable
        definition = service_definition(self._settings, self._facts, enable)
        if definition != self._definition:
            self._definition = definition
            if self._maybe_registered:
                self._need_register = True  # by the next sync, in place
                self._next_due = min(self._next_due, time.monotonic() + self._backoff_initial_s)

    def _set_checks(self, enable: bool) -> Result:
        """discovery set check on|off: the checks are added or removed on their own, the
        service stays registered as it is (no re-registration, no moment without it)."""
        self._checks_override = enable
        service_id = self._definition["ID"]
        word = "on" if enable else "off"
        definition = service_definition(self._settings, self._facts, enable)
        checks = definition.get("Checks") or []
        changed = definition != self._definition
        self._definition = definition
        try:
            consul = self._require_consul()
            if self._need_register or not self._registered:
                self._converge()  # registers with the checks as now wanted
            else:
                for check in checks:
                    self._check_stop()
                    status = self._current_ttl_status()[0] if "TTL" in check else None
                    consul.agent.check.register(standalone_check(check, service_id, status))
                for unwanted in our_check_ids(service_id):
                    if unwanted not in {c["CheckID"] for c in checks}:
                        self._check_stop()
                        self._drop_check_quietly(consul, unwanted)
                self._schedule_after_register()
        except ConsulError as exc:
            self._need_register = True  # the next attempt re-registers in place with them
            self._failed(exc)
            return Result(False, f"{self._scrub(str(exc))}; will keep trying")
        self._succeeded(f"ok, health check {word}")
        if not enable:
            self._check_states.clear()
        if changed:
            self._log(logging.INFO, "Consul: health check for service %s switched %s (%s)",
                      service_id, word, ", ".join(c["CheckID"] for c in checks) or "none left")
            self._emit("DiscoverySetCheck", [("ID", service_id), ("Check", word)])
        kinds = self._settings.check_type if enable else "all"
        return Result(True, f"Health check ({kinds}) for service {service_id} is {word} "
                            f"(Consul accepted it)")

    def _current_ttl_status(self) -> Tuple[str, str]:
        try:
            booted, shutting_down = self._host_state()
        except Exception as exc:  # noqa: BLE001 - a host that cannot tell is not booted
            return "warning", f"cannot read Asterisk's state: {exc}"
        return ttl_status(booted, shutting_down, self._facts)

    def _report_ttl(self) -> None:
        """Look at Asterisk's state; tell Consul when it changed or the report is due."""
        if not (self._registered and self._has_ttl_check()):
            self._ttl_due = None  # registering schedules it again
            return
        now = time.monotonic()
        state = self._current_ttl_status()
        self._ttl_due = now + min(HOST_POLL_S, ttl_report_interval_s(self._settings))
        if state == self._ttl_reported and now < self._ttl_report_due:
            return
        service_id = self._definition["ID"]
        try:
            self._require_consul().agent.check.update(ttl_check_id(service_id), *state)
        except (ConsulNotFound, ConsulServerError) as exc:
            if isinstance(exc, ConsulServerError) and "TTL" not in str(exc):
                self._note_ttl_error(exc)
                return
            # The agent forgot the check (restarted, or someone removed it): register again.
            # Consul 1.8 says so with a 500 "does not have associated TTL".
            self._log(logging.WARNING, "Consul: TTL check of %s is gone; re-registering",
                      service_id)
            self._need_register = True
            self._next_due = 0.0
            return
        except ConsulError as exc:
            self._note_ttl_error(exc)
            return  # tried again at the next poll
        if self._ttl_error:
            self._log(logging.INFO, "Consul: TTL check reported again")
            self._ttl_error = ""
        if state[0] != (self._ttl_reported or ("",))[0]:
            self._log(logging.INFO if state[0] == "passing" else logging.WARNING,
                      "Consul: TTL check of %s is %s: %s", service_id, *state)
        self._ttl_reported = state
        self._ttl_report_due = now + ttl_report_interval_s(self._settings)
        self._check_states[ttl_check_id(service_id)] = state

    def _note_ttl_error(self, exc: ConsulError) -> None:
        message = self._scrub(str(exc))
        if message != self._ttl_error:
            self._log(logging.WARNING, "Consul: TTL check not reported: %s", message)
        self._ttl_error = message

    # -- the [kv] keys -----------------------------------------------------------------------

    def _sync_kv(self) -> None:
        if not self._kv.active or not self._registered:
            self._kv_due = None  # registering schedules it again
            return
        try:
            done = self._kv.sync(self._require_consul())
        except ConsulError as exc:
            if isinstance(exc, (KvConflict, ConsulPermissionDenied, ConsulRequestError)):
                delay = self._resync_s()  # waits for someone to act: no point hurrying
            else:
                delay = min(KV_RETRY_MAX_S, self._backoff_initial_s * (2 ** self._kv_failures))
            # Never later than the next renewal is due: the session must outlive a conflict.
            delay = min(delay, self._kv.renew_interval_s())
            self._kv_failures = min(self._kv_failures + 1, 30)
            message = self._scrub(str(exc))
            if message != self._kv_error:
                self._log(logging.WARNING, "Consul: KV keys under %s not in place: %s; "
                          "retrying in %.1f s", self._kv.prefix or "/", message, delay)
            self._kv_error = message
            self._kv_due = time.monotonic() + delay
            return
        if self._kv_error:
            self._log(logging.INFO, "Consul: KV keys under %s are in place again",
                      self._kv.prefix or "/")
        self._kv_error = ""
        self._kv_failures = 0
        if done:
            self._log(logging.INFO, "Consul: KV under %s: %s", self._kv.prefix or "/", done)
        self._kv_due = time.monotonic() + self._kv.renew_interval_s() if self._kv.active \
            else None

    def _refresh_live_status(self) -> None:
        consul = self._require_consul()
        service_id = self._definition["ID"]
        self._check_stop()
        try:
            health, checks = consul.agent.health.service_by_id(service_id)
            self._agent_reachable = True
            self._agent_version = self._agent_version_or_blank(consul)
        except ConsulUnreachable as exc:
            self._agent_reachable = False
            self._note_error(exc)
            return
        except ConsulError as exc:
            self._agent_reachable = True
            self._note_error(exc)
            return
        self._health = health
        by_id = {c.get("CheckID"): c for c in checks}
        self._check_states = {cid: (c.get("Status", ""), c.get("Output", ""))
                              for cid, c in by_id.items() if cid in our_check_ids(service_id)}
        if health == "unknown":
            if self._registered:
                self._log(logging.WARNING, "Consul: the agent no longer knows service %s; "
                          "re-registering", service_id)
            self._registered = False
            self._registered_since = None
            self._need_register = True
        else:
            self._learn_maintenance(by_id)
        if self._need_register:
            self._next_due = 0.0  # the agent answers: no reason to wait for the backoff

    def _agent_version_or_blank(self, consul: Consul) -> str:
        if self._agent_version or self._agent_self_denied is consul:
            return self._agent_version  # asked once per agent: it does not change under us
        try:
            return consul.agent.version()
        except ConsulPermissionDenied:
            # A token scoped to our service may not read the agent: not an error, and not
            # worth a refused call at every status.
            self._agent_self_denied = consul
            return ""

    def _shutdown(self, deregister: bool, deadline: float) -> None:
        consul = self._consul
        timeout_s = self._settings.timeout_s
        if deregister and consul is not None and self._maybe_registered:
            service_id, name = self._definition["ID"], self._definition["Name"]
            # What is left of the caller's budget, but never so little that a healthy local
            # agent could not answer.
            budget = min(timeout_s, max(deadline - time.monotonic(), min(0.1, timeout_s)))
            try:
                consul.agent.service.deregister(service_id, timeout_s=budget)
            except ConsulError as exc:
                self._log(logging.WARNING, "Consul: could not deregister service %s: %s",
                          service_id, self._scrub(str(exc)))
            else:
                self._registered = False
                self._registered_since = None
                self._log(logging.INFO, "Consul: service %s deregistered", service_id)
                self._emit("DiscoveryDeregister", [("ID", service_id), ("Name", name)])
                self._queue_event("deregister", service_id, name, self._definition["Address"],
                                  self._definition["Port"], self._maintenance_wanted)
        if deregister and consul is not None and self._kv.session_id:
            budget = min(timeout_s, max(deadline - time.monotonic(), min(0.1, timeout_s)))
            try:
                self._kv.remove(consul, timeout_s=budget)
                self._log(logging.INFO, "Consul: KV keys under %s removed", self._kv.prefix or "/")
            except ConsulError as exc:
                self._log(logging.WARNING, "Consul: could not remove the KV keys under %s: %s "
                          "(they go when the session's TTL runs out)", self._kv.prefix or "/",
                          self._scrub(str(exc)))
        if deregister and self._retired and deadline > time.monotonic():
            try:
                self._deregister_retired(budget_s=max(deadline - time.monotonic(), 0.05),
                                         interruptible=False)
            except ConsulError as exc:
                self._log(logging.WARNING, "Consul: could not deregister an old service: %s",
                          self._scrub(str(exc)))
        if self._pending_events:
            # Within what is left of the caller's budget (a floor as for the deregister).
            self._flush_events(max(deadline - time.monotonic(), min(0.1, timeout_s)),
                               interruptible=False)

    # -- Consul user events ----------------------------------------------------------------------

    def _queue_event(self, kind: str, service_id: str, name: str, address: str, port: Any,
                     maintenance: bool) -> None:
        """Note an event for a change Consul has just accepted; fired at the end of the job."""
        settings = self._settings
        if not settings.events:
            return
        event_name = {"register": settings.event_register,
                      "deregister": settings.event_deregister,
                      "maintenance": settings.event_maintenance}[kind]
        payload = json.dumps({"id": service_id, "name": name, "eid": self._facts.eid,
                              "address": address, "port": int(port),
                              "version": self._facts.version,
                              "maintenance": bool(maintenance)},
                             separators=(",", ":")).encode("utf-8")
        if len(self._pending_events) >= MAX_PENDING_EVENTS:
            dropped, _ = self._pending_events.pop(0)
            self._events_failed += 1
            self._log(logging.WARNING, "Consul: event %s dropped: too many waiting", dropped)
        self._pending_events.append((event_name, payload))

    def _flush_events(self, budget_s: Optional[float] = None, interruptible: bool = True) -> None:
        """Fire what is queued, each once: a failure is logged and the event dropped (the
        change it reports stands). An agent that does not answer drops the rest at once."""
        deadline = None if budget_s is None else time.monotonic() + budget_s
        consul = self._require_consul()
        while self._pending_events:
            if interruptible and self._stop_requested.is_set():
                return  # the shutdown job fires what is left, within its budget
            name, payload = self._pending_events.pop(0)
            timeout_s = None
            if deadline is not None:
                timeout_s = deadline - time.monotonic()
                if timeout_s <= 0:
                    self._event_failed(name, "no time left before unload",
                                       len(self._pending_events))
                    return
            try:
                answer = consul.event.fire(name, payload, timeout_s=timeout_s)
            except ConsulError as exc:
                unreachable = isinstance(exc, ConsulUnreachable)
                self._event_failed(name, self._scrub(str(exc)),
                                   len(self._pending_events) if unreachable else 0)
                if unreachable:
                    return
                continue
            self._events_fired += 1
            self._last_event = f"{name} at {time.strftime('%H:%M:%S')}"
            if self._last_event_error:
                self._log(logging.INFO, "Consul: events are accepted again")
                self._last_event_error = ""
                self._last_event_reason = ""
            self._log(logging.DEBUG, "Consul: event %s fired (ID %s)", name,
                      answer.get("ID", "?"))

    def _event_failed(self, name: str, reason: str, also_dropped: int) -> None:
        self._events_failed += 1 + also_dropped
        if also_dropped:
            self._pending_events.clear()
        message = f"event {name} not fired: {reason}"
        if also_dropped:
            message += f" ({also_dropped} more dropped)"
        # One warning per kind of failure (an ACL token without event:write fails them all).
        level = logging.DEBUG if reason == self._last_event_reason else logging.WARNING
        self._log(level, "Consul: %s; not retried", message)
        self._last_event_error = message
        self._last_event_reason = reason

    # -- bookkeeping ---------------------------------------------------------------------------

    def _succeeded(self, outcome: str = "ok") -> None:
        if self._last_error:
            self._log(logging.INFO, "Consul: the agent at %s answers again",
                      self._settings.agent_url)
        self._failures = 0
        self._last_error = ""
        self._last_error_kind = ""
        self._agent_reachable = True
        self._last_sync = time.time()
        self._last_sync_result = outcome
        self._next_due = time.monotonic() + self._resync_s()

    def _backoff_cap_s(self) -> float:
        """Retries never wait longer than a resync would (nor than backoff_max_s): an agent
        that is back is noticed as soon as a healthy one would be."""
        return max(self._backoff_initial_s, min(self._backoff_max_s, self._resync_s()))

    def _failed(self, exc: BaseException) -> None:
        """Note a failed job and schedule the next attempt."""
        if isinstance(exc, (ConsulPermissionDenied, ConsulRequestError)):
            # A configuration problem: retrying fast cannot help and would flood the agent.
            delay = self._slow_retry_s
        else:
            delay = min(self._backoff_cap_s(), self._backoff_initial_s * (2 ** self._failures))
            delay *= random.uniform(0.5, 1.0)  # jitter: a fleet must not retry in lockstep
            self._failures = min(self._failures + 1, 30)
        if isinstance(exc, ConsulUnreachable):
            self._agent_reachable = False
            self._agent_version = ""  # it may come back as another version
        elif isinstance(exc, ConsulError):
            self._agent_reachable = True
        self._note_error(exc, retry_in=delay)
        self._last_sync = time.time()
        self._last_sync_result = "failed"
        self._next_due = time.monotonic() + delay

    def _note_error(self, exc: BaseException, retry_in: Optional[float] = None) -> None:
        message = self._scrub(str(exc)) if isinstance(exc, ConsulError) else \
            self._scrub(f"unexpected {type(exc).__name__}: {exc}")
        kind = f"{type(exc).__name__}:{getattr(exc, 'status', None)}"
        self._last_error = message
        if kind != self._last_error_kind:
            # One line per change of state, not one per retry.
            suffix = f"; retrying in {retry_in:.2f} s" if retry_in is not None else ""
            self._log(logging.WARNING if isinstance(exc, ConsulError) else logging.ERROR,
                      "Consul: %s%s", message, suffix)
            self._last_error_kind = kind
        else:
            suffix = f"; retrying in {retry_in:.2f} s" if retry_in is not None else ""
            self._log(logging.DEBUG, "Consul: still failing: %s%s", message, suffix)

    def _resync_s(self) -> float:
        try:
            return max(parse_go_duration(self._settings.resync_interval) / 1e9, 0.1)
        except ValueError:
            return DEFAULT_RESYNC_S

    def _require_consul(self) -> Consul:
        if self._consul is None:
            self._consul = self._consul_factory(self._settings)
        return self._consul

    def _check_stop(self) -> None:
        if self._stop_requested.is_set():
            raise _Stopping()

    def _scrub(self, text: str) -> str:
        token = self._settings.token
        return text.replace(token, "<redacted>") if token else text

    def _fail_pending_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if not command.future.done():
                command.future.set_result(
                    Result(False, "the discovery module is stopping")
                    if command.kind in ("maintenance", "checks") else None)

    def _emit(self, name: str, headers: Sequence[Tuple[str, str]]) -> None:
        if self._silenced.is_set():
            return
        try:
            self._on_event(name, list(headers))
        except Exception as exc:  # noqa: BLE001 - a broken listener must not stop the worker
            self._log(logging.ERROR, "Consul: event handler for %s failed: %s", name, exc)

    def _log(self, level: int, message: str, *args: Any) -> None:
        if not self._silenced.is_set():
            log.log(level, message, *args)

    def _make_snapshot(self, running: bool) -> StatusSnapshot:
        definition = self._definition
        return StatusSnapshot(
            agent_url=self._settings.agent_url,
            service_id=definition["ID"],
            service_name=definition["Name"],
            address=definition["Address"],
            port=definition["Port"],
            running=running,
            agent_reachable=self._agent_reachable,
            agent_version=self._agent_version,
            registered=self._registered,
            registered_since=self._registered_since,
            last_error=self._last_error,
            maintenance=self._maintenance_wanted,
            maintenance_reason=self._maintenance_reason,
            maintenance_in_agent=self._maintenance_in_agent,
            health=self._health,
            checks_on=bool(definition.get("Checks")),
            checks_set_by="config" if self._checks_override is None else "discovery set check",
            check_type=self._settings.check_type,
            checks=tuple(("ttl" if "TTL" in c else "http", c["CheckID"],
                          *self._check_states.get(c["CheckID"], ("", "")))
                         for c in definition.get("Checks") or []),
            ttl_error=self._ttl_error,
            kv_prefix=self._kv.prefix,
            kv_keys=tuple((k, v.decode("utf-8", "replace")) for k, v in self._kv.written.items()),
            kv_wanted=len(self._kv.wanted),
            kv_session=self._kv.session_id,
            kv_renewed=self._kv.renewed_at,
            kv_error=self._kv_error,
            last_sync=self._last_sync,
            last_sync_result=self._last_sync_result,
            events=self._settings.events,
            events_fired=self._events_fired,
            events_failed=self._events_failed,
            last_event=self._last_event,
            last_event_error=self._last_event_error,
        )

    def _publish(self, running: bool = True) -> None:
        self._snapshot = self._make_snapshot(running)
