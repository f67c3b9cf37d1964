"""Consul's blocking queries, on a connection another thread can cut short.

A blocking query waits at the agent until something changes or `wait` ends; the thread that
holds one must still stop at once when the module unloads. The Transport (requests) gives no
handle on its socket while it waits for an answer, so blocking queries use this small client
on http.client, over the same TLS context (tls.py), and interrupt() shuts its socket down.
Like the Transport, a query has a total deadline (its wait, Consul's jitter and the Consul
timeout) and a body limit, and never follows a redirect (http.client does not).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from typing import Dict, Optional, Tuple
from urllib.parse import urlencode, urlsplit

from .deadline import MAX_BODY_BYTES, Deadline, resolve
from .tls import TlsConfig, tls_context
from .transport import ConsulUnreachable


class _Https(http.client.HTTPSConnection):
    """HTTPS whose certificate (and SNI) is checked against server_name, not the host."""

    def __init__(self, host: str, port: Optional[int], timeout: float, context: ssl.SSLContext,
                 server_name: str):
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls_context = context  # our own name: http.client's attribute is private
        self._server_name = server_name or host

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self._server_name)


class BlockingClient:
    """One GET at a time (kept alive between calls); interrupt() from any thread ends it."""

    def __init__(self, address: str, token: str, timeout_s: float, tls: Optional[TlsConfig] = None):
        parts = urlsplit(address)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port
        self._tls = tls or TlsConfig()
        self._timeout_s = timeout_s
        self._headers = {"User-Agent": "res_discovery_consul"}
        if token:
            self._headers["X-Consul-Token"] = token
        self._conn: Optional[http.client.HTTPConnection] = None
        self._lock = threading.Lock()
        self._interrupted = False

    def get(self, path: str, params: Dict[str, str], wait_s: float) -> Tuple[int, Dict[str, str], bytes]:
        """(status, headers, body); ConsulUnreachable when nothing answered (or interrupted)."""
        # Consul adds up to wait/16 of jitter to a blocking query's wait.
        timeout = wait_s + wait_s / 16 + self._timeout_s
        with Deadline(timeout) as deadline:
            try:
                conn = self._connection(timeout)
                deadline.watch(conn.sock)
                conn.request("GET", path + ("?" + urlencode(params) if params else ""),
                             headers=self._headers)
                with self._lock:  # connected: interrupt() either came first or sees the socket
                    if self._interrupted:
                        raise ConnectionAbortedError("interrupted")
                response = conn.getresponse()
                body = response.read(MAX_BODY_BYTES + 1)
                if deadline.expired:  # cut: what was read is not the whole answer
                    raise TimeoutError("cut at the deadline")
                if len(body) > MAX_BODY_BYTES:
                    raise ValueError(f"the answer is longer than the {MAX_BODY_BYTES} bytes "
                                     f"accepted")
                if not response.isclosed():
                    self._drop()  # a body that did not end: the connection is not reused
                return response.status, {k.lower(): v for k, v in response.getheaders()}, body
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._drop()
                if deadline.expired:
                    raise ConsulUnreachable(f"GET {path}: no complete answer within "
                                            f"{timeout:g} s") from None
                raise ConsulUnreachable(f"GET {path}: {type(exc).__name__}: {exc}") from None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        """The kept-alive connection, or a new one connected within the Consul timeout (not
        the query's: an unload must not wait minutes for a connect to a blackholed agent)."""
        with self._lock:
            if self._interrupted:
                raise ConnectionAbortedError("interrupted")
            if self._conn is None:
                if self._https:
                    self._conn = _Https(self._host, self._port, self._timeout_s,
                                        tls_context(self._tls), self._tls.server_name)
                else:
                    self._conn = http.client.HTTPConnection(self._host, self._port,
                                                            timeout=self._timeout_s)
            conn = self._conn
        if conn.sock is None:
            conn.timeout = self._timeout_s
            conn.host = resolve(self._host, self._port or 80, self._timeout_s)  # bounded DNS
            conn.connect()
        conn.timeout = timeout
        conn.sock.settimeout(timeout)
        return conn

    def _drop(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def interrupt(self) -> None:
        """End the GET in progress at once; every later one fails at once too."""
        with self._lock:
            self._interrupted = True
            conn = self._conn
            sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._drop()
