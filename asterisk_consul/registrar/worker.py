"""The Registrar: the one owner of this module's Consul state, and the only thread that talks
to Consul ("consul-registrar"). Asterisk's threads hand it typed commands (commands.py) and
never wait longer than the bound they pass in:

    registrar = Registrar(settings, HostFacts(eid, version, instance), on_event)
    registrar.start()                              # returns at once
    registrar.set_maintenance(True, "upgrade", 2)  # -> Result(ok, message)
    registrar.status(1.0)                          # -> StatusSnapshot
    registrar.apply(new_settings)                  # reload; returns at once
    registrar.stop()                               # deregisters (bounded), joins the threads

The worker is a loop over parts, each owning its state and saying when it is next due:
Asterisk's state (asterisk.py), the service registration (service.py), the checks
(checks.py), the catalog (catalog.py), the KV session (kvsession.py). The watch on the agent
(watch.py) runs in a thread of its own and only wakes the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Any, Callable, Optional

from ..backoff import Backoff
from ..consul import ConsulError
from ..health import AsteriskState
from ..registration import HostFacts, meta_problems
from ..settings import Settings
from ..threads import start_thread
from .asterisk import AsteriskWatch, ReadState, VerdictSink
from .catalog import Catalog
from .checks import Checks
from .commands import (CHANGES, Apply, Queued, SetChecks, SetDrain, SetMaintenance, Status, Stop,
                       Wake)
from .drain import Drain
from .kvsession import KvSession
from .link import AgentLink, ConsulFactory, Stopping, consul_client
from .maintenance import Maintenance
from .notify import EventSink, Notifications
from .retired import Retired
from .service import ServiceRegistration
from .status import STOPPING, Result, StatusSnapshot, snapshot
from .watch import AgentWatch

WORKER_THREAD_NAME = "consul-registrar"


class PendingReload:
    """A reload whose settings could not be taken (a client that cannot be built from them):
    the running settings and registration stay whole, and the reload is tried again with
    backoff until it works or another reload replaces it."""

    def __init__(self, apply: Callable[[Settings], None]):
        self._apply = apply
        self.settings: Optional[Settings] = None
        self.reason = ""  # why the last attempt failed
        self._due: Optional[float] = None
        self._backoff = Backoff(0.5, 30.0)

    def failed(self, settings: Settings, reason: str) -> bool:
        """Returns whether the reason is news (to be logged)."""
        news = reason != self.reason
        self.settings, self.reason = settings, reason
        self._due = time.monotonic() + self._backoff.next()
        return news

    def clear(self) -> None:
        self.settings, self.reason, self._due = None, "", None
        self._backoff.reset()

    def due(self) -> Optional[float]:
        return self._due

    def run(self) -> None:
        self._due = None
        if self.settings is not None:
            self._apply(self.settings)


def _booted_and_idle() -> AsteriskState:
    return AsteriskState(booted=True, shutting_down=False, stop_requested=False, channels=0)


class Registrar:
    def __init__(self, settings: Settings, facts: HostFacts, on_event: EventSink, *,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 slow_retry_s: float = 60.0, consul_factory: ConsulFactory = consul_client,
                 host_state: ReadState = _booted_and_idle,
                 on_verdict: VerdictSink = lambda verdict: None, watch: bool = True,
                 forget_stop: Callable[[], None] = lambda: None):
        self.link = link = AgentLink(settings, facts, consul_factory)
        self.notify = Notifications(link, on_event)
        self.maintenance = Maintenance(link, self.notify)
        self.retired = Retired(link, self.notify)
        self.asterisk = AsteriskWatch(link, host_state, on_verdict, forget_stop)
        self.checks = Checks(link, self.notify, self.asterisk.verdict)
        self.drain = Drain(link, self.notify)
        self.checks.drain = self.drain
        self.service = ServiceRegistration(
            link, self.checks.definition(settings), self.maintenance, self.retired,
            self.notify, backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s,
            slow_retry_s=slow_retry_s)
        self.kv = KvSession(link, backoff_initial_s, self.notify)
        self.catalog = Catalog(link)
        self.pending_reload = PendingReload(self._apply)
        # The parts that call each other, once all exist.
        self.checks.service = self.kv.service = self.drain.service = self.service
        self.catalog.service = self.service
        self.drain.checks = self.asterisk.checks = self.checks
        self.asterisk.drain, self.drain.asterisk = self.drain, self.asterisk
        self.service.checks, self.service.kv, self.service.catalog = self.checks, self.kv, self.catalog
        self._watch = AgentWatch(link, self._wake) if watch else None
        if self._watch is not None:
            # Watched once registered (again after a reload to another agent, token or ID).
            self.service.on_registered = lambda: self._watch.start(self.link.settings)
        self._commands: "queue.Queue[Queued]" = queue.Queue()
        self._wake_lock = threading.Lock()
        self._wake_pending: Optional[tuple] = None  # (reason, agent back) of the queued Wake
        self._thread: Optional[threading.Thread] = None
        self._beat = time.monotonic()  # the worker's last turn of its loop
        self._lifecycle = threading.Lock()
        # Immutable, replaced whole by the worker; readable from any thread.
        self._snapshot = snapshot(self, running=False)

    # -- API for Asterisk threads --------------------------------------------------------------

    def start(self) -> None:
        """Start the worker; it registers in the background. Returns at once."""
        with self._lifecycle:
            if self.link.stop_requested.is_set():
                raise RuntimeError("a stopped Registrar cannot be started again")
            if self._thread is not None:
                return
            self._thread = start_thread(WORKER_THREAD_NAME, self._run)

    def stop(self, deregister: bool = True, timeout: Optional[float] = None) -> None:
        """Deregister (if asked) within `timeout` (default: the Consul timeout), stop the
        worker and join it. Afterwards no thread of ours runs and nothing is logged or fired."""
        timeout_s = self.link.settings.timeout_s
        budget = timeout_s if timeout is None else max(float(timeout), 0.0)
        deadline = time.monotonic() + budget
        with self._lifecycle:
            thread = self._thread
            already = self.link.stop_requested.is_set()
            self.link.stop_requested.set()
        if thread is None:
            self.link.silenced.set()
            return
        if not already:
            self._commands.put(Queued(Stop(deregister, deadline), Future()))
        if thread is threading.current_thread():
            return  # called from on_event: the worker exits after this job (and closes the watch)
        self._close_watch()  # cuts its query short: never delays the stop
        # The worker finishes at most one in-flight call (bounded by the Consul timeout), then
        # deregisters within what is left of `budget`.
        thread.join(budget + timeout_s + 5.0)
        if thread.is_alive():
            self.link.log(logging.ERROR, "Consul worker did not stop in time; it is left to "
                           "finish on its own")
        self.link.silenced.set()

    def apply(self, settings: Settings) -> None:
        """Reload with new settings: re-register in place if what we register changed.
        Returns at once; `enabled=False` is the caller's business (it calls stop)."""
        if not self.link.stop_requested.is_set():
            self._commands.put(Queued(Apply(settings), Future()))

    def set_maintenance(self, enable: bool, reason: str = "", timeout: float = 2.0) -> Result:
        """Put the service in (or out of) maintenance. Remembered and re-applied whenever the
        service is registered again; waits for Consul's answer at most `timeout` seconds."""
        return self._change(SetMaintenance(bool(enable), reason or ""), timeout)

    def set_checks(self, enable: bool, timeout: float = 2.0) -> Result:
        """Add or remove the health checks without re-registering the service; kept across
        resyncs and reloads until the check options in the config change."""
        return self._change(SetChecks(bool(enable)), timeout)

    def set_drain(self, enable: bool, reason: str = "", timeout: float = 2.0) -> Result:
        """Take the service out of the healthy set for new calls (or back in), at once; the
        calls up are followed until they end (DiscoveryDrained)."""
        return self._change(SetDrain(bool(enable), reason or ""), timeout)

    def alive(self) -> bool:
        """The worker runs and is not stuck: it turns its loop at least every HOST_POLL_AT_REST_S
        when idle, and one job makes a few Consul calls, each within the Consul timeout."""
        thread = self._thread
        stuck_after = 3 * self.link.settings.timeout_s + 5.0
        return (thread is not None and thread.is_alive()
                and time.monotonic() - self._beat < stuck_after)

    def _close_watch(self) -> None:
        if self._watch is None:
            return
        try:
            self._watch.close()
        except Exception as exc:  # noqa: BLE001 - the worker must stop all the same
            self.link.log(logging.ERROR, "Consul: the watch did not stop cleanly: %s", exc)

    def _wake(self, reason: str, agent_back: bool) -> None:
        """From the watch thread: the agent's view changed under us, or the agent is back.
        Wakes coalesce: at most one waits in the queue, carrying the latest reason (and
        "the agent is back" if any of them said so)."""
        if self.link.stop_requested.is_set():
            return
        with self._wake_lock:
            queued = self._wake_pending is not None
            back = agent_back or (queued and self._wake_pending[1])
            self._wake_pending = (reason, back)
        if not queued:
            self._commands.put(Queued(Wake(reason, agent_back), Future()))

    def _change(self, command: Any, timeout: float) -> Result:
        """Queue an operator's change and wait for Consul's answer at most `timeout`; past it
        the worker still carries it out (the caller is told it will keep trying)."""
        if self.link.stop_requested.is_set():
            return STOPPING
        queued = Queued(command, Future())
        self._commands.put(queued)
        try:
            return queued.future.result(timeout=max(float(timeout), 0.0))
        except FutureTimeout:
            queued.abandoned = True
            if self.link.stop_requested.is_set():
                return STOPPING
            return Result(False, f"timed out after {int(timeout * 1000)} ms; will keep trying")

    def status(self, timeout: float = 1.0) -> StatusSnapshot:
        """The registration state, with live parts fetched from Consul within `timeout`;
        past it, the cached state marked stale."""
        thread = self._thread
        if self.link.stop_requested.is_set() or thread is None or not thread.is_alive():
            return replace(self._snapshot, stale=True)
        queued = Queued(Status(), Future())
        self._commands.put(queued)
        try:
            return queued.future.result(timeout=max(float(timeout), 0.0))
        except FutureTimeout:
            queued.abandoned = True
            queued.future.cancel()  # not started yet: the worker will skip it
            return replace(self._snapshot, stale=True)

    # -- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        link = self.link
        link.consul  # noqa: B018 - made here, on the worker: requests is imported by the first
        link.log(logging.INFO, "Consul: registering service %s with the agent at %s",
                 link.settings.service_id, link.settings.agent_url)
        for problem in meta_problems(link.settings):
            link.log(logging.WARNING, "Consul: %s", problem)
        self._publish()
        parts = (self.asterisk, self.service, self.checks, self.catalog, self.kv,
                 self.pending_reload)
        # A part whose job raised is held back with a backoff of its own: whatever it failed
        # on (a bug, an answer no one foresaw), it cannot spin the worker, and it does not
        # push the other parts' schedules away.
        held = {part: 0.0 for part in parts}
        backoffs = {part: Backoff(0.5, 30.0) for part in parts}
        try:
            while True:
                self._beat = time.monotonic()
                due = min(max(d, held[p]) for p, d in ((p, p.due()) for p in parts)
                          if d is not None)
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
                    now = time.monotonic()
                    if when is not None and now >= when and now >= held[part]:
                        if self._guarded(part.run, part=part) or part is self.service:
                            backoffs[part].reset()  # the service schedules its own retries
                        else:
                            held[part] = time.monotonic() + backoffs[part].next()
        finally:
            self._close_watch()
            self._fail_pending_commands()
            clients = [link.close()] + self.retired.clients()
            for consul in {id(c): c for c in clients if c is not None}.values():
                consul.close()
            self._publish(running=False)
            link.silenced.set()  # also when stop() was called from on_event and did not join

    def _guarded(self, job: Callable[..., Any], *args: Any, part: Any = None) -> bool:
        """Run one job; a bug in it must not kill the worker (and with it the registration).
        Returns False when it raised. A part other than the service that raises is noted
        (logged once per kind) without moving the service's schedule."""
        failure = STOPPING
        changed = True
        ok = True
        try:
            changed = job(*args) is not False
        except Stopping:
            pass
        except Exception as exc:  # noqa: BLE001
            ok = False
            if part is None or part is self.service:
                self.service.failed(exc)
            else:
                self.link.note_error(exc)
            failure = Result(False, self.link.last_error)
        if changed:  # a job that says it changed nothing (a quiet poll) leaves the status be
            self._publish()
        queued = args[0] if args and isinstance(args[0], Queued) else None
        if queued is not None and not queued.future.done():
            # Never leave a caller waiting for its full timeout on a job that already ended.
            self._answer(queued, failure)
        if self.notify.pending and not self.link.stop_requested.is_set():
            # After the caller has its answer: an event never delays a CLI or AMI command.
            try:
                self.notify.flush()
            except Exception as exc:  # noqa: BLE001
                self.notify.drop_pending()
                self.link.log(logging.ERROR, "Consul: firing events failed: %s", exc)
            self._publish()
        return ok

    def _answer(self, queued: Queued, failure: Result) -> None:
        if isinstance(queued.command, CHANGES):
            queued.future.set_result(failure)
        elif isinstance(queued.command, Status):
            queued.future.set_result(replace(self._snapshot, stale=True))
        else:
            queued.future.set_result(None)

    def _refuse(self, queued: Queued) -> None:
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

    def _handle(self, queued: Queued) -> None:
        command = queued.command
        if isinstance(command, Apply):
            self._apply(command.settings)
            queued.future.set_result(None)
        elif isinstance(command, SetMaintenance):
            if queued.abandoned:
                # Its caller has answered "will keep trying": remember the wish and let the
                # next attempt (on the retry schedule) carry it out.
                self.maintenance.want(command.on, command.reason)
                self.service.sync_soon()
                queued.future.set_result(Result(False, "queued"))
                return
            queued.future.set_result(self._set_maintenance(command.on, command.reason))
        elif isinstance(command, SetChecks):
            if queued.abandoned:
                self.checks.want(command.on)
                queued.future.set_result(Result(False, "queued"))
                return
            queued.future.set_result(self.checks.switch(command.on))
        elif isinstance(command, SetDrain):
            if queued.abandoned:
                self.drain.want(command.on, command.reason)
                queued.future.set_result(Result(False, "queued"))
                return
            queued.future.set_result(self.drain.switch(command.on, command.reason))
        elif isinstance(command, Wake):
            with self._wake_lock:
                reason, agent_back = self._wake_pending or (command.reason, command.agent_back)
                self._wake_pending = None
            self.service.wake(reason, agent_back)
            queued.future.set_result(None)
        elif isinstance(command, Status):
            self.service.refresh_live_status()
            if not self.service.needs_register and self.service.registered:
                self.catalog.look()  # only of a registration that stands
            self._publish()
            queued.future.set_result(self._snapshot)

    def _set_maintenance(self, on: bool, reason: str) -> Result:
        self.maintenance.want(on, reason)
        service_id = self.service.definition["ID"]
        try:
            self.service.converge()
        except ConsulError as exc:
            self.service.failed(exc)
            return Result(False, f"{self.link.scrub(str(exc))}; will keep trying")
        word = "set" if on else "unset"
        self.service.succeeded(f"ok, maintenance mode {word}")
        return Result(True, f"Maintenance mode for service {service_id} is {word} "
                            f"(Consul accepted it)")

    def _apply(self, settings: Settings) -> None:
        """A reload: all or nothing. What can fail comes before anything changes; if it
        fails, the running settings stay and the reload is tried again later."""
        link, service = self.link, self.service
        old = link.settings
        if settings == old:
            self.pending_reload.clear()  # this one replaces any earlier one
            return
        agent_changed = settings.transport_key() != old.transport_key()
        try:
            client = link.client_for(settings) if agent_changed else None
        except Exception as exc:  # noqa: BLE001 - whatever it is, nothing changed
            reason = link.scrub(f"{type(exc).__name__}: {exc}")
            news = self.pending_reload.failed(settings, reason)
            link.log(logging.ERROR if news else logging.DEBUG, "Consul: reloaded settings not "
                     "applied, the running ones stay in use (tried again): %s", reason)
            return
        self.pending_reload.clear()
        self.checks.settings_changed(old, settings)
        definition = self.checks.definition(settings)
        moved = settings.agent_url != old.agent_url or settings.service_id != old.service_id
        self.kv.want(settings)
        if moved and service.sent:
            # Deregistered only once the new registration is in: never a moment without one.
            self.retired.add(link.consul, old.service_id, old.name,
                              service.definition["Address"], service.definition["Port"])
        link.reload(settings, client, keep_old=self.retired.holds(link.consul))
        if self._watch is not None:
            self._watch.follow(settings)  # a running watch asks with the new token, agent, ID
        if moved:
            service.moved()
            self.maintenance.forget_agent_view()
        link.log(logging.INFO, "Consul: settings reloaded")
        for problem in meta_problems(settings):
            link.log(logging.WARNING, "Consul: %s", problem)
        service.apply(definition, elsewhere=moved or agent_changed)

    def _shutdown(self, stop: Stop) -> None:
        if stop.deregister:
            self.service.deregister(stop.deadline)
            timeout_s = self.link.settings.timeout_s
            if self.link.current is not None:
                self.kv.remove(min(timeout_s, max(stop.deadline - time.monotonic(),
                                                   min(0.1, timeout_s))))
            if self.retired and stop.deadline > time.monotonic():
                try:
                    self.retired.deregister(budget_s=max(stop.deadline - time.monotonic(), 0.05),
                                             interruptible=False)
                except ConsulError as exc:
                    self.link.log(logging.WARNING, "Consul: could not deregister an old "
                                   "service: %s", self.link.scrub(str(exc)))
        if self.notify.pending:
            # Within what is left of the caller's budget (a floor as for the deregister).
            timeout_s = self.link.settings.timeout_s
            self.notify.flush(max(stop.deadline - time.monotonic(), min(0.1, timeout_s)),
                               interruptible=False)

    # -- status ----------------------------------------------------------------------------------

    def _publish(self, running: bool = True) -> None:
        self._snapshot = snapshot(self, running)
