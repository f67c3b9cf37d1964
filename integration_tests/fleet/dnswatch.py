"""Consul DNS as the fleet's second consumer: once a second, the healthy set (the servers'
catalog: instances whose every check passes) and the proxy agent's DNS answer for
`<service>.service.consul` SRV; afterwards, the invariant that the DNS answer never lists a
box the healthy set dropped for longer than the answers' TTL plus LAG_S: one poll, and a
second for the server that answers (Consul DNS reads stale-allowed: any server, a follower's
view a heartbeat behind the leader's).

    watcher = DnsWatch(fleet).start(); ...; watcher.stop()
    checks, late = dns_invariant(watcher.samples)
"""

import threading
import time
from dataclasses import dataclass
from typing import FrozenSet, List, Optional

from integration_tests.dnsquery import srv

from .cluster import DNS_PORT, DNS_TTL_S, entry_status
from .host import SERVICE

POLL_S = 1.0
LAG_S = POLL_S + 1.0


@dataclass(frozen=True)
class Sample:
    time: float                          # when the DNS answer came
    healthy: Optional[FrozenSet[str]]    # service IDs passing in the catalog (None: no answer)
    listed: Optional[FrozenSet[str]]     # service IDs in the DNS answer (None: no answer)


def _box_of(target, hosts):
    """A SRV target (`ast1.node.dc1.consul.` or `0aef0065.addr.dc1.consul.`) as a host."""
    label = target.split(".", 1)[0]
    for host in hosts:
        if label == host.name:
            return host
        try:
            if ".".join(str(b) for b in bytes.fromhex(label)) == host.ns.address:
                return host
        except ValueError:
            pass
    return None


class DnsWatch:
    def __init__(self, fleet, service=SERVICE, poll=POLL_S):
        self.fleet = fleet
        self.name = f"{service.lower()}.service.consul"
        self.service = service
        self.poll = poll
        self.samples: List[Sample] = []
        self.unknown_targets = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dns-watch", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def sample(self):
        try:
            healthy = frozenset(e["Service"]["ID"] for e in self.fleet.cluster.health(self.service)
                                if entry_status(e) == "passing")
        except Exception:  # noqa: BLE001 - no server answers now (an election): no sample
            healthy = None
        try:
            listed = set()
            for target, _port, _prio, _weight in srv(DNS_PORT, self.name, timeout=1.0,
                                                    host=self.fleet.proxy.address):
                host = _box_of(target, self.fleet.hosts)
                if host is None:
                    self.unknown_targets.add(target)
                else:
                    listed.add(host.service_id)
            listed = frozenset(listed)
        except OSError:
            listed = None
        return Sample(time.time(), healthy, listed)

    def _run(self):
        while not self._stop.is_set():
            began = time.monotonic()
            self.samples.append(self.sample())
            self._stop.wait(max(0.0, self.poll - (time.monotonic() - began)))


def dns_invariant(samples, bound=DNS_TTL_S + LAG_S):
    """(checks, [(time, service_id, seconds since the healthy set dropped it)]): every box a
    DNS answer lists, against when the healthy set last dropped it."""
    checks, late = 0, []
    dropped_at = {}     # service_id -> first sample time it was missing from the healthy set
    seen = set()
    for s in samples:
        if s.healthy is not None:
            for sid in seen | s.healthy:
                if sid in s.healthy:
                    dropped_at.pop(sid, None)
                else:
                    dropped_at.setdefault(sid, s.time)
            seen |= s.healthy
        for sid in s.listed or ():
            checks += 1
            since = dropped_at.get(sid)
            if since is not None and s.time - since > bound:
                late.append((s.time, sid, s.time - since))
    return checks, late
