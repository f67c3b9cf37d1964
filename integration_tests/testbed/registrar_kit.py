"""What tests of the registrar share, with a real agent (integration_tests/) or the fake one
(tests/): the facts and settings they are written for, and a recorder of the AMI events."""

from __future__ import annotations

import threading
import time
from typing import List, Tuple

from asterisk_consul.registration import HostFacts
from asterisk_consul.settings import Settings

FACTS = HostFacts(eid="02:42:ac:11:00:02", version="22.1.0")


def settings_for(port, **overrides):
    base = dict(host="127.0.0.1", port=port, service_id="pbx-1", name="Asterisk",
                tags=("asterisk", "edge"), discovery_ip="127.0.0.1", discovery_port=5060,
                consul_timeout_ms=1000, resync_interval="300ms",
                check=False, check_type="http")  # what these tests were written for
    base.update(overrides)
    return Settings(**base)


def started(registrar):
    begun = time.monotonic()
    registrar.start()
    assert time.monotonic() - begun < 0.2, "start() must return at once"
    return registrar


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
