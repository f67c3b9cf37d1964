"""Process, port and clean-up plumbing shared by the test bed's services.

Everything a test starts goes through here so that nothing outlives the run: each child gets
PR_SET_PDEATHSIG (killed by the kernel if this Python dies, even by SIGKILL), and every child and
every clean-up callback is also recorded and run at interpreter exit and on SIGTERM/SIGHUP.
"""

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time

_lock = threading.RLock()
_children = {}  # pid -> Popen
_cleanups = {}  # key -> callable
_handed_ports = set()
_installed = False

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None


def _child_setup():
    """preexec_fn: die with the parent, and leave the parent's process group (Ctrl-C goes to us)."""
    os.setsid()
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv, *, log_path=None, env=None, cwd=None):
    """Start a long-running child that dies with us. Output goes to log_path (or /dev/null)."""
    install_handlers()
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, preexec_fn=_child_setup, close_fds=True)
    finally:
        if log_path:
            out.close()
    with _lock:
        _children[proc.pid] = proc
    return proc


def reap(proc, timeout=10.0, sig=signal.SIGTERM):
    """Signal proc (unless it already exited), wait up to timeout, then SIGKILL. Returns exit code."""
    if proc is None:
        return None
    try:
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode
    finally:
        forget(proc)


_TERMINATING = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGABRT,
                signal.SIGSEGV)


class ManagedProcess:
    """Base of the test bed's services: self.proc is the Popen (or None when not running).
    Subclasses provide start() and stop()."""

    proc = None

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def kill(self, sig=signal.SIGKILL):
        """Send sig; for terminating signals wait for the exit (SIGKILL after 15 s).
        Returns the exit code once the process is gone, else None."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig in _TERMINATING:
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        code = self.proc.poll()
        if code is not None:
            forget(self.proc)
            self.proc = None
        return code

    def restart(self, timeout=None):
        self.stop()
        return self.start(timeout)


def forget(proc):
    with _lock:
        _children.pop(proc.pid, None)


def register_cleanup(key, fn):
    """fn() runs at exit (or on SIGTERM/SIGHUP) unless unregister_cleanup(key) was called first."""
    install_handlers()
    with _lock:
        _cleanups[key] = fn


def unregister_cleanup(key):
    with _lock:
        _cleanups.pop(key, None)


def cleanup_all():
    """Kill every child still recorded, then run the recorded clean-ups (unmounts last)."""
    with _lock:
        children = list(_children.values())
        _children.clear()
        cleanups = list(_cleanups.items())
        _cleanups.clear()
    for proc in children:
        try:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
    for _key, fn in sorted(cleanups, key=lambda kv: str(kv[0])):
        try:
            fn()
        except Exception:  # noqa: BLE001
            pass


def _on_signal(signum, _frame):
    # Turn SIGTERM/SIGHUP into KeyboardInterrupt so pytest runs its teardowns; atexit does the rest.
    raise KeyboardInterrupt(f"signal {signum}")


def install_handlers():
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    atexit.register(cleanup_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


def _port_free(port, udp):
    kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp else [])
    for kind in kinds:
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(udp=False):
    """A port on 127.0.0.1 free for TCP (and UDP if asked) that this process has not handed out yet."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        with _lock:
            if port in _handed_ports:
                continue
            if not _port_free(port, udp):
                continue
            _handed_ports.add(port)
            return port
    raise RuntimeError("no free port found on 127.0.0.1")


def port_open(port, host="127.0.0.1", timeout=0.2):
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class GiveUp(Exception):
    """Raised by a wait_until predicate to stop waiting at once (e.g. the process died)."""


class WaitTimeout(AssertionError, TimeoutError):
    """wait_until gave up: a failed test (AssertionError) and a timeout (TimeoutError)."""


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """The tests' one way to wait: poll predicate() until it returns a truthy value (returned)
    or raise WaitTimeout naming `what`. Exceptions from predicate count as 'not yet', except
    GiveUp, which propagates."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as exc:  # noqa: BLE001 - remembered for the message
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else f" (last: {value!r})"
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)
