"""All HTTP to one Consul agent: the Transport, over one requests.Session.

Every failure becomes a `ConsulError` subclass (errors.py) chosen by what the caller should do
next. The ACL token travels only in the X-Consul-Token header, and only to the configured agent:
never in a URL, a repr or the text of an error we raise (scrubbed, in case a peer echoes it
back), never after a redirect (none is followed). Each call is bounded in time and size
(deadline.py) and may be cut short from another thread (interrupt()); the connections and TLS
are the adapter's (adapter.py, tls.py). Calls and blocking queries (blocking.py) both use it.
"""

from __future__ import annotations

import json as json_module
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional

from .deadline import MAX_BODY_BYTES, Deadline
from .errors import (ConsulAclNotFound, ConsulMalformed, ConsulNotFound, ConsulPermissionDenied,
                     ConsulRequestError, ConsulServerError, ConsulUnreachable)
from .tls import TlsConfig

__all__ = ["Transport", "Answer"]

# Set by the first Transport: requests is imported on the registrar's worker thread, not on
# Asterisk's loader thread at `module load` (adapter.py).
requests: Any = None
_Adapter: Any = None
_Timeout: Any = None

_REDACTED = "<redacted>"
_MAX_DETAIL_CHARS = 200  # Consul's error bodies are one line; a misdirected peer's may be a page


def _import_requests() -> None:
    global requests, _Adapter, _Timeout
    if requests is None:
        from urllib3.util import Timeout

        from . import adapter

        _Adapter, _Timeout = adapter.Adapter, Timeout
        requests = adapter.requests


_UNKNOWN_ID = ("Unknown service", "Unknown check")  # what a 500 says of an ID it does not know


@dataclass(frozen=True)
class Answer:
    """What the agent answered: the status, the headers (names in lower case) and the body,
    read whole within the call's limits."""

    status: int
    reason: str = ""
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not). JSON is UTF-8 (RFC 8259): no guess."""
        return json_module.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Transport:
    """All HTTP to one Consul agent, over one requests.Session.

    Every call has a total deadline (connect, request, headers and body together) and a body
    limit; redirects are never followed. One thread makes the calls (the registrar's worker, or
    the watch's own thread for its blocking queries); interrupt() may come from any other.
    """

    def __init__(self, base_url: str, token: str, timeout_s: float,
                 tls: Optional[TlsConfig] = None):
        """tls applies to https:// addresses only (None there: the system's CAs)."""
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self._token = token or ""
        # Told the status of every answer and its body (worker thread): how the token fares.
        self.on_answer: Optional[Callable[[int, str], None]] = None
        self._lock = threading.Lock()
        self._running: Optional[Deadline] = None  # the call in progress
        self._interrupted = False
        _import_requests()
        self._session = requests.Session()
        tls = (tls or TlsConfig()) if self.base_url.startswith("https:") else None
        self._session.mount("http://", _Adapter(None))
        self._session.mount("https://", _Adapter(tls))
        if tls is not None and not tls.verify:
            # Said once, at load, by the settings; not once per call by urllib3.
            import warnings

            from urllib3.exceptions import InsecureRequestWarning

            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        # Environment proxies (HTTP_PROXY…) would route calls to a local agent through a proxy.
        self._session.trust_env = False
        self._session.headers["User-Agent"] = "res_discovery_consul"
        # No compressed answers: the body limit counts what is read, not what it expands to.
        self._session.headers["Accept-Encoding"] = "identity"
        if self._token:
            self._session.headers["X-Consul-Token"] = self._token

    @property
    def headers(self) -> Any:
        """The headers every call sends (the token's among them)."""
        return self._session.headers

    def __repr__(self) -> str:
        return f"<Transport {self.base_url} token={'set' if self._token else 'none'}>"

    def close(self) -> None:
        self._session.close()

    def interrupt(self) -> None:
        """From any thread: the call in progress ends at once (its socket is shut down) with
        ConsulUnreachable, and so does every later one."""
        with self._lock:
            self._interrupted = True
            running = self._running
        if running is not None:
            running.interrupt()

    def scrub(self, text: str) -> str:
        """Remove the token from text bound for a log line or an exception."""
        if self._token and text:
            text = text.replace(self._token, _REDACTED)
        return text

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Answer:
        return self.request("PUT", path, **kwargs)

    def request(self, method: str, path: str, *, params: Optional[Dict[str, str]] = None,
                json: Any = None, data: Optional[bytes] = None, accept: Iterable[int] = (),
                timeout_s: Optional[float] = None, connect_timeout_s: Optional[float] = None,
                max_bytes: int = MAX_BODY_BYTES) -> Answer:
        """One HTTP call. 2xx and any status in `accept` are returned; the rest raise (a
        redirect as ConsulMalformed: never followed).

        `timeout_s` bounds the whole call (connect, headers and body together: a peer that
        drips its answer is cut off), `connect_timeout_s` the DNS lookup and connect within
        it, `max_bytes` the body.
        """
        budget = self.timeout_s if timeout_s is None else max(float(timeout_s), 0.001)
        connect_s = budget if connect_timeout_s is None else min(connect_timeout_s, budget)
        where = f"{method} {path}"
        with Deadline(budget) as deadline:
            with self._lock:
                if self._interrupted:
                    raise ConsulUnreachable(f"{where}: interrupted")
                self._running = deadline
            try:
                answer = self._exchange(method, path, params, json, data, budget, connect_s,
                                        max_bytes, where, deadline)
            finally:
                with self._lock:
                    self._running = None

        status = answer.status
        if self.on_answer is not None:
            self.on_answer(status, answer.text() if status == 403 else "")
        if 200 <= status < 300 or status in accept:
            return answer
        if 300 <= status < 400:
            target = self.scrub(_short(answer.headers.get("location", "") or "?"))
            raise ConsulMalformed(
                f"{where}: the agent at {self.base_url} answered a redirect ({status} to "
                f"{target}): not followed (the ACL token goes to the configured agent only; "
                f"is something else listening on the agent's address?)", status)
        detail = self.scrub(_short(answer.text())) or answer.reason
        if status == 403:
            kind = ConsulAclNotFound if "ACL not found" in detail else ConsulPermissionDenied
            raise kind(
                f"{where}: permission denied: {detail} (check the ACL token and its policy)",
                status)
        if status == 404 or (status == 500 and detail.startswith(_UNKNOWN_ID)):
            # With ACLs on, Consul 1.8 says "no such service or check" with a 500.
            raise ConsulNotFound(f"{where}: not found: {detail}", status)
        if status >= 500:
            raise ConsulServerError(f"{where}: Consul server error {status}: {detail}", status)
        raise ConsulRequestError(f"{where}: Consul rejected the request ({status}): {detail}",
                                 status)

    def _exchange(self, method: str, path: str, params: Any, json: Any, data: Any,
                  budget: float, connect_s: float, max_bytes: int, where: str,
                  deadline: Deadline) -> Answer:
        """Send the request and read the answer, or raise ConsulUnreachable/ConsulMalformed."""
        try:
            response = self._session.request(
                method, self.base_url + path, params=params, json=json, data=data,
                allow_redirects=False, stream=True,
                timeout=_Timeout(total=budget, connect=connect_s, read=budget))
            try:
                body = _read_body(response, max_bytes, where)
                if deadline.cut:  # the socket was shut down: what was read may be partial
                    raise ConnectionAbortedError("cut")
                return Answer(response.status_code, response.reason or "",
                              {k.lower(): v for k, v in response.headers.items()}, body)
            finally:
                response.close()
        except requests.exceptions.SSLError as exc:
            self._raise_if_cut(deadline, where, budget)
            reason = self._reason(exc)
            raise ConsulUnreachable(f"{where}: TLS failure talking to {self.base_url}: {reason}"
                                    f"{_tls_hint(reason)}") from None
        except (requests.RequestException, OSError) as exc:
            # OSError: a socket shut down by the deadline, mid-read of the body.
            self._raise_if_cut(deadline, where, budget)
            if isinstance(exc, requests.Timeout):
                raise self._late(where, connect_s if isinstance(
                    exc, requests.ConnectTimeout) else budget) from None
            # A TLS 1.3 alert (client certificate refused) may only arrive with the answer.
            reason = self._reason(exc)
            raise ConsulUnreachable(f"{where}: cannot reach Consul at {self.base_url}: "
                                    f"{reason}{_tls_hint(reason)}") from None

    def _raise_if_cut(self, deadline: Deadline, where: str, budget: float) -> None:
        if deadline.interrupted:
            raise ConsulUnreachable(f"{where}: interrupted") from None
        if deadline.expired:
            raise self._late(where, budget) from None

    def _late(self, where: str, budget: float) -> ConsulUnreachable:
        return ConsulUnreachable(f"{where}: no answer from Consul at {self.base_url} "
                                 f"within {budget:g} s")

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


def _read_body(response: Any, max_bytes: int, where: str) -> bytes:
    """The body, refused past `max_bytes` (a declared length before anything is read)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ConsulMalformed(f"{where}: the answer is {declared} bytes, more than the "
                              f"{max_bytes} accepted (is this a Consul agent?)",
                              response.status_code)
    body = bytearray()
    for chunk in response.iter_content(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise ConsulMalformed(f"{where}: the answer is longer than the {max_bytes} "
                                  f"bytes accepted (is this a Consul agent?)",
                                  response.status_code)
    return bytes(body)


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
