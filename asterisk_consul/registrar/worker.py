"""The Registrar: the one owner of this module's Consul state, and the only thread that talks
to Consul ("consul-registrar"). Asterisk's threads hand it typed commands and never wait
longer than the bound they pass in:

    registrar = Registrar(settings, HostFacts(eid, version), on_event)
    registrar.start()                              # returns at once
    registrar.set_maintenance(True, "upgrade", 2)  # -> Result(ok, message)
    registrar.status(1.0)                          # -> StatusSnapshot
    registrar.apply(new_settings)                  # reload; returns at once
    registrar.stop()                               # deregisters (bounded), joins the thread

The worker is a loop over parts, each owning its state and saying when it is next due: the
service registration (service.py), the TTL check (checks.py), the KV session (kvsession.py).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from ..consul import ConsulError
from ..registration import HostFacts, meta_problems
from ..settings import Settings
from .checks import Checks, HostState
from .kvsession import KvSession
from .link import AgentLink, ConsulFactory, Stopping, consul_client
from .maintenance import Maintenance
from .notify import EventSink, Notifications
from .retired import Retired
from .service import ServiceRegistration
from .status import STOPPING, Result, StatusSnapshot

WORKER_THREAD_NAME = "consul-registrar"


# -- commands from Asterisk's threads ----------------------------------------------------------

@dataclass(frozen=True)
class Apply:
    settings: Settings


@dataclass(frozen=True)
class SetMaintenance:
    on: bool
    reason: str


@dataclass(frozen=True)
class SetChecks:
    on: bool


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Stop:
    deregister: bool
    deadline: float


@dataclass
class _Queued:
    command: Any
    future: "Future[Any]"
    # Set by a caller that stopped waiting: the worker records the intent (maintenance,
    # checks) or drops the job (status) instead of spending another timeout on nobody.
    abandoned: bool = False


_CHANGES = (SetMaintenance, SetChecks)  # answered with a Result


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


class Registrar:
    def __init__(self, settings: Settings, facts: HostFacts, on_event: EventSink, *,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 slow_retry_s: float = 60.0, consul_factory: ConsulFactory = consul_client,
                 host_state: HostState = lambda: (True, False)):
        self._link = link = AgentLink(settings, facts, consul_factory)
        self._notify = Notifications(link, on_event)
        self._maintenance = Maintenance(link, self._notify)
        self._retired = Retired(link, self._notify)
        self._checks = Checks(link, self._notify, host_state)
        self._service = ServiceRegistration(
            link, self._checks.definition(settings), self._maintenance, self._retired,
            self._notify, backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s,
            slow_retry_s=slow_retry_s)
        self._kv = KvSession(link, backoff_initial_s)
        self._checks.service = self._kv.service = self._service
        self._service.checks, self._service.kv = self._checks, self._kv
        self._commands: "queue.Queue[_Queued]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lifecycle = threading.Lock()
        # Immutable, replaced whole by the worker; readable from any thread.
        self._snapshot = self._make_snapshot(running=False)

    # -- API for Asterisk threads --------------------------------------------------------------

    def start(self) -> None:
        """Start the worker; it registers in the background. Returns at once."""
        with self._lifecycle:
            if self._link.stop_requested.is_set():
                raise RuntimeError("a stopped Registrar cannot be started again")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=WORKER_THREAD_NAME,
                                            daemon=True)
            self._thread.start()

    def stop(self, deregister: bool = True, timeout: Optional[float] = None) -> None:
        """Deregister (if asked) within `timeout` (default: the Consul timeout), stop the
        worker and join it. Afterwards no thread of ours runs and nothing is logged or fired."""
        timeout_s = self._link.settings.timeout_s
        budget = timeout_s if timeout is None else max(float(timeout), 0.0)
        deadline = time.monotonic() + budget
        with self._lifecycle:
            thread = self._thread
            already = self._link.stop_requested.is_set()
            self._link.stop_requested.set()
        if thread is None:
            self._link.silenced.set()
            return
        if not already:
            self._commands.put(_Queued(Stop(deregister, deadline), Future()))
        if thread is threading.current_thread():
            return  # called from on_event: the worker exits after this job
        # The worker finishes at most one in-flight call (bounded by the Consul timeout), then
        # deregisters within what is left of `budget`.
        thread.join(budget + timeout_s + 5.0)
        if thread.is_alive():
            self._link.log(logging.ERROR, "Consul worker did not stop in time; it is left to "
                           "finish on its own")
        self._link.silenced.set()

    def apply(self, settings: Settings) -> None:
        """Reload with new settings: re-register in place if what we register changed.
        Returns at once; `enabled=False` is the caller's business (it calls stop)."""
        if not self._link.stop_requested.is_set():
            self._commands.put(_Queued(Apply(settings), Future()))

    def set_maintenance(self, enable: bool, reason: str = "", timeout: float = 2.0) -> Result:
        """Put the service in (or out of) maintenance. Remembered and re-applied whenever the
        service is registered again; waits for Consul's answer at most `timeout` seconds."""
        return self._change(SetMaintenance(bool(enable), reason or ""), timeout)

    def set_checks(self, enable: bool, timeout: float = 2.0) -> Result:
        """Add or remove the health checks without re-registering the service; kept across
        resyncs and reloads until the check options in the config change."""
        return self._change(SetChecks(bool(enable)), timeout)

    def _change(self, command: Any, timeout: float) -> Result:
        """Queue an operator's change and wait for Consul's answer at most `timeout`; past it
        the worker still carries it out (the caller is told it will keep trying)."""
        if self._link.stop_requested.is_set():
            return STOPPING
        queued = _Queued(command, Future())
        self._commands.put(queued)
        try:
            return queued.future.result(timeout=max(float(timeout), 0.0))
        except FutureTimeout:
            queued.abandoned = True
            if self._link.stop_requested.is_set():
                return STOPPING
            return Result(False, f"timed out after {int(timeout * 1000)} ms; will keep trying")

    def status(self, timeout: float = 1.0) -> StatusSnapshot:
        """The registration state, with live parts fetched from Consul within `timeout`;
        past it, the cached state marked stale."""
        thread = self._thread
        if self._link.stop_requested.is_set() or thread is None or not thread.is_alive():
            return replace(self._snapshot, stale=True)
        queued = _Queued(Status(), Future())
        self._commands.put(queued)
        try:
            return queued.future.result(timeout=max(float(timeout), 0.0))
        except FutureTimeout:
            queued.abandoned = True
            queued.future.cancel()  # not started yet: the worker will skip it
            return replace(self._snapshot, stale=True)

    # -- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        _name_native_thread(WORKER_THREAD_NAME)
        link = self._link
        link.consul  # noqa: B018 - made here, on the worker: requests is imported by the first
        link.log(logging.INFO, "Consul: registering service %s with the agent at %s",
                 link.settings.service_id, link.settings.agent_url)
        for problem in meta_problems(link.settings):
            link.log(logging.WARNING, "Consul: %s", problem)
        self._publish()
        parts = (self._service, self._checks, self._kv)
        try:
            while True:
                due = min(d for d in (p.due() for p in parts) if d is not None)
                try:
                    queued = self._commands.get(timeout=max(0.0, due - time.monotonic()))
                except queue.Empty:
                    queued = None
                if queued is not None:
                    if isinstance(queued.command, Stop):
                        self._guarded(self._shutdown, queued.command)
                        return
                    if link.stop_requested.is_set():
                        self._refuse(queued)  # what is queued ahead of Stop: a quick "no"
                        continue
                    if queued.future.set_running_or_notify_cancel():
                        self._guarded(self._handle, queued)
                for part in parts:
                    when = part.due()
                    if when is not None and time.monotonic() >= when:
                        self._guarded(part.run)
        finally:
            self._fail_pending_commands()
            clients = [link.close()] + self._retired.clients()
            for consul in {id(c): c for c in clients if c is not None}.values():
                consul.close()
            self._publish(running=False)
            link.silenced.set()  # also when stop() was called from on_event and did not join

    def _guarded(self, job: Callable[..., Any], *args: Any) -> None:
        """Run one job; a bug in it must not kill the worker (and with it the registration)."""
        failure = STOPPING
        try:
            job(*args)
        except Stopping:
            pass
        except Exception as exc:  # noqa: BLE001
            self._service.failed(exc)
            failure = Result(False, self._link.last_error)
        self._publish()
        queued = args[0] if args and isinstance(args[0], _Queued) else None
        if queued is not None and not queued.future.done():
            # Never leave a caller waiting for its full timeout on a job that already ended.
            self._answer(queued, failure)
        if self._notify.pending and not self._link.stop_requested.is_set():
            # After the caller has its answer: an event never delays a CLI or AMI command.
            try:
                self._notify.flush()
            except Exception as exc:  # noqa: BLE001
                self._notify.drop_pending()
                self._link.log(logging.ERROR, "Consul: firing events failed: %s", exc)
            self._publish()

    def _answer(self, queued: _Queued, failure: Result) -> None:
        if isinstance(queued.command, _CHANGES):
            queued.future.set_result(failure)
        elif isinstance(queued.command, Status):
            queued.future.set_result(replace(self._snapshot, stale=True))
        else:
            queued.future.set_result(None)

    def _refuse(self, queued: _Queued) -> None:
        # A reload queued just before stop is not applied: stop deregisters what is registered.
        if queued.future.set_running_or_notify_cancel():
            self._answer(queued, STOPPING)

    def _fail_pending_commands(self) -> None:
        while True:
            try:
                queued = self._commands.get_nowait()
            except queue.Empty:
                return
            if not queued.future.done():
                self._answer(queued, STOPPING)

    def _handle(self, queued: _Queued) -> None:
        command = queued.command
        if isinstance(command, Apply):
            self._apply(command.settings)
            queued.future.set_result(None)
        elif isinstance(command, SetMaintenance):
            if queued.abandoned:
                # Its caller has answered "will keep trying": remember the wish and let the
                # next attempt (on the retry schedule) carry it out.
                self._maintenance.want(command.on, command.reason)
                self._service.sync_soon()
                queued.future.set_result(Result(False, "queued"))
                return
            queued.future.set_result(self._set_maintenance(command.on, command.reason))
        elif isinstance(command, SetChecks):
            if queued.abandoned:
                self._checks.want(command.on)
                queued.future.set_result(Result(False, "queued"))
                return
            queued.future.set_result(self._checks.switch(command.on))
        elif isinstance(command, Status):
            self._service.refresh_live_status()
            self._publish()
            queued.future.set_result(self._snapshot)

    def _set_maintenance(self, on: bool, reason: str) -> Result:
        self._maintenance.want(on, reason)
        service_id = self._service.definition["ID"]
        try:
            self._service.converge()
        except ConsulError as exc:
            self._service.failed(exc)
            return Result(False, f"{self._link.scrub(str(exc))}; will keep trying")
        word = "set" if on else "unset"
        self._service.succeeded(f"ok, maintenance mode {word}")
        return Result(True, f"Maintenance mode for service {service_id} is {word} "
                            f"(Consul accepted it)")

    def _apply(self, settings: Settings) -> None:
        link, service = self._link, self._service
        old = link.settings
        if settings == old:
            return
        self._checks.settings_changed(old, settings)
        definition = self._checks.definition(settings)
        agent_changed = settings.transport_key() != old.transport_key()
        moved = settings.agent_url != old.agent_url or settings.service_id != old.service_id
        self._kv.want(settings)
        if moved and service.sent:
            # Deregistered only once the new registration is in: never a moment without one.
            self._retired.add(link.consul, old.service_id, old.name,
                              service.definition["Address"], service.definition["Port"])
        link.reload(settings, new_client=agent_changed, keep_old=self._retired.holds(link.consul))
        if moved:
            service.moved()
            self._maintenance.forget_agent_view()
        link.log(logging.INFO, "Consul: settings reloaded")
        for problem in meta_problems(settings):
            link.log(logging.WARNING, "Consul: %s", problem)
        service.apply(definition, elsewhere=moved or agent_changed)

    def _shutdown(self, stop: Stop) -> None:
        if stop.deregister:
            self._service.deregister(stop.deadline)
            timeout_s = self._link.settings.timeout_s
            if self._link.current is not None:
                self._kv.remove(min(timeout_s, max(stop.deadline - time.monotonic(),
                                                   min(0.1, timeout_s))))
            if self._retired and stop.deadline > time.monotonic():
                try:
                    self._retired.deregister(budget_s=max(stop.deadline - time.monotonic(), 0.05),
                                             interruptible=False)
                except ConsulError as exc:
                    self._link.log(logging.WARNING, "Consul: could not deregister an old "
                                   "service: %s", self._link.scrub(str(exc)))
        if self._notify.pending:
            # Within what is left of the caller's budget (a floor as for the deregister).
            timeout_s = self._link.settings.timeout_s
            self._notify.flush(max(stop.deadline - time.monotonic(), min(0.1, timeout_s)),
                               interruptible=False)

    # -- status ----------------------------------------------------------------------------------

    def _make_snapshot(self, running: bool) -> StatusSnapshot:
        link, service, kv = self._link, self._service, self._kv.publisher
        definition = service.definition
        return StatusSnapshot(
            agent_url=link.settings.agent_url,
            service_id=definition["ID"],
            service_name=definition["Name"],
            address=definition["Address"],
            port=definition["Port"],
            running=running,
            agent_reachable=link.reachable,
            agent_version=link.version,
            state=service.state.value,
            registered=service.registered,
            registered_since=service.since,
            last_error=link.last_error,
            maintenance=self._maintenance.wanted,
            maintenance_reason=self._maintenance.reason,
            maintenance_in_agent=self._maintenance.in_agent,
            health=service.health,
            checks_on=bool(definition.get("Checks")),
            checks_set_by="config" if self._checks.override is None else "discovery set check",
            check_type=link.settings.check_type,
            checks=tuple(("ttl" if "TTL" in c else "http", c["CheckID"],
                          *self._checks.states.get(c["CheckID"], ("", "")))
                         for c in definition.get("Checks") or []),
            ttl_error=self._checks.ttl_error,
            kv_prefix=kv.prefix,
            kv_keys=tuple((k, v.decode("utf-8", "replace")) for k, v in kv.written.items()),
            kv_wanted=len(kv.wanted),
            kv_session=kv.session_id,
            kv_renewed=kv.renewed_at,
            kv_error=self._kv.error,
            last_sync=service.last_sync,
            last_sync_result=service.last_sync_result,
            events=link.settings.events,
            events_fired=self._notify.fired,
            events_failed=self._notify.failed,
            last_event=self._notify.last_event,
            last_event_error=self._notify.last_error,
        )

    def _publish(self, running: bool = True) -> None:
        self._snapshot = self._make_snapshot(running)
