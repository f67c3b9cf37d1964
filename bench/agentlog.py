"""What a Consul agent's debug log says the module asked of it, and what of that reaches the
servers. Pure functions over the log's text (Consul 1.8 with log_level DEBUG):

    agent.http: Request finished: method=PUT url=/v1/session/renew/<uuid> from=... latency=...
    agent: Synced service: service=<id>          (anti-entropy: a Catalog.Register, a Raft write)

Where a request goes, by Consul's design (agent/consul/*_endpoint.go, agent/local/state.go):
/v1/agent/* is answered by the local agent; a change it makes to a service or to a check's
status reaches the servers as an anti-entropy sync (counted from the "Synced" lines; a check's
output that changes while its status does not is synced at most every check_update_interval,
5 min). A session renewal is an RPC the leader answers (it resets an in-memory timer: no Raft
write). Catalog, health, KV reads and session info are server reads (the leader's, in the
default consistency mode). Session create/destroy and KV writes are Raft writes. An event is
an RPC to a server that gossips it to every node.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Dict, Iterable, List, Tuple
from urllib.parse import parse_qs, urlsplit

AGENT = "agent only"
LEADER_RPC = "leader RPC (no Raft write)"
SERVER_READ = "server read"
RAFT_WRITE = "Raft write"
GOSSIP = "server RPC + gossip to every node"
# The order the tables list them in: cheapest first.
REACHES = (AGENT, LEADER_RPC, SERVER_READ, RAFT_WRITE, GOSSIP)

_REQUEST = re.compile(r"agent\.http: Request finished: method=(\S+) url=(\S+)")
_SYNC = re.compile(r"agent: (Synced|Deregistered) (service|check)\b")
_CHECK_RUN = re.compile(r"agent: Check status updated: check=(\S+)")

# (path pattern, the endpoint's name with its variable parts named)
_PATHS: Tuple[Tuple[re.Pattern, str], ...] = tuple((re.compile(p), name) for p, name in (
    (r"^/v1/agent/service/register$", "/v1/agent/service/register"),
    (r"^/v1/agent/service/deregister/[^/]+$", "/v1/agent/service/deregister/:id"),
    (r"^/v1/agent/service/maintenance/[^/]+$", "/v1/agent/service/maintenance/:id"),
    (r"^/v1/agent/service/[^/]+$", "/v1/agent/service/:id"),
    (r"^/v1/agent/check/update/[^/]+$", "/v1/agent/check/update/:check"),
    (r"^/v1/agent/check/(pass|warn|fail)/[^/]+$", "/v1/agent/check/\\1/:check"),
    (r"^/v1/agent/check/register$", "/v1/agent/check/register"),
    (r"^/v1/agent/check/deregister/[^/]+$", "/v1/agent/check/deregister/:check"),
    (r"^/v1/agent/health/service/id/[^/]+$", "/v1/agent/health/service/id/:id"),
    (r"^/v1/session/(renew|destroy|info)/[^/]+$", "/v1/session/\\1/:session"),
    (r"^/v1/kv/.*/$", "/v1/kv/:prefix/"),
    (r"^/v1/kv/.+$", "/v1/kv/:key"),
    (r"^/v1/catalog/service/[^/]+$", "/v1/catalog/service/:name"),
    (r"^/v1/health/service/[^/]+$", "/v1/health/service/:name"),
    (r"^/v1/event/fire/[^/]+$", "/v1/event/fire/:name"),
))
# Query parameters that change what a request is (the others are left out of its name).
_MEANINGFUL = ("acquire", "release", "recurse", "cas", "stale", "consistent")


def requests_in(text: str) -> List[Tuple[str, str]]:
    """(method, url) of every request the agent logged in `text`."""
    return _REQUEST.findall(text)


def syncs_in(text: str) -> Dict[str, int]:
    """Anti-entropy changes sent to the servers: {"Synced service": n, "Deregistered check": m}."""
    return dict(Counter("%s %s" % match for match in _SYNC.findall(text)))


def check_updates_in(text: str, prefix: str = "") -> int:
    """How many times the agent set the status of a check whose ID starts with `prefix`: each
    run of an HTTP check (a poll of Asterisk), each TTL report."""
    return sum(1 for check in _CHECK_RUN.findall(text) if check.startswith(prefix))


def endpoint(method: str, url: str) -> str:
    """The request's endpoint, its variable parts named: 'PUT /v1/session/renew/:session'.
    A blocking query (index= or hash=) is named as such."""
    parts = urlsplit(url)
    path = parts.path
    for pattern, name in _PATHS:
        if pattern.match(path):
            path = pattern.sub(name, path)
            break
    query = parse_qs(parts.query, keep_blank_values=True)
    flags = [key for key in _MEANINGFUL if key in query]
    name = "%s %s%s" % (method, path, ("?" + "&".join(flags)) if flags else "")
    if "index" in query or "hash" in query:
        name += " (blocking)"
    return name


def reach(method: str, url: str) -> str:
    """How far a request goes: the agent only, the leader, the servers' store, the gossip."""
    path = urlsplit(url).path
    if path.startswith("/v1/agent/"):
        return AGENT
    if path.startswith("/v1/session/renew/"):
        return LEADER_RPC
    if path.startswith(("/v1/session/create", "/v1/session/destroy/")):
        return RAFT_WRITE
    if path.startswith("/v1/event/fire/"):
        return GOSSIP
    if path.startswith("/v1/kv/"):
        return SERVER_READ if method == "GET" else RAFT_WRITE
    if path.startswith("/v1/txn"):
        return RAFT_WRITE
    return SERVER_READ  # catalog, health, session info, status: answered by a server


def tally(requests: Iterable[Tuple[str, str]], syncs: Dict[str, int],
          seconds: float) -> Dict[str, Dict[str, object]]:
    """{endpoint: {"count", "per_s", "reach"}}, the anti-entropy syncs as rows of their own
    (each is a Catalog.Register or Deregister: a Raft write)."""
    counts: Counter = Counter()
    reaches: Dict[str, str] = {}
    for method, url in requests:
        name = endpoint(method, url)
        counts[name] += 1
        reaches[name] = reach(method, url)
    for kind, n in syncs.items():
        name = "anti-entropy: %s" % kind
        counts[name] += n
        reaches[name] = RAFT_WRITE
    return {name: {"count": n, "per_s": n / seconds if seconds > 0 else 0.0,
                   "reach": reaches[name]}
            for name, n in sorted(counts.items(), key=lambda kv: (REACHES.index(reaches[kv[0]]),
                                                                  kv[0]))}


def by_reach(rows: Dict[str, Dict[str, object]]) -> Dict[str, float]:
    """Requests per second of one instance, summed by how far they go (every reach listed)."""
    out = {r: 0.0 for r in REACHES}
    for row in rows.values():
        out[str(row["reach"])] += float(row["per_s"])
    return out


def scaled(per_s: float, instances: int) -> float:
    """What `instances` boxes like this one send, per second (they are independent: the figures
    add up; a restart storm is another matter, see the per-start counts)."""
    return per_s * instances
