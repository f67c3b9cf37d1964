"""The watch on the agent: a thread of its own ("consul-watch") holding a blocking query on
the agent's view of our service (GET /v1/agent/service/<id>?hash=...&wait=..., Consul 1.3+).

It wakes the worker when the agent's view changes under us: the service changed or gone (a
deregistration by someone else, an agent restarted without its data), or the agent back after
a connection drop. The worker then syncs at once instead of at the next resync. It talks to the
agent only, never to the servers; stop() cuts the query short, so it never delays an unload.
Where blocking fails (an old agent, an ACL token that may not read the service), the periodic
resync stays the safety net.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional
from urllib.parse import quote

from ..backoff import Backoff, jittered
from ..consul import ConsulUnreachable
from ..settings import Settings
from ..threads import start_thread
from .link import AgentLink, tls_config

WATCH_THREAD_NAME = "consul-watch"
WAIT_S = 300.0          # one blocking query lasts at most this long (Consul's default: 5 min)
RETRY_S = 0.2           # while the agent does not answer: the first retry, then doubling
RETRY_MAX_S = 2.0       # to this (jittered): an agent that is back is seen within ~2 s
REFUSED_RETRY_S = 30.0  # after an answer that is no answer (403, 400, not Consul)

Wake = Callable[[str, bool], None]  # (why, the agent is back after not answering)


class AgentWatch:
    def __init__(self, link: AgentLink, wake: Wake):
        self._link = link
        self._wake = wake
        self._thread: Optional[threading.Thread] = None
        self._client: Optional[Any] = None  # the BlockingClient of the running query
        self._stop = threading.Event()
        self._target: tuple = ()
        # start() runs on the worker, close() on the thread that unloads: one at a time, and
        # nothing starts once closed.
        self._lock = threading.Lock()
        self._closed = False

    def start(self, settings: Settings) -> None:
        """Watch the service of these settings (once registered)."""
        self._watch(settings, only_if_running=False)

    def follow(self, settings: Settings) -> None:
        """New settings (a reload): a running watch restarts with them if its agent, token,
        TLS or service ID changed; one not started yet waits for the registration."""
        self._watch(settings, only_if_running=True)

    def _watch(self, settings: Settings, only_if_running: bool) -> None:
        from ..consul.blocking import BlockingClient  # requests: imported by the first client

        target = (settings.agent_url, settings.token, settings.service_id, tls_config(settings))
        with self._lock:
            running = self._thread is not None
            if self._closed or (target == self._target and running) or \
                    (only_if_running and not running):
                return
            self._halt()
            self._target = target
            self._stop = threading.Event()
            self._client = BlockingClient(settings.agent_url, settings.token, settings.timeout_s,
                                          target[3])
            self._thread = start_thread(WATCH_THREAD_NAME, self._run, self._client, self._stop,
                                        settings.service_id)

    def close(self) -> None:
        """Stop for good: the query is cut short and the thread joined; start() does nothing
        afterwards."""
        with self._lock:
            self._closed = True
            self._halt()

    def _halt(self) -> None:
        thread, client = self._thread, self._client
        self._thread = self._client = None
        self._stop.set()
        if client is not None:
            client.interrupt()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def _run(self, client, stop: threading.Event, service_id: str) -> None:
        path = f"/v1/agent/service/{quote(service_id, safe='')}"
        known_hash, lost = "", False
        backoff = Backoff(RETRY_S, RETRY_MAX_S)
        while not stop.is_set():
            params = {"hash": known_hash, "wait": f"{int(WAIT_S)}s"} if known_hash else {}
            try:
                status, headers, _ = client.get(path, params, WAIT_S if known_hash else 0.0)
            except ConsulUnreachable:
                if not lost and not stop.is_set():
                    self._link.log(logging.DEBUG, "Consul watch: the agent does not answer")
                lost = True
                stop.wait(backoff.next())
                continue
            backoff.reset()
            if status == 404:
                # Missing: the worker acts if it believes the service is there (someone
                # deregistered it, or the agent came back without it).
                self._wake("the agent does not know the service", lost)
                known_hash, lost = "", False
                stop.wait(1.0)  # the worker registers meanwhile
            elif status == 200:
                new_hash = headers.get("x-consul-contenthash", "")
                if lost or (known_hash and new_hash != known_hash):
                    self._wake("the agent is back" if lost else
                               "the agent's view of the service changed", lost)
                known_hash, lost = new_hash, False
                if not new_hash:  # no blocking here: an agent older than Consul 1.3
                    self._link.log(logging.INFO, "Consul watch: the agent does not support "
                                   "blocking on its services; the resync alone repairs")
                    return
            else:
                self._link.log(logging.DEBUG, "Consul watch: the agent answered %d; the resync "
                               "alone repairs for %g s", status, REFUSED_RETRY_S)
                known_hash = ""
                stop.wait(jittered(REFUSED_RETRY_S))
