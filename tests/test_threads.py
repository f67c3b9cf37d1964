"""Threads started through asterisk_consul.threads carry their own name in the kernel, and no
thread is ever seen carrying the name of the thread of ours that started it (issue 24)."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from asterisk_consul.threads import NURSERY_NAME, start_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and comm")

# Counts the names of a process's threads from outside, as integration_tests/resilience.py
# does: prints the number of samples and the most threads seen at once under each name.
SAMPLER = r"""
import sys, threading
from pathlib import Path
pid, most, samples, stop = int(sys.argv[1]), {}, 0, threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("ready", flush=True)
while not stop.is_set():
    names = {}
    for task in Path("/proc/%d/task" % pid).iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    samples += 1
    for name, count in names.items():
        most[name] = max(most.get(name, 0), count)
print(samples, most.get("consul-registra", 0), most.get("consul-watch", 0), flush=True)
"""


def comm(thread):
    return Path(f"/proc/self/task/{thread.native_id}/comm").read_text().strip()


def ours_alive():
    return [t.name for t in threading.enumerate()
            if t.name in ("consul-registrar", "consul-watch", NURSERY_NAME)]


def test_a_thread_carries_its_kernel_name_when_start_thread_returns():
    stop = threading.Event()
    thread = start_thread("consul-registrar", stop.wait)
    try:
        assert thread.name == "consul-registrar" and thread.daemon and thread.is_alive()
        assert comm(thread) == "consul-registra"  # Linux keeps 15 bytes
    finally:
        stop.set()
        thread.join(5)
    assert not ours_alive()


def test_threads_started_by_a_thread_of_ours_never_show_its_name():
    """The worker starts the watch. Counted from outside while it starts watches again and
    again, with other threads wanting the GIL (Asterisk's, in the module), no sample may see
    two "consul-registra": a newborn showing its creator's name is the miscount of issue 24.
    Before the helper, about 1 watch start in 3 showed it at rest, nearly all under load. Nor
    two "consul-watch": a joined watch whose OS thread is not gone yet (Python < 3.13) must not
    carry its name any more."""
    sampler = subprocess.Popen([sys.executable, "-c", SAMPLER, str(os.getpid())],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    busy_stop, unnamed = threading.Event(), []

    def busy():
        while not busy_stop.is_set():
            sum(range(2000))

    def worker(starts):
        for _ in range(starts):
            stop = threading.Event()
            watch = start_thread("consul-watch", stop.wait)
            if comm(watch) != "consul-watch":
                unnamed.append(comm(watch))
            stop.set()
            watch.join(5)

    busy_thread = threading.Thread(target=busy, daemon=True)
    try:
        assert sampler.stdout.readline().strip() == "ready"
        busy_thread.start()
        start_thread("consul-registrar", worker, 150).join(60)
    finally:
        busy_stop.set()
        busy_thread.join(5)
        out, _ = sampler.communicate("", timeout=30)
    samples, most_workers, most_watches = map(int, out.split())
    assert samples > 100, out
    assert most_workers == 1, f"{most_workers} threads named consul-registra at once ({out})"
    assert most_watches == 1, out
    assert not unnamed, unnamed
    assert not ours_alive()  # the last to end joined the nursery


def test_a_failed_start_is_raised_to_the_caller_and_leaves_nothing(monkeypatch):
    def refuse(self):
        raise RuntimeError("can't start new thread")

    stop = threading.Event()
    worker = start_thread("consul-registrar", stop.wait)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(threading.Thread, "start", refuse)
            with pytest.raises(RuntimeError, match="can't start new thread"):
                start_thread("consul-watch", stop.wait)
        watch = start_thread("consul-watch", stop.wait)  # the nursery still serves
    finally:
        stop.set()
    worker.join(5)
    watch.join(5)
    assert not ours_alive()
