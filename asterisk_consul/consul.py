"""A small client for the parts of Consul's agent HTTP API this module uses.

One `Transport` (one requests.Session) does all HTTP and turns every failure into a
`ConsulError` subclass; small API classes (`Agent`, `AgentService`, `AgentCheck`,
`AgentHealth`) sit on top of it, py-consul style, and `Consul` builds them from `Settings`.

The ACL token travels only in the X-Consul-Token header: never in a URL, a repr or the text of
an error we raise (scrubbed, in case a peer echoes it back).
"""

from __future__ import annotations

import base64
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote

from .settings import Settings, ca_directory_bundle

# requests takes ~180 ms to import (it loads the CA bundle): the first Transport imports it,
# on the registrar's worker thread, so that `module load` on Asterisk's loader thread does not.
requests: Any = None
_Urllib3Timeout: Any = None
_TlsAdapter: Any = None


def _import_requests() -> None:
    global requests, _Urllib3Timeout, _TlsAdapter
    if requests is None:
        from urllib3.util import Timeout

        import requests as module

        _Urllib3Timeout = Timeout
        _TlsAdapter = _make_tls_adapter_class(module.adapters.HTTPAdapter)
        requests = module


def _make_tls_adapter_class(base: Any) -> Any:
    class TlsAdapter(base):
        """An HTTPAdapter whose HTTPS pools get extra urllib3 TLS arguments: server_hostname
        and assert_hostname (tls_server_name: SNI and the certificate are checked against that
        name while connecting to the host in the URL), ca_cert_data (the CAs of ca_path).
        Per request, requests adds verify/cert on top; these pool arguments stay."""

        def __init__(self, pool_tls: Dict[str, Any]):
            self._pool_tls = dict(pool_tls)
            super().__init__()

        def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
            pool_kwargs.update(self._pool_tls)
            super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    return TlsAdapter


def tls_options(settings: Settings) -> Tuple[Any, Any, Dict[str, Any]]:
    """(verify, cert, pool arguments) for requests from the TLS settings.

    verify: False (tls_verify = no), the CA file or directory, or True (the system's CAs).
    The CAs of ca_path are also read here as one bundle, so that a directory of plain PEM
    files works as it does for Consul's CLI (OpenSSL alone would want hash links).
    """
    pool: Dict[str, Any] = {}
    if not settings.tls_verify:
        verify: Any = False
    elif settings.ca_file:
        verify = settings.ca_file
    elif settings.ca_path:
        verify = settings.ca_path
    else:
        verify = True
    if settings.tls_verify and settings.ca_path:
        bundle = ca_directory_bundle(settings.ca_path)
        if bundle:
            pool["ca_cert_data"] = bundle
    if settings.tls_verify and settings.tls_server_name:
        pool["server_hostname"] = settings.tls_server_name
        pool["assert_hostname"] = settings.tls_server_name
    cert = (settings.client_cert, settings.client_key) if settings.client_cert else None
    return verify, cert, pool

__all__ = [
    "ConsulError", "ConsulUnreachable", "ConsulServerError", "ConsulPermissionDenied",
    "ConsulNotFound", "ConsulRequestError", "Transport", "Agent", "AgentService",
    "AgentCheck", "AgentHealth", "Event", "Session", "KV", "Consul", "HEALTH_BY_STATUS_CODE", "tls_options",
]

_REDACTED = "<redacted>"
_MAX_DETAIL_CHARS = 200  # Consul's error bodies are one line; a misdirected peer's may be a page


# -- errors ------------------------------------------------------------------------------------

class ConsulError(Exception):
    """A Consul call failed. `status` is the HTTP status, or None when nothing answered."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class ConsulUnreachable(ConsulError):
    """No HTTP answer: connection refused, timed out, DNS failure, TLS failure."""


class ConsulServerError(ConsulError):
    """The agent answered 5xx."""


class ConsulPermissionDenied(ConsulError):
    """403: the ACL token is missing, unknown or lacks the needed policy."""


class ConsulNotFound(ConsulError):
    """404: no such service, check or endpoint."""


class ConsulRequestError(ConsulError):
    """Any other 4xx: Consul rejected what we sent."""


# -- transport ---------------------------------------------------------------------------------

class Transport:
    """All HTTP to one Consul agent, over one requests.Session.

    Not thread-safe by design: the registrar's worker thread is its only user.
    """

    def __init__(self, base_url: str, token: str, timeout_s: float, verify: Any = True,
                 cert: Any = None, pool_tls: Optional[Dict[str, Any]] = None):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self._token = token or ""
        _import_requests()
        self._session = requests.Session()
        self._session.verify = verify
        self._session.cert = cert
        if pool_tls:
            self._session.mount("https://", _TlsAdapter(pool_tls))
        if verify is False and self.base_url.startswith("https:"):
            # Said once, at load, by the settings; not once per call by urllib3.
            from urllib3.exceptions import InsecureRequestWarning
            import warnings

            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        # Environment proxies (HTTP_PROXY…) would route calls to a local agent through a proxy.
        self._session.trust_env = False
        self._session.headers["User-Agent"] = "res_discovery_consul"
        if self._token:
            self._session.headers["X-Consul-Token"] = self._token

    def __repr__(self) -> str:
        return f"<Transport {self.base_url} token={'set' if self._token else 'none'}>"

    def close(self) -> None:
        self._session.close()

    def scrub(self, text: str) -> str:
        """Remove the token from text bound for a log line or an exception."""
        if self._token and text:
            text = text.replace(self._token, _REDACTED)
        return text

    def request(self, method: str, path: str, *, params: Optional[Dict[str, str]] = None,
                json: Any = None, data: Optional[bytes] = None, accept: Iterable[int] = (),
                timeout_s: Optional[float] = None) -> requests.Response:
        """One HTTP call. 2xx and any status in `accept` are returned; the rest raise.

        `timeout_s` bounds the whole call (connect + answer), not each socket operation, so
        a blackholed agent costs at most that long.
        """
        budget = self.timeout_s if timeout_s is None else max(float(timeout_s), 0.001)
        where = f"{method} {path}"
        try:
            response = self._session.request(
                method, self.base_url + path, params=params, json=json, data=data,
                timeout=_Urllib3Timeout(total=budget, connect=budget, read=budget))
        except requests.Timeout:
            raise ConsulUnreachable(
                f"{where}: no answer from Consul at {self.base_url} within {budget:g} s") from None
        except requests.exceptions.SSLError as exc:
            reason = self._reason(exc)
            raise ConsulUnreachable(
                f"{where}: TLS failure talking to {self.base_url}: {reason}{_tls_hint(reason)}"
            ) from None
        except requests.ConnectionError as exc:
            # A TLS 1.3 alert (client certificate refused) may only arrive with the answer.
            reason = self._reason(exc)
            raise ConsulUnreachable(f"{where}: cannot reach Consul at {self.base_url}: {reason}"
                                    f"{_tls_hint(reason)}") from None
        except requests.RequestException as exc:
            raise ConsulUnreachable(f"{where}: {self._reason(exc)}") from None

        status = response.status_code
        if 200 <= status < 300 or status in accept:
            return response
        detail = self.scrub(_short(response.text)) or response.reason or ""
        if status == 403:
            raise ConsulPermissionDenied(
                f"{where}: permission denied: {detail} (check the ACL token and its policy)",
                status)
        if status == 404:
            raise ConsulNotFound(f"{where}: not found: {detail}", status)
        if status >= 500:
            raise ConsulServerError(f"{where}: Consul server error {status}: {detail}", status)
        raise ConsulRequestError(f"{where}: Consul rejected the request ({status}): {detail}",
                                 status)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def _reason(self, exc: BaseException) -> str:
        """The innermost cause of a requests error, which is what an operator can act on."""
        reason: BaseException = exc
        # requests wraps urllib3 which wraps the OSError: the last link says "Connection refused".
        while True:
            inner = getattr(reason, "reason", None) or reason.__context__
            if inner is None or inner is reason or not isinstance(inner, BaseException):
                break
            reason = inner
        text = str(reason) or type(reason).__name__
        # urllib3 prefixes an object repr ("<urllib3.connection…>: Failed…"): keep the tail.
        if text.startswith("<") and ">: " in text:
            text = text.split(">: ", 1)[1]
        return self.scrub(_short(text))


def _tls_hint(reason: str) -> str:
    """What to check, for the TLS failures an operator meets."""
    text = reason.lower()
    if "hostname mismatch" in text or "doesn't match" in text or "not valid for" in text:
        return (" (the agent's certificate does not carry the name checked: the host, or "
                "tls_server_name when set)")
    if "certificate verify failed" in text:
        return (" (the agent's certificate is not signed by a CA in ca_file/ca_path; "
                "the connection was refused, nothing was sent)")
    if "certificate required" in text or "bad certificate" in text or "unknown ca" in text:
        return " (the agent refused our client certificate, or wants one: client_cert/client_key)"
    if "eof occurred in violation of protocol" in text or "unexpected eof" in text:
        return (" (the agent closed the TLS connection: it may want a client certificate, "
                "client_cert/client_key)")
    if "wrong version number" in text or "record layer failure" in text:
        return " (is this an HTTPS port? Consul's is usually 8501)"
    return ""


def _short(text: str) -> str:
    text = " ".join((text or "").split())
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[:_MAX_DETAIL_CHARS] + "…"
    return text


def _segment(value: str) -> str:
    """A URL path segment: a service ID like 'a/b' must not become two segments."""
    return quote(value, safe="")


def _json(response: requests.Response, where: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ConsulServerError(
            f"{where}: answer is not JSON (is this a Consul agent?)", response.status_code
        ) from None


# -- API areas ---------------------------------------------------------------------------------

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
        if response.status_code == 404:
            return None
        return _json(response, f"GET {path}")

    def list(self, timeout_s: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        path = "/v1/agent/services"
        return _json(self._transport.get(path, timeout_s=timeout_s), f"GET {path}") or {}


class AgentCheck:
    """/v1/agent/check*: the health checks registered with this agent."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def list(self, timeout_s: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        path = "/v1/agent/checks"
        return _json(self._transport.get(path, timeout_s=timeout_s), f"GET {path}") or {}

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
        status = HEALTH_BY_STATUS_CODE.get(response.status_code, "unknown")
        if status == "unknown":
            return status, []
        body = _json(response, f"GET {path}") or {}
        return status, list(body.get("Checks") or [])


class Event:
    """/v1/event/*: Consul's user events, gossiped to every agent of the datacenter."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def fire(self, name: str, payload: bytes = b"", timeout_s: Optional[float] = None
             ) -> Dict[str, Any]:
        path = f"/v1/event/fire/{_segment(name)}"
        response = self._transport.request("PUT", path, data=payload, timeout_s=timeout_s)
        return _json(response, f"PUT {path}") or {}

    def list(self, name: str = "", timeout_s: Optional[float] = None) -> List[Dict[str, Any]]:
        path = "/v1/event/list"
        params = {"name": name} if name else None
        response = self._transport.get(path, params=params, timeout_s=timeout_s)
        return list(_json(response, f"GET {path}") or [])


class Session:
    """/v1/session/*: sessions, which hold KV keys (Behavior delete: they go with it)."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def create(self, name: str, ttl: str, behavior: str = "delete",
               timeout_s: Optional[float] = None) -> str:
        path = "/v1/session/create"
        body = {"Name": name, "TTL": ttl, "Behavior": behavior, "LockDelay": "0s"}
        answer = _json(self._transport.put(path, json=body, timeout_s=timeout_s), f"PUT {path}")
        session_id = str((answer or {}).get("ID") or "")
        if not session_id:
            raise ConsulServerError(f"PUT {path}: the answer holds no session ID")
        return session_id

    def renew(self, session_id: str, timeout_s: Optional[float] = None) -> bool:
        """False when Consul no longer knows the session (expired, destroyed, agent restarted)."""
        path = f"/v1/session/renew/{_segment(session_id)}"
        response = self._transport.put(path, accept=(404,), timeout_s=timeout_s)
        return response.status_code != 404

    def destroy(self, session_id: str, timeout_s: Optional[float] = None) -> None:
        self._transport.put(f"/v1/session/destroy/{_segment(session_id)}", timeout_s=timeout_s)

    def info(self, session_id: str, timeout_s: Optional[float] = None
             ) -> Optional[Dict[str, Any]]:
        path = f"/v1/session/info/{_segment(session_id)}"
        answer = _json(self._transport.get(path, timeout_s=timeout_s), f"GET {path}")
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
        response = self._transport.get(path, params=params, accept=(404,), timeout_s=timeout_s)
        if response.status_code == 404:
            return {}
        entries = {}
        for item in _json(response, f"GET {path}") or []:
            raw = item.get("Value")
            entries[str(item.get("Key"))] = {
                "Value": base64.b64decode(raw) if raw else b"",
                "Session": item.get("Session", ""),
            }
        return entries

    def delete(self, key: str, timeout_s: Optional[float] = None) -> None:
        self._transport.request("DELETE", _key_path(key), timeout_s=timeout_s)


class Agent:
    """/v1/agent/self, plus the agent's service, check and health areas."""

    def __init__(self, transport: Transport):
        self._transport = transport
        self.service = AgentService(transport)
        self.check = AgentCheck(transport)
        self.health = AgentHealth(transport)

    def self(self, timeout_s: Optional[float] = None) -> Dict[str, Any]:
        path = "/v1/agent/self"
        return _json(self._transport.get(path, timeout_s=timeout_s), f"GET {path}") or {}

    def version(self, timeout_s: Optional[float] = None) -> str:
        return str((self.self(timeout_s=timeout_s).get("Config") or {}).get("Version") or "")

    def node_id(self, timeout_s: Optional[float] = None) -> str:
        """The agent's node ID: the same agent reached under two URLs has one node ID."""
        return str((self.self(timeout_s=timeout_s).get("Config") or {}).get("NodeID") or "")


class Consul:
    """The client for one agent, built from Settings: `consul.agent.service.register(...)`."""

    def __init__(self, settings: Settings, verify: Any = None, cert: Any = None):
        """TLS comes from the settings; `verify`/`cert` given here replace theirs."""
        self.url = settings.agent_url
        pool_tls: Dict[str, Any] = {}
        if settings.uses_tls:
            own_verify, own_cert, pool_tls = tls_options(settings)
            verify = own_verify if verify is None else verify
            cert = own_cert if cert is None else cert
        self.transport = Transport(settings.agent_url, settings.token, settings.timeout_s,
                                   verify=True if verify is None else verify, cert=cert,
                                   pool_tls=pool_tls)
        self.agent = Agent(self.transport)
        self.event = Event(self.transport)
        self.session = Session(self.transport)
        self.kv = KV(self.transport)

    def close(self) -> None:
        self.transport.close()

    def __repr__(self) -> str:
        return f"<Consul {self.url}>"
