"""One small class per area of Consul's HTTP API, py-consul style, all over one Transport."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from .deadline import MAX_KV_TREE_BYTES
from .errors import ConsulMalformed
from .transport import Transport


def _segment(value: str) -> str:
    """A URL path segment: a service ID like 'a/b' must not become two segments."""
    return quote(value, safe="")


def _json(response: Any, where: str, shape: Optional[type] = None) -> Any:
    """The JSON of an answer; with `shape`, it must be of that type (or null)."""
    try:
        value = response.json()
    except ValueError:
        raise ConsulMalformed(
            f"{where}: answer is not JSON (is this a Consul agent?)", response.status
        ) from None
    if shape is not None and value is not None and not isinstance(value, shape):
        raise ConsulMalformed(f"{where}: answer is a JSON {type(value).__name__}, not the "
                              f"{shape.__name__} Consul sends (is this a Consul agent?)",
                              response.status)
    return value


class AgentService:
    """/v1/agent/service/*: the services registered with this agent."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def register(self, definition: Dict[str, Any], replace_existing_checks: bool = True,
                 timeout_s: Optional[float] = None) -> None:
        params = {"replace-existing-checks": "true"} if replace_existing_checks else None
        self._transport.put("/v1/agent/service/register", params=params, json=definition,
                            timeout_s=timeout_s)

    def deregister(self, service_id: str, timeout_s: Optional[float] = None) -> None:
        self._transport.put(f"/v1/agent/service/deregister/{_segment(service_id)}",
                            timeout_s=timeout_s)

    def maintenance(self, service_id: str, enable: bool, reason: str = "",
                    timeout_s: Optional[float] = None) -> None:
        params = {"enable": "true" if enable else "false"}
        if reason:
            params["reason"] = reason  # requests URL-encodes it; no C-string terminator here
        self._transport.put(f"/v1/agent/service/maintenance/{_segment(service_id)}",
                            params=params, timeout_s=timeout_s)

    def get(self, service_id: str, timeout_s: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The agent's view of one service, or None when it does not know it."""
        path = f"/v1/agent/service/{_segment(service_id)}"
        response = self._transport.get(path, accept=(404,), timeout_s=timeout_s)
        if response.status == 404:
            return None
        return _json(response, f"GET {path}", dict)


class AgentCheck:
    """/v1/agent/check*: the health checks registered with this agent."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def list(self, timeout_s: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        path = "/v1/agent/checks"
        return _json(self._transport.get(path, timeout_s=timeout_s), f"GET {path}", dict) or {}

    def register(self, definition: Dict[str, Any], timeout_s: Optional[float] = None) -> None:
        self._transport.put("/v1/agent/check/register", json=definition, timeout_s=timeout_s)

    def deregister(self, check_id: str, timeout_s: Optional[float] = None) -> None:
        self._transport.put(f"/v1/agent/check/deregister/{_segment(check_id)}",
                            timeout_s=timeout_s)

    def update(self, check_id: str, status: str, output: str = "",
               timeout_s: Optional[float] = None) -> None:
        """Report a TTL check's status (passing, warning, critical) with its output."""
        self._transport.put(f"/v1/agent/check/update/{_segment(check_id)}",
                            json={"Status": status, "Output": output}, timeout_s=timeout_s)


#: The agent health endpoint answers with its status code.
HEALTH_BY_STATUS_CODE = {200: "passing", 429: "warning", 503: "critical", 404: "unknown"}


class AgentHealth:
    """/v1/agent/health/service/id/:id — the local agent's verdict on one service."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def service_by_id(self, service_id: str, timeout_s: Optional[float] = None
                      ) -> Tuple[str, List[Dict[str, Any]]]:
        """(status, checks): status is passing, warning, critical or unknown (not registered)."""
        path = f"/v1/agent/health/service/id/{_segment(service_id)}"
        response = self._transport.get(path, accept=(404, 429, 503), timeout_s=timeout_s)
        status = HEALTH_BY_STATUS_CODE.get(response.status, "unknown")
        if status == "unknown":
            return status, []
        body = _json(response, f"GET {path}", dict) or {}
        checks = body.get("Checks") or []
        if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
            raise ConsulMalformed(f"GET {path}: Checks is not a list of objects")
        return status, checks


class Event:
    """/v1/event/*: Consul's user events, gossiped to every agent of the datacenter."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def fire(self, name: str, payload: bytes = b"", timeout_s: Optional[float] = None
             ) -> Dict[str, Any]:
        path = f"/v1/event/fire/{_segment(name)}"
        response = self._transport.request("PUT", path, data=payload, timeout_s=timeout_s)
        return _json(response, f"PUT {path}", dict) or {}


class Session:
    """/v1/session/*: sessions, which hold KV keys (Behavior delete: they go with it)."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def create(self, name: str, ttl: str, behavior: str = "delete",
               timeout_s: Optional[float] = None) -> str:
        path = "/v1/session/create"
        body = {"Name": name, "TTL": ttl, "Behavior": behavior, "LockDelay": "0s"}
        answer = _json(self._transport.put(path, json=body, timeout_s=timeout_s), f"PUT {path}",
                       dict)
        session_id = (answer or {}).get("ID")
        if not session_id or not isinstance(session_id, str):
            raise ConsulMalformed(f"PUT {path}: the answer holds no session ID")
        return session_id

    def renew(self, session_id: str, timeout_s: Optional[float] = None) -> bool:
        """False when Consul no longer knows the session (expired, destroyed, agent restarted)."""
        path = f"/v1/session/renew/{_segment(session_id)}"
        response = self._transport.put(path, accept=(404,), timeout_s=timeout_s)
        return response.status != 404

    def destroy(self, session_id: str, timeout_s: Optional[float] = None) -> None:
        self._transport.put(f"/v1/session/destroy/{_segment(session_id)}", timeout_s=timeout_s)

    def info(self, session_id: str, timeout_s: Optional[float] = None
             ) -> Optional[Dict[str, Any]]:
        path = f"/v1/session/info/{_segment(session_id)}"
        answer = _json(self._transport.get(path, timeout_s=timeout_s), f"GET {path}", list)
        if answer and not isinstance(answer[0], dict):
            raise ConsulMalformed(f"GET {path}: the answer is not a list of sessions")
        return answer[0] if answer else None


def _key_path(key: str) -> str:
    # Keys are paths: '/' separates, everything else is escaped.
    return "/v1/kv/" + quote(key, safe="/")


class KV:
    """/v1/kv/*: the key/value store."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def acquire(self, key: str, value: bytes, session_id: str,
                timeout_s: Optional[float] = None) -> bool:
        """Write `key` held by the session; False when another session holds it."""
        path = _key_path(key)
        response = self._transport.put(path, params={"acquire": session_id}, data=value,
                                       timeout_s=timeout_s)
        return _json(response, f"PUT {path}") is True

    def get_tree(self, prefix: str, timeout_s: Optional[float] = None
                 ) -> Dict[str, Dict[str, Any]]:
        """key -> {Value (bytes), Session} for every key under `prefix`."""
        return self._read(prefix, {"recurse": "true"}, timeout_s)

    def get(self, key: str, timeout_s: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """{Value (bytes), Session} of one key, or None when it does not exist."""
        return self._read(key, None, timeout_s).get(key)

    def _read(self, key: str, params: Optional[Dict[str, str]], timeout_s: Optional[float]
              ) -> Dict[str, Dict[str, Any]]:
        path = _key_path(key)
        response = self._transport.get(path, params=params, accept=(404,), timeout_s=timeout_s,
                                       max_bytes=MAX_KV_TREE_BYTES)
        if response.status == 404:
            return {}
        entries = {}
        for item in _json(response, f"GET {path}", list) or []:
            try:
                key, raw, session = item["Key"], item.get("Value"), item.get("Session") or ""
                if not isinstance(key, str) or not isinstance(session, str):
                    raise TypeError("Key and Session must be strings")
                value = base64.b64decode(raw, validate=True) if raw else b""
            except (KeyError, TypeError, AttributeError, binascii.Error, ValueError) as exc:
                raise ConsulMalformed(f"GET {path}: an entry is not a KV entry as Consul sends "
                                      f"it ({type(exc).__name__}: {str(exc)[:80]})") from None
            entries[key] = {"Value": value, "Session": session}
        return entries

    def delete(self, key: str, timeout_s: Optional[float] = None) -> None:
        self._transport.request("DELETE", _key_path(key), timeout_s=timeout_s)


class Catalog:
    """/v1/catalog/*: what the servers hold (the agent syncs its services there)."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def service_instance(self, name: str, service_id: str,
                         timeout_s: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The catalog's entry for one instance of service `name`, or None."""
        path = f"/v1/catalog/service/{_segment(name)}"
        quoted = service_id.replace("\\", "\\\\").replace('"', '\\"')
        params = {"filter": 'ServiceID == "%s"' % quoted}
        entries = _json(self._transport.get(path, params=params, timeout_s=timeout_s),
                        f"GET {path}", list) or []
        return next((e for e in entries
                     if isinstance(e, dict) and e.get("ServiceID") == service_id), None)


class Agent:
    """/v1/agent/self, plus the agent's service, check and health areas."""

    def __init__(self, transport: Transport):
        self._transport = transport
        self.service = AgentService(transport)
        self.check = AgentCheck(transport)
        self.health = AgentHealth(transport)

    def self(self, timeout_s: Optional[float] = None) -> Dict[str, Any]:
        path = "/v1/agent/self"
        return _json(self._transport.get(path, timeout_s=timeout_s), f"GET {path}", dict) or {}

    def _config(self, field: str, timeout_s: Optional[float]) -> str:
        config = self.self(timeout_s=timeout_s).get("Config") or {}
        value = config.get(field) if isinstance(config, dict) else None
        if value is not None and not isinstance(value, str):
            raise ConsulMalformed(f"GET /v1/agent/self: Config.{field} is not a string")
        return value or ""

    def version(self, timeout_s: Optional[float] = None) -> str:
        return self._config("Version", timeout_s)

    def node_id(self, timeout_s: Optional[float] = None) -> str:
        """The agent's node ID: the same agent reached under two URLs has one node ID."""
        return self._config("NodeID", timeout_s)

    def node_name(self, timeout_s: Optional[float] = None) -> str:
        """The agent's node name (what a session names as its Node)."""
        return self._config("NodeName", timeout_s)
