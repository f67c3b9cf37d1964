"""The bounds of one call to the agent: a total deadline and a body limit.

A socket timeout restarts at every byte received: a peer that drips one byte a second keeps a
call alive for ever. `Deadline` counts the whole call (connect, request, headers, body): when it
is up, the socket in use is shut down from a timer, which ends whatever read or write is
blocked on it. `interrupt()` does the same from another thread at once (an unload cutting a
blocking query short). The Transport's connections register their sockets with the running
call's Deadline (adapter.py); `resolve` bounds the DNS lookup of a host name the same way.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Optional

from ..threads import start_thread

#: The largest answer read from the agent, unless the call allows more (a KV tree of 64 keys
#: of 512 kB each, base64-encoded, is the largest thing this module reads).
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_KV_TREE_BYTES = 48 * 1024 * 1024

TIMER_THREAD_NAME = "consul-deadline"
DNS_THREAD_NAME = "consul-dns"

_active = threading.local()  # the Deadline of the call running on this thread


class Deadline:
    """Used as `with Deadline(seconds) as deadline:`; `deadline.watch(sock)` (or a connection
    made under it) is shut down once the time is up (`expired`) or interrupt() was called
    (`interrupted`); `cut` says either happened."""

    def __init__(self, seconds: float):
        self.seconds = max(float(seconds), 0.001)
        self.ends = time.monotonic() + self.seconds
        self.expired = False
        self.interrupted = False
        self._sock: Optional[socket.socket] = None
        self._owned = False  # _sock is a duplicate made for the watch: closed when done
        self._woken: Optional[threading.Event] = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._timer: Optional[threading.Thread] = None

    def __enter__(self) -> "Deadline":
        _active.deadline = self
        # A timer thread of its own, born named from the module's nursery (threads.py).
        self._timer = start_thread(TIMER_THREAD_NAME, self._wait)
        return self

    def __exit__(self, *exc_info) -> None:
        _active.deadline = None
        self._done.set()
        if self._timer is not None:
            self._timer.join()  # ends at once: no thread of ours outlives a call
        self.watch(None)

    def _wait(self) -> None:
        if not self._done.wait(self.seconds):
            self._cut(interrupted=False)

    @property
    def cut(self) -> bool:
        return self.expired or self.interrupted

    def remaining(self) -> float:
        return max(self.ends - time.monotonic(), 0.001)

    def watch(self, sock: Optional[socket.socket], owned: bool = False) -> None:
        """Shut `sock` down when the call is cut. owned: a duplicate made for the watch (one
        about to be wrapped in TLS, which detaches the original from its descriptor), closed
        when the watch moves on."""
        with self._lock:
            previous = self._sock if self._owned else None
            self._sock, self._owned = sock, owned
            if self.cut:
                _shutdown(sock)
            if previous is not None:
                previous.close()

    def wake_on_cut(self, event: Optional[threading.Event]) -> None:
        """`event` is set when the call is cut (what a DNS lookup waits on)."""
        with self._lock:
            self._woken = event
            cut_now = self.cut
        if cut_now and event is not None:
            event.set()

    def interrupt(self) -> None:
        """From any thread: end the call now, as its deadline would."""
        self._cut(interrupted=True)

    def _cut(self, interrupted: bool) -> None:
        with self._lock:
            if interrupted:
                self.interrupted = True
            else:
                self.expired = True
            _shutdown(self._sock)  # under the lock: an owned duplicate is not closed meanwhile
            woken = self._woken
        if woken is not None:
            woken.set()


def resolve(host: str, port: int, seconds: float) -> str:
    """The address to connect to for `host`, resolved within `seconds` (and before the running
    call's Deadline is cut, if there is one).

    getaddrinfo cannot be interrupted: it runs on a thread of its own ("consul-dns") that is
    waited for at most `seconds`; past it the call fails and the lookup is left to end on its
    own (the resolver's timeouts bound it). An IP address is returned as it is, at once."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    answer: list = []
    finished = threading.Event()

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0])
        except OSError as exc:
            answer.append(exc)
        finished.set()

    deadline = current()
    if deadline is not None:
        deadline.wake_on_cut(finished)
    try:
        start_thread(DNS_THREAD_NAME, lookup)
        finished.wait(max(seconds, 0.001))
    finally:
        if deadline is not None:
            deadline.wake_on_cut(None)
    if deadline is not None and deadline.interrupted:
        raise ConnectionAbortedError(f"interrupted while resolving {host}")
    if not answer:
        raise socket.timeout(f"resolving {host} took longer than {seconds:g} s")
    if isinstance(answer[0], OSError):
        raise answer[0]
    return answer[0]


def current() -> Optional[Deadline]:
    return getattr(_active, "deadline", None)


def _shutdown(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
