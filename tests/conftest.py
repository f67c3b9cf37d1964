"""Shared test fixtures: the fake agent (fake_agent, fake_factory: tests/fakeagent), the
real-Consul test bed (consul_agent, consul_factory, broken peers) and small helpers for
registrar tests."""

from __future__ import annotations

import threading
import time
from typing import List, Tuple

import pytest

from integration_tests.testbed.runtime import wait_until

pytest_plugins = ["integration_tests.testbed.fixtures", "tests.fakeagent.fixtures"]


class EventRecorder:
    """An on_event sink that records (name, headers) and lets a test wait for one."""

    def __init__(self):
        self.events: List[Tuple[str, List[Tuple[str, str]]]] = []
        self._changed = threading.Condition()

    def __call__(self, name, headers):
        with self._changed:
            self.events.append((name, list(headers)))
            self._changed.notify_all()

    def names(self):
        with self._changed:
            return [name for name, _ in self.events]

    def wait_for(self, name, count=1, timeout=10.0, **headers):
        """Wait until `count` events called `name` (with these header values) were seen."""
        def matching():
            return [dict(h) for n, h in self.events
                    if n == name and all(dict(h).get(k) == v for k, v in headers.items())]
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(matching()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {count}x {name} {headers} within {timeout} s; "
                                         f"saw {self.events}")
                self._changed.wait(left)
            return matching()[count - 1]


@pytest.fixture
def events():
    return EventRecorder()


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    return wait_until


@pytest.fixture
def no_registrar_threads_left():
    """Fails the test if a thread of the registrar (its worker, its watch, the nursery that
    started them: asterisk_consul/threads.py) outlives it."""
    yield
    alive = [t.name for t in threading.enumerate()
             if t.name.startswith(("consul-registrar", "consul-watch", "consul-pulse",
                                   "consul-threads", "consul-deadline", "consul-dns"))]
    assert not alive, f"registrar threads still alive: {alive}"
