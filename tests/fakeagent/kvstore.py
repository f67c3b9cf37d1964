"""Sessions, the KV store and user events, as a 1.8.7 agent (a dev server) answers them.

A session with a TTL lapses after twice its TTL without a renewal, as Consul's does; its
keys then go (Behavior delete) or are released (release), as when it is destroyed."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any, Dict, List, Optional

from .acl import Access
from .model import ApiError, decode_json, duration_s, kv_entry
from .state import Core

EVENT_LIMIT = 416  # name + payload bytes a 1.8.7 agent still fires (512 with its envelope)
EVENT_TOO_LARGE = ('1 error occurred:\n\t* error broadcasting event to segment "": user event '
                   'exceeds configured limit of 512 bytes before encoding\n\n')


class Store:
    def __init__(self, core: Core):
        self.core = core
        self.sessions: Dict[str, Dict[str, Any]] = {}
        self.kv: Dict[str, Dict[str, Any]] = {}
        self.lock_delays: Dict[str, float] = {}  # key -> monotonic time it may be taken again
        self.events: List[Dict[str, Any]] = []

    # -- sessions ------------------------------------------------------------------------

    def create_session(self, body: bytes, access: Access) -> Dict[str, str]:
        spec = decode_json(body) if body.strip() else {}
        ttl = spec.get("TTL") or ""
        if ttl:
            ttl_s = duration_s(ttl)
            if not 10 <= ttl_s <= 86400:
                raise ApiError(500, f"Invalid Session TTL '{int(ttl_s * 1e9)}', must be "
                                    f"between [10s=24h0m0s]")
        behavior = spec.get("Behavior") or "release"
        if behavior not in ("release", "delete"):
            raise ApiError(500, f"Invalid Behavior setting '{behavior}'")
        delay = spec.get("LockDelay", "15s")
        delay_s = delay if isinstance(delay, int) and delay < 1000 else duration_s(delay)
        access.write()
        with self.core.lock:
            index = self.core.touch()
            sid = str(uuid.uuid4())
            self.sessions[sid] = {
                "ID": sid, "Name": spec.get("Name") or "", "Node": self.core.node["Name"],
                "LockDelay": int(delay_s * 1e9), "Behavior": behavior, "TTL": ttl,
                "NodeChecks": ["serfHealth"], "ServiceChecks": None,
                "CreateIndex": index, "ModifyIndex": index,
                "_ttl_s": duration_s(ttl) if ttl else None}
            self._renewed(self.sessions[sid])
            return {"ID": sid}

    def session_info(self, sid: str, access: Access) -> List[Dict[str, Any]]:
        _uuid(sid)
        with self.core.lock:
            self._lapse()
            if access.filtered() or sid not in self.sessions:
                return []
            return [_public(self.sessions[sid])]

    def renew(self, sid: str, access: Access) -> List[Dict[str, Any]]:
        _uuid(sid)
        access.write()
        with self.core.lock:
            self._lapse()
            session = self.sessions.get(sid)
            if session is None:
                raise ApiError(404, f"Session id '{sid}' not found")
            self._renewed(session)
            return [_public(session)]

    def destroy(self, sid: str, access: Access) -> bool:
        _uuid(sid)
        access.write()
        with self.core.lock:
            if sid in self.sessions:
                self.invalidate(sid)
            return True

    def invalidate(self, sid: str) -> None:
        """The session ends: its keys go (delete) or are freed (release), lock delay after."""
        with self.core.lock:
            session = self.sessions.pop(sid)
            delay_s = session["LockDelay"] / 1e9
            for key in [k for k, e in self.kv.items() if e.get("Session") == sid]:
                if session["Behavior"] == "delete":
                    del self.kv[key]
                else:
                    self.kv[key]["Session"] = ""
                if delay_s > 0:
                    self.lock_delays[key] = time.monotonic() + delay_s
            self.core.touch()

    # -- KV ------------------------------------------------------------------------------

    def get(self, key: str, query: Dict[str, str], access: Access) -> Optional[Any]:
        """[entries], the raw value (?raw) or None (404)."""
        with self.core.lock:
            self._lapse()
            if "recurse" in query:
                if access.filtered():
                    return None
                found = [kv_entry(e) for k, e in sorted(self.kv.items()) if k.startswith(key)]
                return found or None
            access.read()
            entry = self.kv.get(key)
            if entry is None:
                return None
            return entry["Value"] if "raw" in query else [kv_entry(entry)]

    def put(self, key: str, query: Dict[str, str], value: bytes, access: Access) -> bool:
        if not key:
            raise ApiError(400, "Missing key name")
        access.write()
        with self.core.lock:
            self._lapse()
            entry = self.kv.get(key)
            holder = (entry or {}).get("Session") or ""
            if "acquire" in query:
                sid = query["acquire"]
                if sid not in self.sessions:
                    raise ApiError(500, f'invalid session "{sid}"')
                delayed = self.lock_delays.get(key, 0) > time.monotonic()
                if (holder and holder != sid) or (not holder and delayed):
                    return False
                entry = self._write(key, value, query, entry)
                if holder != sid:
                    entry["LockIndex"] += 1
                    entry["Session"] = sid
                return True
            if "release" in query:
                if not holder or holder != query["release"]:
                    return False
                self._write(key, value, query, entry)["Session"] = ""
                return True
            if "cas" in query:
                cas = int(query["cas"])
                if (cas == 0 and entry is not None) or \
                        (cas != 0 and (entry is None or entry["ModifyIndex"] != cas)):
                    return False
            self._write(key, value, query, entry)
            return True

    def delete(self, key: str, query: Dict[str, str], access: Access) -> bool:
        access.write()
        with self.core.lock:
            if "cas" in query:
                entry = self.kv.get(key)
                if entry is None or entry["ModifyIndex"] != int(query["cas"]):
                    return False
            doomed = [k for k in self.kv if k.startswith(key)] if "recurse" in query else [key]
            for k in doomed:
                self.kv.pop(k, None)
            self.core.touch()
            return True

    # -- events --------------------------------------------------------------------------

    def fire(self, name: str, query: Dict[str, str], payload: bytes, access: Access
             ) -> Dict[str, Any]:
        access.write(unknown_status=500)  # 1.8.7 answers an unknown token 500 here
        if len(name.encode()) + len(payload) > EVENT_LIMIT:
            raise ApiError(500, EVENT_TOO_LARGE)
        event = {"ID": str(uuid.uuid4()), "Name": name,
                 "Payload": base64.b64encode(payload).decode() if payload else None,
                 "NodeFilter": query.get("node", ""), "ServiceFilter": query.get("service", ""),
                 "TagFilter": query.get("tag", ""), "Version": 1, "LTime": 0}
        with self.core.lock:
            self.events.append(dict(event, LTime=len(self.events) + 1))
            self.core.touch()
        return event

    def listed_events(self, name: str, access: Access) -> List[Dict[str, Any]]:
        with self.core.lock:
            if access.filtered():
                return []
            return [dict(e) for e in self.events if not name or e["Name"] == name]

    # -- helpers -------------------------------------------------------------------------

    def _write(self, key: str, value: bytes, query: Dict[str, str],
               entry: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        index = self.core.touch()
        if entry is None:
            entry = self.kv[key] = {"Key": key, "LockIndex": 0, "Session": "",
                                    "CreateIndex": index}
        entry.update(Value=value, Flags=int(query.get("flags") or 0), ModifyIndex=index)
        return entry

    def _renewed(self, session: Dict[str, Any]) -> None:
        ttl_s = session["_ttl_s"]
        session["_expires"] = time.monotonic() + 2 * ttl_s if ttl_s else None

    def _lapse(self) -> None:
        now = time.monotonic()
        for sid in [s for s, v in self.sessions.items() if v["_expires"] and now > v["_expires"]]:
            self.invalidate(sid)


def _public(session: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in session.items() if not k.startswith("_")}


def _uuid(value: str) -> None:
    if len(value) != 36:
        raise ApiError(500, "failed session lookup: index error: UUID must be 36 characters")
