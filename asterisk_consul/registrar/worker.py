"""The Registrar: the one owner of this module's Consul state, and the only thread that talks
to Consul ("consul-registrar"). Asterisk's threads hand it typed commands (commands.py) and
never wait longer than the bound they pass in:

    registrar = Registrar(settings, HostFacts(eid, version, instance), on_event)
    registrar.start()                              # returns at once
    registrar.change(Change(MAINTENANCE, True, "upgrade"), 2)  # -> Result(ok, message)
    registrar.status(1.0)                          # -> StatusSnapshot
    registrar.apply(new_settings)                  # reload; returns at once
    registrar.stop()                               # deregisters (bounded), joins the threads

The worker thread runs the reconciler (reconciler.py): it waits for a command or for the
reconciler's next due job, whichever comes first. The watch on the agent (watch.py) runs in a
thread of its own and only wakes the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Any, Callable, Dict, Optional, Tuple

from ..backoff import Backoff
from ..clock import SYSTEM_CLOCK, Clock
from ..health import AsteriskState
from ..registration import HostFacts, meta_problems
from ..settings import Settings
from ..threads import start_thread
from .asterisk import ReadState, VerdictSink
from .choices import CHECK, DRAIN, MAINTENANCE, Change
from .commands import Apply, Queued, Status, Stop, Wake
from .link import AgentLink, ConsulFactory, Stopping, consul_client
from .notify import EventSink, Notifications
from .reconciler import Job, Reconciler
from .sip import HasTech
from .status import STOPPING, Result, StatusSnapshot
from .watch import AgentWatch

WORKER_THREAD_NAME = "consul-registrar"


def _booted_and_idle() -> AsteriskState:
    return AsteriskState(booted=True, shutting_down=False, stop_requested=False, channels=0)


class Registrar:
    def __init__(self, settings: Settings, facts: HostFacts, on_event: EventSink, *,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 slow_retry_s: float = 60.0, consul_factory: ConsulFactory = consul_client,
                 host_state: ReadState = _booted_and_idle,
                 on_verdict: VerdictSink = lambda verdict: None,
                 forget_stop: Callable[[], None] = lambda: None, clock: Clock = SYSTEM_CLOCK,
                 on_secret: Callable[[str], None] = lambda token: None,
                 sip_techs: HasTech = lambda tech: False):
        self.link = link = AgentLink(settings, facts, consul_factory, clock)
        self.notify = Notifications(link, on_event)
        self._watch = AgentWatch(link, self._wake)
        self.reconciler = Reconciler(
            link, self.notify, host_state, on_verdict, backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s, slow_retry_s=slow_retry_s, forget_stop=forget_stop,
            # Watched once registered (again after a reload to another agent, token or ID).
            on_registered=self._watch.start, on_reloaded=self._watch.follow,
            on_secret=on_secret, sip_techs=sip_techs)
        self._commands: "queue.Queue[Queued]" = queue.Queue()
        self._wake_lock = threading.Lock()
        self._wake_pending: Optional[Tuple[str, bool]] = None  # (reason, agent back) of the queued Wake
        self._thread: Optional[threading.Thread] = None
        self._beat = clock.monotonic()  # the worker's last turn of its loop
        self._lifecycle = threading.Lock()
        # Immutable, replaced whole by the worker; readable from any thread.
        self._snapshot = self.reconciler.snapshot(running=False)

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
        deadline = self.link.clock.monotonic() + budget
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

    def change(self, change: Change, timeout: float = 2.0) -> Result:
        """An operator's change (maintenance, check, drain: choices.py), remembered and applied
        again whenever the service is registered again. Waits for Consul's answer at most
        `timeout` seconds; past it the worker still carries it out (the caller is told it will
        keep trying)."""
        if self.link.stop_requested.is_set():
            return STOPPING
        queued = Queued(change, Future())
        self._commands.put(queued)
        try:
            return queued.future.result(timeout=max(float(timeout), 0.0))
        except FutureTimeout:
            queued.abandoned = True
            if self.link.stop_requested.is_set():
                return STOPPING
            return Result(False, f"timed out after {int(timeout * 1000)} ms; will keep trying")

    # The three kinds by name (the tests' and bench's shorthand for change()).
    def set_maintenance(self, enable: bool, reason: str = "", timeout: float = 2.0) -> Result:
        return self.change(Change(MAINTENANCE, bool(enable), reason or ""), timeout)

    def set_checks(self, enable: bool, timeout: float = 2.0) -> Result:
        return self.change(Change(CHECK, bool(enable)), timeout)

    def set_drain(self, enable: bool, reason: str = "", timeout: float = 2.0) -> Result:
        return self.change(Change(DRAIN, bool(enable), reason or ""), timeout)

    def alive(self) -> bool:
        """The worker runs and is not stuck: it turns its loop at least every HOST_POLL_AT_REST_S
        when idle, and one job makes a few Consul calls, each within the Consul timeout."""
        thread = self._thread
        stuck_after = 3 * self.link.settings.timeout_s + 5.0
        return (thread is not None and thread.is_alive()
                and self.link.clock.monotonic() - self._beat < stuck_after)

    def _close_watch(self) -> None:
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
            pending = self._wake_pending
            queued = pending is not None
            back = agent_back or (pending is not None and pending[1])
            self._wake_pending = (reason, back)
        if not queued:
            self._commands.put(Queued(Wake(reason, agent_back), Future()))

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
        link, reconciler, clock = self.link, self.reconciler, self.link.clock
        link.consul  # noqa: B018 - made here, on the worker: requests is imported by the first
        link.log(logging.INFO, "Consul: registering service %s with the agent at %s",
                 link.settings.service_id, link.settings.agent_url)
        for problem in meta_problems(link.settings):
            link.log(logging.WARNING, "Consul: %s", problem)
        self._publish()
        jobs = reconciler.jobs
        # A job that raised is held back with a backoff of its own: whatever it failed on (a
        # bug, an answer no one foresaw), it cannot spin the worker, and it does not push the
        # other jobs' schedules away. The service's sync schedules its own retries.
        held: Dict[str, float] = {job.name: 0.0 for job in jobs}
        backoffs = {job.name: Backoff(0.5, 30.0) for job in jobs}
        try:
            while True:
                self._beat = clock.monotonic()
                due = min(max(when, held[job.name]) for job, when in
                          ((job, job.due()) for job in jobs) if when is not None)
                try:
                    queued = self._commands.get(timeout=max(0.0, due - clock.monotonic()))
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
                for job in jobs:
                    when = job.due()
                    now = clock.monotonic()
                    if when is not None and now >= when and now >= held[job.name]:
                        if self._guarded(job.run, job=job) or job.own_retries:
                            backoffs[job.name].reset()
                        else:
                            held[job.name] = clock.monotonic() + backoffs[job.name].next()
        finally:
            self._close_watch()
            self._fail_pending_commands()
            clients = [link.close()] + reconciler.retired.clients()
            for consul in {id(c): c for c in clients if c is not None}.values():
                consul.close()
            self._publish(running=False)
            link.silenced.set()  # also when stop() was called from on_event and did not join

    def _guarded(self, task: Callable[..., Any], *args: Any, job: Optional[Job] = None) -> bool:
        """Run one task; a bug in it must not kill the worker (and with it the registration).
        Returns False when it raised. A job other than the service's sync that raises is noted
        (logged once per kind) without moving the service's schedule."""
        failure = STOPPING
        changed = True
        ok = True
        try:
            changed = task(*args) is not False
        except Stopping:
            pass
        except Exception as exc:  # noqa: BLE001
            ok = False
            self.reconciler.failed(exc, job)
            failure = Result(False, self.link.last_error)
        if changed:  # a job that says it changed nothing (a quiet look) leaves the status be
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
        if isinstance(queued.command, Change):
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
        command, reconciler = queued.command, self.reconciler
        if isinstance(command, Change):
            queued.future.set_result(reconciler.change(command, abandoned=queued.abandoned))
        elif isinstance(command, Apply):
            reconciler.apply(command.settings)
            queued.future.set_result(None)
        elif isinstance(command, Wake):
            with self._wake_lock:
                reason, agent_back = self._wake_pending or (command.reason, command.agent_back)
                self._wake_pending = None
            reconciler.wake(reason, agent_back)
            queued.future.set_result(None)
        elif isinstance(command, Status):
            reconciler.refresh()
            self._publish()
            queued.future.set_result(self._snapshot)

    def _shutdown(self, stop: Stop) -> None:
        self.reconciler.shutdown(stop.deregister, stop.deadline)

    def _publish(self, running: bool = True) -> None:
        self._snapshot = self.reconciler.snapshot(running)
