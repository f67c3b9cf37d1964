"""All HTTP to one Consul agent: the Transport and the errors it raises.

One `Transport` (one requests.Session) does all HTTP and turns every failure into a
`ConsulError` subclass chosen by what the caller should do next. The ACL token travels only in
the X-Consul-Token header, and only to the configured agent: never in a URL, a repr or the text
of an error we raise (scrubbed, in case a peer echoes it back), never after a redirect (none is
followed). Each call is bounded in time and size (deadline.py); TLS comes from tls.py.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, Optional

from .deadline import MAX_BODY_BYTES, Deadline, current as current_deadline, resolve
from .tls import TLS_FILE_MAX_BYTES, TlsConfig, ca_directory_bundle, tls_context

__all__ = ["Transport", "TlsConfig", "ca_directory_bundle", "tls_context", "TLS_FILE_MAX_BYTES"]

# requests takes ~180 ms to import (it loads the CA bundle): the first Transport imports it,
# on the registrar's worker thread, so that `module load` on Asterisk's loader thread does not.
requests: Any = None
_Urllib3Timeout: Any = None
_Adapter: Any = None


# requests guesses the charset of a body that names none with chardet or charset_normalizer
# (~2.6 MB resident). Consul answers JSON, which is UTF-8 by definition and which requests
# decodes without guessing, so we hide both while requests is first imported; without them
# requests guesses "utf-8" and warns once, which we silence. Only this import is affected.
CHARSET_GUESSERS = ("chardet", "charset_normalizer")


def _import_requests() -> None:
    global requests, _Urllib3Timeout, _Adapter
    if requests is None:
        import sys
        import warnings

        from urllib3.util import Timeout

        hidden = [name for name in CHARSET_GUESSERS if name not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]  # None makes import fail
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*character detection dependency")
                import requests as module
        finally:
            for name in hidden:
                if sys.modules.get(name, 0) is None:
                    del sys.modules[name]

        _Urllib3Timeout = Timeout
        _Adapter = _make_adapter_class(module.adapters.HTTPAdapter)
        requests = module


def _make_adapter_class(base: Any) -> Any:
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class _Watched:
        """A connection whose socket the running call's Deadline may shut down."""

        _dns_host: str  # urllib3's, declared for the type checker (set by its __init__)

        def _new_conn(self) -> Any:
            # The name looked up within the call's deadline; the connection keeps its name
            # for the Host header, SNI and the certificate check.
            deadline = current_deadline()
            if deadline is None:
                return super()._new_conn()  # type: ignore[misc]
            name = self._dns_host
            self._dns_host = resolve(name, self.port,  # type: ignore[attr-defined]
                                     deadline.remaining())
            try:
                return super()._new_conn()  # type: ignore[misc]
            finally:
                self._dns_host = name

        def connect(self) -> None:
            super().connect()  # type: ignore[misc]
            deadline = current_deadline()
            if deadline is not None:
                deadline.watch(self.sock)  # type: ignore[attr-defined]

        def request(self, *args: Any, **kwargs: Any) -> Any:
            deadline = current_deadline()
            if deadline is not None and getattr(self, "sock", None) is not None:
                deadline.watch(self.sock)  # type: ignore[attr-defined]  # a kept-alive one
            return super().request(*args, **kwargs)  # type: ignore[misc]

    class Connection(_Watched, HTTPConnection):
        pass

    class TlsConnection(_Watched, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TlsPool(HTTPSConnectionPool):
        ConnectionCls = TlsConnection

    class Adapter(base):
        """An HTTPAdapter whose connections obey the call's Deadline and whose HTTPS pools use
        the one SSL context of the settings (tls.py): requests would otherwise load the CA
        files again for every new connection. server_hostname and assert_hostname carry
        tls_server_name (SNI and the certificate checked against it)."""

        def __init__(self, tls: Optional[TlsConfig]):
            self._tls = tls
            super().__init__(max_retries=0)

        def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
            if self._tls is not None:
                pool_kwargs["ssl_context"] = tls_context(self._tls)
                if self._tls.verify and self._tls.server_name:
                    pool_kwargs["server_hostname"] = self._tls.server_name
                    pool_kwargs["assert_hostname"] = self._tls.server_name
                elif not self._tls.verify:
                    pool_kwargs["assert_hostname"] = False
            super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TlsPool}

        def build_connection_pool_key_attributes(self, request, verify, cert=None):
            # The pool is keyed by host alone: the TLS settings are the adapter's own.
            host_params, _ = super().build_connection_pool_key_attributes(request, verify, cert)
            return host_params, {}

        def cert_verify(self, conn, url, verify, cert):
            # Verification is the SSL context's (tls.py): no CA file loaded per connection.
            if self._tls is not None:
                conn.cert_reqs = "CERT_REQUIRED" if self._tls.verify else "CERT_NONE"
                conn.ca_certs = conn.ca_cert_dir = None
                conn.cert_file = conn.key_file = None

    return Adapter


def tls_config_of(verify: Any, cert: Any = None) -> TlsConfig:
    """A TlsConfig from requests-style verify/cert arguments (tests and older callers)."""
    if isinstance(cert, (tuple, list)):
        client_cert, client_key = cert[0], cert[1]
    else:
        client_cert, client_key = cert or "", ""
    if verify is False:
        return TlsConfig(verify=False, client_cert=client_cert, client_key=client_key)
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return TlsConfig(ca_path=verify, client_cert=client_cert, client_key=client_key)
        return TlsConfig(ca_file=verify, client_cert=client_cert, client_key=client_key)
    return TlsConfig(client_cert=client_cert, client_key=client_key)


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


class ConsulAclNotFound(ConsulPermissionDenied):
    """403 "ACL not found": the agent does not know the token at all (deleted, expired,
    mistyped), as opposed to a known token without the policy for this call."""


class ConsulNotFound(ConsulError):
    """404: no such service, check or endpoint."""


class ConsulRequestError(ConsulError):
    """Any other 4xx: Consul rejected what we sent."""


class ConsulMalformed(ConsulError):
    """Something answered, but not as Consul does: a redirect (never followed: the token goes
    to the configured agent only), a body too large, not JSON or not of the expected shape.
    Retried with backoff, like an agent that does not answer."""


# -- transport ---------------------------------------------------------------------------------

class Transport:
    """All HTTP to one Consul agent, over one requests.Session.

    Every call has a total deadline (connect, request, headers and body together) and a body
    limit; redirects are never followed. Not thread-safe by design: the registrar's worker
    thread is its only user.
    """

    def __init__(self, base_url: str, token: str, timeout_s: float, verify: Any = True,
                 cert: Any = None, tls: Optional[TlsConfig] = None):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self._token = token or ""
        # Told the status of every answer and its body (worker thread): how the token fares.
        self.on_answer: Optional[Callable[[int, str], None]] = None
        _import_requests()
        self._session = requests.Session()
        https = self.base_url.startswith("https:")
        if https and tls is None:
            tls = tls_config_of(verify, cert)
        self._tls = tls if https else None
        self._session.mount("http://", _Adapter(None))
        self._session.mount("https://", _Adapter(self._tls))
        if self._tls is not None and not self._tls.verify:
            # Said once, at load, by the settings; not once per call by urllib3.
            from urllib3.exceptions import InsecureRequestWarning
            import warnings

            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        # Environment proxies (HTTP_PROXY…) would route calls to a local agent through a proxy.
        self._session.trust_env = False
        self._session.headers["User-Agent"] = "res_discovery_consul"
        # No compressed answers: the body limit counts what is read, not what it expands to.
        self._session.headers["Accept-Encoding"] = "identity"
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
                timeout_s: Optional[float] = None, max_bytes: int = MAX_BODY_BYTES
                ) -> requests.Response:
        """One HTTP call. 2xx and any status in `accept` are returned; the rest raise.

        `timeout_s` bounds the whole call (connect, headers and body together: a peer that
        drips its answer is cut off), `max_bytes` the body. A redirect is an error, never
        followed.
        """
        budget = self.timeout_s if timeout_s is None else max(float(timeout_s), 0.001)
        where = f"{method} {path}"
        with Deadline(budget) as deadline:
            try:
                response = self._session.request(
                    method, self.base_url + path, params=params, json=json, data=data,
                    allow_redirects=False, stream=True,
                    timeout=_Urllib3Timeout(total=budget, connect=budget, read=budget))
                try:
                    self._read_body(response, max_bytes, where)
                finally:
                    response.close()
            except requests.Timeout:
                raise self._late(where, budget) from None
            except requests.exceptions.SSLError as exc:
                if deadline.expired:
                    raise self._late(where, budget) from None
                reason = self._reason(exc)
                raise ConsulUnreachable(
                    f"{where}: TLS failure talking to {self.base_url}: {reason}"
                    f"{_tls_hint(reason)}") from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                if deadline.expired:
                    raise self._late(where, budget) from None
                # A TLS 1.3 alert (client certificate refused) may only arrive with the answer.
                reason = self._reason(exc)
                raise ConsulUnreachable(f"{where}: cannot reach Consul at {self.base_url}: "
                                        f"{reason}{_tls_hint(reason)}") from None
            except requests.RequestException as exc:
                if deadline.expired:
                    raise self._late(where, budget) from None
                raise ConsulUnreachable(f"{where}: {self._reason(exc)}") from None
            except OSError as exc:  # a socket cut by the deadline, mid-read of the body
                if deadline.expired:
                    raise self._late(where, budget) from None
                raise ConsulUnreachable(f"{where}: cannot reach Consul at {self.base_url}: "
                                        f"{self.scrub(_short(str(exc)))}") from None

        status = response.status_code
        if self.on_answer is not None:
            self.on_answer(status, response.text if status == 403 else "")
        if 300 <= status < 400:
            target = self.scrub(_short(response.headers.get("Location", "") or "?"))
            raise ConsulMalformed(
                f"{where}: the agent at {self.base_url} answered a redirect ({status} to "
                f"{target}): not followed (the ACL token goes to the configured agent only; "
                f"is something else listening on the agent's address?)", status)
        if 200 <= status < 300 or status in accept:
            return response
        detail = self.scrub(_short(response.text)) or response.reason or ""
        if status == 403:
            kind = ConsulAclNotFound if "ACL not found" in detail else ConsulPermissionDenied
            raise kind(
                f"{where}: permission denied: {detail} (check the ACL token and its policy)",
                status)
        if status == 404:
            raise ConsulNotFound(f"{where}: not found: {detail}", status)
        if status >= 500:
            raise ConsulServerError(f"{where}: Consul server error {status}: {detail}", status)
        raise ConsulRequestError(f"{where}: Consul rejected the request ({status}): {detail}",
                                 status)

    def _late(self, where: str, budget: float) -> ConsulUnreachable:
        return ConsulUnreachable(f"{where}: no answer from Consul at {self.base_url} "
                                 f"within {budget:g} s")

    @staticmethod
    def _read_body(response: Any, max_bytes: int, where: str) -> None:
        """Read the body into the response, refusing it past `max_bytes`."""
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
        response._content = bytes(body)
        response._content_consumed = True

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
