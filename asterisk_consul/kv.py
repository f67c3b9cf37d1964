"""The [kv] keys: written to Consul's KV store under kv_prefix, held by a Consul session.

The session has Behavior delete and a TTL the registrar's worker renews, so the keys vanish
on their own when Asterisk dies without unloading. `KvPublisher` is owned by the Registrar
and only ever used on its worker thread; `kv_entries` is the pure part.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

from .consul import Consul, ConsulError, ConsulNotFound
from .registration import HostFacts
from .settings import Settings
from .values import Duration, render_kv_template


def session_name(service_id: str) -> str:
    return f"res_discovery_consul:{service_id}"


def kv_values(settings: Settings, facts: HostFacts) -> Dict[str, str]:
    """What the placeholders of [kv] values and kv_prefix stand for."""
    return {"ID": settings.service_id, "NAME": settings.name, "EID": facts.eid,
            "ADDRESS": settings.discovery_ip, "PORT": str(settings.discovery_port),
            "VERSION": facts.version}


def kv_prefix(settings: Settings, facts: HostFacts) -> str:
    return render_kv_template(settings.kv_prefix, kv_values(settings, facts)).strip("/")


def kv_entries(settings: Settings, facts: HostFacts) -> List[Tuple[str, bytes]]:
    """(full key, value) for every [kv] entry, rendered, in file order."""
    values = kv_values(settings, facts)
    prefix = kv_prefix(settings, facts)
    return [((f"{prefix}/{key}" if prefix else key),
             render_kv_template(value, values).encode("utf-8"))
            for key, value in settings.kv]


class KvConflict(ConsulError):
    """A key is held by a session that is not ours: we do not take it."""


class KvPublisher:
    """The session and the keys it holds. Worker thread only."""

    def __init__(self) -> None:
        self.wanted: Dict[str, bytes] = {}
        self.written: Dict[str, bytes] = {}  # what Consul holds for us, as far as we know
        self.session_id = ""
        self.session_name = ""
        self.session_ttl = Duration("30s")
        self._session_made_as = ("", "")  # (name, TTL) the live session was created with
        self.prefix = ""
        self.renewed_at: Optional[float] = None  # time.time() of the last create/renew
        self.verify = True  # compare with Consul's tree at the next sync
        self._node_of: Dict[str, str] = {}  # our session -> the node it lives on
        # key -> (session, node) of another box with the same id holding it, as last seen
        self.same_id_conflicts: Dict[str, Tuple[str, str]] = {}

    def want(self, settings: Settings, facts: HostFacts) -> None:
        """Set what should be in Consul; the next sync writes and deletes accordingly."""
        self.wanted = dict(kv_entries(settings, facts))
        self.prefix = kv_prefix(settings, facts)
        # Another service ID or TTL: the next sync replaces the session (keys follow it).
        self.session_name = session_name(settings.service_id)
        self.session_ttl = settings.kv_session_ttl

    @property
    def active(self) -> bool:
        """Is there anything to keep in Consul (or to clean up)?"""
        return bool(self.wanted or self.written or self.session_id)

    def renew_interval_s(self) -> float:
        # Consul invalidates a session after up to 2 x TTL; renewing at TTL/2 leaves room
        # for a few failed attempts.
        return max(self.session_ttl.seconds / 2.0, 1.0)

    def sync(self, consul: Consul) -> str:
        """Make Consul hold exactly the wanted keys; returns what was done (for the log)."""
        done: List[str] = []
        if not self.wanted:
            if self.session_id or self.written:
                self.remove(consul)
                done.append("keys removed ([kv] is empty)")
            return ", ".join(done)
        if self.session_id and self._session_outdated():
            self._destroy_session(consul)
            done.append("session replaced")
        if self.session_id:
            if not consul.session.renew(self.session_id):
                self.session_id = ""
                self.written.clear()
                done.append("session was lost")
        if not self.session_id:
            self.session_id = consul.session.create(self.session_name, self.session_ttl)
            self._session_made_as = (self.session_name, self.session_ttl)
            self.written.clear()
            self.verify = True
        self.renewed_at = time.time()
        if self.verify:
            self._learn_written(consul)
        conflicts: List[str] = []
        self.same_id_conflicts = {}
        for key, value in self.wanted.items():
            if self.written.get(key) != value:
                try:
                    self._acquire(consul, key, value)
                except KvConflict as exc:
                    conflicts.append(str(exc))  # the other keys still go in
                    continue
                done.append(f"{key} written")
        for key in [k for k in self.written if k not in self.wanted]:
            consul.kv.delete(key)
            self.written.pop(key, None)
            done.append(f"{key} deleted")
        self.verify = bool(conflicts)  # after a conflict, look at Consul's tree again
        if conflicts:
            raise KvConflict("; ".join(conflicts))
        return ", ".join(done)

    def remove(self, consul: Consul, timeout_s: Optional[float] = None) -> None:
        """Take every key away: destroying the session deletes what it holds."""
        if self.session_id:
            self._destroy_session(consul, timeout_s)
        for key in list(self.written):
            consul.kv.delete(key, timeout_s=timeout_s)
            self.written.pop(key, None)

    # -- helpers -----------------------------------------------------------------------

    def _our_node(self, consul: Consul) -> str:
        """The node of our agent, as our own session names it (needs no agent:read ACL)."""
        if not self._node_of.get(self.session_id):
            info = consul.session.info(self.session_id) if self.session_id else None
            self._node_of = {self.session_id: str((info or {}).get("Node") or "")}
        return self._node_of[self.session_id]

    def _session_outdated(self) -> bool:
        return self._session_made_as != (self.session_name, self.session_ttl)

    def _destroy_session(self, consul: Consul, timeout_s: Optional[float] = None) -> None:
        try:
            consul.session.destroy(self.session_id, timeout_s=timeout_s)
        except ConsulNotFound:
            pass
        # Behavior delete: the keys it held are gone with it.
        self.session_id = ""
        self.written.clear()

    def _learn_written(self, consul: Consul) -> None:
        """What Consul really holds for our session (after a restart, someone's edit...)."""
        scope = self.prefix + "/" if self.prefix else ""
        tree = consul.kv.get_tree(scope)
        # Ours outside the tree read (an old prefix) stay known, so that they get deleted.
        kept = {key: value for key, value in self.written.items() if not key.startswith(scope)}
        kept.update({key: item["Value"] for key, item in tree.items()
                     if item.get("Session") == self.session_id})
        self.written = kept

    def _acquire(self, consul: Consul, key: str, value: bytes) -> None:
        if consul.kv.acquire(key, value, self.session_id):
            self.written[key] = value
            return
        # Held by another session. One of ours (an earlier run of this service that died, or
        # whose unload could not reach Consul) is taken over; anybody else's is left alone.
        holder = (consul.kv.get(key) or {}).get("Session", "")
        if not holder:
            # Released a moment ago by a session with a lock delay: Consul refuses it for
            # that long. Tried again at the next attempt.
            raise KvConflict(f"KV key {key} is in another session's lock delay (it was just "
                             f"released): not written yet")
        info = consul.session.info(holder)
        if info is not None and info.get("Name") == self.session_name:
            node, our_node = str(info.get("Node") or ""), self._our_node(consul)
            if not node or node != our_node:
                self.same_id_conflicts[key] = (holder, node or "?")
                # Same name, another node: a second box with the same `id` (a copied config,
                # a cloned VM). Destroying its session would delete all its keys, and it
                # would do the same to ours: a conflict, said, never a takeover.
                raise KvConflict(
                    f"KV key {key} is held by a live session of another Asterisk with the same "
                    f"id (session {holder} of node {node or '?'}; this box's agent is node "
                    f"{our_node or '?'}): not taken over; give each box its own id")
            consul.session.destroy(holder)
            if consul.kv.acquire(key, value, self.session_id):
                self.written[key] = value
                return
        name = (info or {}).get("Name") or "?"
        raise KvConflict(f"KV key {key} is held by another Consul session ({holder or '?'}, "
                         f"name {name}): not written")
