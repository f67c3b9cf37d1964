"""Helpers of the resilience tests (test_resilience_*.py) and of the bench (bench/).

    registrar_threads(ast)                # our worker threads in the Asterisk process
    consul_threads(ast)                   # the registrar's threads (worker, watch)
    module_threads(ast)                   # every thread of ours (worker, watch, pulse, nursery)
    consul_requests(agent, since)         # (method, url) the agent logged after an offset

A recording proxy in front of an agent is the test bed's StandInPeer(agent=agent).
"""

import re
import time
from pathlib import Path

from integration_tests import discovery as d

# Python names native threads from 3.14 (Asterisk 22's), asterisk_consul/threads.py does it
# before: Linux keeps 15 bytes of "consul-registrar". Counting by these names is sound because
# every thread of ours is born from the nursery ("consul-threads"), carries its own name before
# start_thread returns, and takes "consul-ended" before join returns (asterisk_consul/threads.py):
# no thread shows a worker's or a watch's name mid-birth or once joined.
NATIVE_WORKER_NAME = "consul-registra"
NATIVE_WATCH_NAME = "consul-watch"
NATIVE_PULSE_NAME = "consul-pulse"
NATIVE_NURSERY_NAME = "consul-threads"
_REQUEST_LINE = re.compile(r"agent\.http: Request finished: method=(\S+) url=(\S+)")


# -------------------------------------------------------------------------------- Asterisk
def native_threads(ast):
    """{thread name: count} of the Asterisk process (from /proc, names as the kernel has them)."""
    names = {}
    for task in Path("/proc/%d/task" % ast.pid).iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended while we looked
        names[name] = names.get(name, 0) + 1
    return names


def registrar_threads(ast):
    return native_threads(ast).get(NATIVE_WORKER_NAME, 0)


def consul_threads(ast):
    """The registrar's threads: the worker and the watch on the agent (none while disabled)."""
    threads = native_threads(ast)
    return threads.get(NATIVE_WORKER_NAME, 0) + threads.get(NATIVE_WATCH_NAME, 0)


def module_threads(ast):
    """Every thread the module starts: the registrar's, the bridge's pulse (while loaded), and
    the nursery that starts them."""
    threads = native_threads(ast)
    return consul_threads(ast) + sum(threads.get(name, 0)
                                     for name in (NATIVE_PULSE_NAME, NATIVE_NURSERY_NAME))


def timed(fn, *args, **kwargs):
    began = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - began


def unload(ast):
    """`module unload`, which must succeed at the first attempt (the module never refuses one);
    returns (output, seconds it took)."""
    out, took = d.timed_rx(ast, "module unload " + d.MODULE)
    assert "Unloaded" in out and not d.module_running(ast), out
    return out, took


def status_row(text, row):
    """The value of one row ("Last sync", "Agent", ...) of `discovery show status`."""
    match = re.search(r"^\s*%s:\s*(.*)$" % re.escape(row), text, re.M)
    assert match, "no %r row in:\n%s" % (row, text)
    return match.group(1)


# -------------------------------------------------------------------------------- Consul
def consul_log_offset(agent):
    try:
        return agent.log_path.stat().st_size
    except FileNotFoundError:
        return 0


def consul_requests(agent, since=0, method=None):
    """(method, url) of the HTTP requests the agent logged after byte offset `since`."""
    with open(agent.log_path, "rb") as fh:
        fh.seek(since)
        text = fh.read().decode("utf-8", "replace")
    found = _REQUEST_LINE.findall(text)
    return [(m, u) for m, u in found if method is None or m == method]


def consul_writes(agent, since=0):
    """The PUT requests (registrations, deregistrations, maintenance...) logged after `since`."""
    return consul_requests(agent, since, "PUT")
