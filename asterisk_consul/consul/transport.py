"""All HTTP to one Consul agent: the Transport, the errors it raises, and its TLS setup.

One `Transport` (one requests.Session) does all HTTP and turns every failure into a
`ConsulError` subclass chosen by what the caller should do next. The ACL token travels only in
the X-Consul-Token header: never in a URL, a repr or the text of an error we raise (scrubbed,
in case a peer echoes it back).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..config import read_regular_file

TLS_FILE_MAX_BYTES = 1024 * 1024  # a PEM bundle of every public CA is about 220 kB
CA_PATH_MAX_FILES = 1000

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


@dataclass(frozen=True)
class TlsConfig:
    """How to talk TLS to the agent (used for https:// addresses only)."""

    verify: bool = True       # False: the agent's certificate is not checked at all
    ca_file: str = ""         # PEM bundle of the CAs to trust ("" and no ca_path: the system's)
    ca_path: str = ""         # directory of PEM CA certificates, every file read
    client_cert: str = ""     # PEM client certificate, sent when the agent asks for one
    client_key: str = ""      # its private key
    server_name: str = ""     # name the certificate must carry ("": the host connected to)


def tls_options(tls: TlsConfig) -> Tuple[Any, Any, Dict[str, Any]]:
    """(verify, cert, pool arguments) for requests.

    verify: False (verify off), the CA file or directory, or True (the system's CAs).
    The CAs of ca_path are also read here as one bundle, so that a directory of plain PEM
    files works as it does for Consul's CLI (OpenSSL alone would want hash links).
    """
    pool: Dict[str, Any] = {}
    if not tls.verify:
        verify: Any = False
    elif tls.ca_file:
        verify = tls.ca_file
    elif tls.ca_path:
        verify = tls.ca_path
    else:
        verify = True
    if tls.verify and tls.ca_path:
        bundle = ca_directory_bundle(tls.ca_path)
        if bundle:
            pool["ca_cert_data"] = bundle
    if tls.verify and tls.server_name:
        pool["server_hostname"] = tls.server_name
        pool["assert_hostname"] = tls.server_name
    cert = (tls.client_cert, tls.client_key) if tls.client_cert else None
    return verify, cert, pool


def ca_directory_bundle(path: str, names: Optional[List[str]] = None) -> str:
    """The PEM certificates of the regular files in directory `path`, as one bundle.

    As Consul's own clients read CONSUL_CAPATH: every file, no OpenSSL hash links needed.
    Files that are not regular (FIFOs, devices), unreadable or without a certificate are
    skipped; at most CA_PATH_MAX_FILES files are read.
    """
    if names is None:
        try:
            names = sorted(os.listdir(path))
        except OSError:
            return ""
    pems: List[str] = []
    for name in names[:CA_PATH_MAX_FILES]:
        try:
            data = read_regular_file(os.path.join(path, name), TLS_FILE_MAX_BYTES)
        except (OSError, ValueError):
            continue
        if len(data) > TLS_FILE_MAX_BYTES:
            continue
        text = data.decode("ascii", "replace")
        pems += re.findall(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?"
                           r"-----END CERTIFICATE-----", text)
    return "\n".join(pems) + ("\n" if pems else "")


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
