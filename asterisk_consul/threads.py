"""Every thread of this package starts here:

    thread = start_thread("consul-watch", run, client, stop)   # started; returns a Thread

Why one helper. Linux gives a new thread its creator's name: the kernel copies `comm` (what
/proc/<pid>/task/*/comm, `top -H`, gdb and a core dump show) at the clone. A thread can rename
itself (prctl PR_SET_NAME; Python >= 3.14 does it in Thread's bootstrap) only once it runs, and
a new Python thread runs once the scheduler and the GIL let it: often milliseconds later on a
busy box. Until then it carries its creator's name. When the worker started the watch, a count
of names in that while saw two "consul-registra" (issue 24: 2 workers read where there was
one; a process like ours, sampled from outside, showed it on 1 watch start in 3 at rest and on
nearly all with other threads wanting the GIL).

What holds, and why:

1. No thread is ever born carrying the name of a thread of ours other than the nursery. One
   thread clones them all: the nursery ("consul-threads"), which does nothing else. A newborn
   carries "consul-threads" until it has its own name: never "consul-registra" nor
   "consul-watch", whoever asked for it. Letting the creator carry the child's name across the
   clone instead cannot work: right after a clone both threads carry the same name, so for that
   while the creator's own name is missing from a count and the child's is there twice. The
   thread that clones must be one that no count of workers or watches looks for.
2. The nursery itself is born from a thread that is not ours (Asterisk's, loading the module;
   a test's), and lives as long as any thread started here: a thread of ours is counted in
   `_live` from before its birth to its last line, so one that starts another (the worker
   starting the watch) always finds the nursery alive and never clones anything itself. (Only
   a thread that is not ours yet carries one of our names, as a test may make, would lend it
   to a nursery for the nursery's first instants.)
3. start_thread returns once the new thread carries its own name in the kernel: whoever saw it
   return, then counts names, finds it.
4. The last thread started here to end joins the nursery before it ends: joining the threads
   one started (unload joins the worker and the watch) leaves no thread of ours, the nursery
   included. An idle nursery waits on a condition: no wakeups, no CPU.
5. The other end of a life has the same window: before 3.13, join() returns once the thread
   has let go of Python, while its OS thread may still be there, under its name, for a moment
   (seen after 4 % of joins at rest, 32 % with another thread wanting the GIL; never on 3.14,
   whose join waits for the OS thread). So a thread's last act is to take the name
   "consul-ended": once joined, it is never counted as a worker, a watch or the nursery.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any, Callable, Deque, Optional

NURSERY_NAME = "consul-threads"
ENDED_NAME = "consul-ended"  # a thread past its last line of Python, until the OS reaps it


def name_native_thread(name: str) -> None:
    """Give the calling thread its name in /proc/<pid>/task/*/comm and `top -H` (Python does so
    itself from 3.14 on). Linux keeps 15 bytes. Best effort: nothing depends on it."""
    if sys.version_info < (3, 14):
        _kernel_name(name)


def _kernel_name(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, ctypes.c_char_p(name.encode("ascii", "replace")[:15]), 0, 0, 0)  # PR_SET_NAME
    except Exception:  # noqa: BLE001
        pass


class _Birth:
    def __init__(self, thread: threading.Thread):
        self.thread = thread
        self.done = threading.Event()
        self.error: Optional[BaseException] = None


class _Nursery:
    def __init__(self) -> None:
        self.births: Deque[_Birth] = deque()
        self.closing = False
        self.thread: Optional[threading.Thread] = None


_cond = threading.Condition()
_live = 0  # threads started here (asked for, alive, or ending): the nursery lives while > 0
_nursery: Optional[_Nursery] = None


def start_thread(name: str, target: Callable[..., Any], *args: Any,
                 daemon: bool = True) -> threading.Thread:
    """Start `target(*args)` in a thread named `name` (Thread.name and, on Linux, the kernel's
    name: its first 15 bytes). Returns the started Thread once the kernel shows its name."""
    global _live, _nursery
    named = threading.Event()
    thread = threading.Thread(target=_life, args=(name, named, target, args), name=name,
                              daemon=daemon)
    birth = _Birth(thread)
    with _cond:
        if _nursery is None or _nursery.closing:
            # No thread of ours is alive (each counts in _live until it has ended), so the
            # caller is not one of ours: the nursery is born carrying a name nobody counts.
            _nursery = _Nursery()
            _nursery.thread = threading.Thread(target=_nurse, args=(_nursery,),
                                               name=NURSERY_NAME, daemon=True)
            _nursery.thread.start()  # it waits for _cond before it looks at its births
        _live += 1
        _nursery.births.append(birth)
        _cond.notify_all()
    birth.done.wait()
    if birth.error is not None:
        _ended()
        raise birth.error
    named.wait()
    return thread


def _nurse(nursery: _Nursery) -> None:
    name_native_thread(NURSERY_NAME)  # before the first clone: same thread, in order
    while True:
        with _cond:
            while not nursery.births and not nursery.closing:
                _cond.wait()
            if not nursery.births:
                _kernel_name(ENDED_NAME)
                return  # closing: nothing of ours is alive, nothing is asked for
            birth = nursery.births.popleft()
        try:
            birth.thread.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller (e.g. no threads left)
            birth.error = exc
        birth.done.set()


def _life(name: str, named: threading.Event, target: Callable[..., Any], args: tuple) -> None:
    try:
        try:
            name_native_thread(name)
        finally:
            named.set()
        target(*args)
    finally:
        _ended()
        _kernel_name(ENDED_NAME)


def _ended() -> None:
    """A thread started here has ended (or never started): the last one closes the nursery and
    joins it."""
    global _live
    with _cond:
        _live -= 1
        if _live or _nursery is None:
            return
        nursery = _nursery
        nursery.closing = True
        _cond.notify_all()
    if nursery.thread is not None and nursery.thread is not threading.current_thread():
        nursery.thread.join()
