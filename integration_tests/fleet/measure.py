"""What the fleet scenarios measure with: the Result of a scenario, polling for the moments
things happen (epoch seconds, the clock Kamailio's and Asterisk's logs use), and the ways a
box is taken out of rotation or marked busy.
"""

import re
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

from .host import MODULE_OPTIONS, AsteriskHost

# How to take a box out of rotation for new calls (on) and put it back (off). Drain joins
# here, e.g. "drain": lambda host, on: host.asterisk.rx(f"discovery set drain {...}").
OUT_OF_ROTATION: Dict[str, Callable[[AsteriskHost, bool], object]] = {
    "maintenance": lambda host, on: host.set_maintenance(on),
    "drain": lambda host, on: host.set_drain(on),
}


def _seconds(duration):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", duration)
    return float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)


CHECK_INTERVAL_S = _seconds(MODULE_OPTIONS["check_interval"])
CHECK_TIMEOUT_S = _seconds(MODULE_OPTIONS["check_timeout"])
RESYNC_INTERVAL_S = _seconds(MODULE_OPTIONS["resync_interval"])
# Consul reaps a critical service after DeregisterCriticalServiceAfter (at least 1 min),
# on a reaper that runs every 30 s.
REAP_BOUND_S = 90.0
POLL_S = 0.05


@dataclass
class Result:
    key: str
    title: str
    attempted: int
    failed: int
    seconds: Optional[float]
    measures: str                     # what `seconds` is
    details: Dict[str, object] = field(default_factory=dict)

    def as_json(self):
        return {"scenario": self.key, "title": self.title, "attempted": self.attempted,
                "failed": self.failed, "seconds": self.seconds, "measures": self.measures,
                "details": self.details}


def first_times(conditions, timeout, what):
    """Poll every condition until each has held once; {name: epoch when it first held}."""
    found = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(conditions):
        for name, check in conditions.items():
            if name not in found and check():
                found[name] = time.time()
        if len(found) < len(conditions):
            if time.monotonic() > deadline:
                missing = sorted(set(conditions) - set(found))
                raise AssertionError(f"{what}: not within {timeout}s: {missing}")
            time.sleep(POLL_S)
    return found


def routed(fleet, host):
    return host.service_id in fleet.proxy.routed_ids()


def back_in_rotation(fleet, host, timeout=60.0):
    """Epoch when host is passing in the catalog and a destination of Kamailio again."""
    return first_times({"back": lambda: fleet.status(host) == "passing" and routed(fleet, host)},
                       timeout, f"{host.name} back in rotation")["back"]


def active_calls(host):
    out = host.asterisk.rx("core show channels count")
    m = re.search(r"(\d+) active call", out)
    return int(m.group(1)) if m else 0


class ExtraCheck:
    """A TTL check of our own on a host's service, registered through its agent, set to a
    status and output: how warning (busy) and draining boxes look to consumers."""

    CHECK_ID = "fleet-extra-check"

    def __init__(self, host):
        self.host = host

    def set(self, status, output=""):
        agent = self.host.agent
        agent.put("/v1/agent/check/register", json={
            "ID": self.CHECK_ID, "Name": "fleet extra check", "ServiceID": self.host.service_id,
            "TTL": "10m", "Status": status}).raise_for_status()
        agent.put(f"/v1/agent/check/update/{self.CHECK_ID}",
                  json={"Status": status, "Output": output}).raise_for_status()

    def remove(self):
        self.host.agent.put(f"/v1/agent/check/deregister/{self.CHECK_ID}").raise_for_status()


def shares(tally, hosts):
    answered = tally.answered_by()
    total = sum(answered.values()) or 1
    return {h.name: round(answered.get(h.service_id, 0) / total, 3) for h in hosts}


