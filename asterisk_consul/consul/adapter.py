"""requests' HTTPAdapter, as the Transport mounts it: what a plain adapter cannot guarantee.

Imported on the first Transport (requests takes ~180 ms to import), never at module load.
"""

from __future__ import annotations

from typing import Any, Optional

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .deadline import current as current_deadline, resolve
from .tls import TlsConfig, tls_context


class _Watched:
    """A connection whose sockets the running call's Deadline may shut down: urllib3 gives no
    handle on the socket while a call waits for its answer, and a socket timeout restarts at
    every byte (the total deadline, and interrupt() of a blocking query, need the socket)."""

    _dns_host: str  # urllib3's connection sets it: the name looked up
    port: int

    def _new_conn(self) -> Any:
        deadline = current_deadline()
        if deadline is None:
            return super()._new_conn()  # type: ignore[misc]
        # getaddrinfo has no timeout of its own: the name is looked up within the call's
        # connect timeout; the connection keeps the name for Host, SNI and the certificate.
        budget = deadline.remaining()
        connect_s = getattr(self, "timeout", None)  # urllib3 sets it to the connect timeout
        if isinstance(connect_s, (int, float)):
            budget = min(budget, connect_s)
        name = self._dns_host
        self._dns_host = resolve(name, self.port, budget)
        try:
            sock = super()._new_conn()  # type: ignore[misc]
        finally:
            self._dns_host = name
        # The TLS handshake too ends with the call: watched through a duplicate, since
        # wrapping the socket in TLS detaches this object from its descriptor.
        deadline.watch(sock.dup(), owned=True)
        return sock

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


class _Connection(_Watched, HTTPConnection):
    pass


class _TlsConnection(_Watched, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


class Adapter(requests.adapters.HTTPAdapter):
    """Connections watched by the call's Deadline, over the one SSL context of the settings."""

    def __init__(self, tls: Optional[TlsConfig]):
        self._tls = tls
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        # The SSL context of tls.py, built here: a TLS file that cannot be loaded fails the
        # client's creation, not each call. requests knows no ca_path of plain PEM files, no
        # tls_server_name and no refusal of a pass phrase, and would load the CA files again
        # for each new connection.
        if self._tls is not None:
            pool_kwargs["ssl_context"] = tls_context(self._tls)
            if not self._tls.verify:
                pool_kwargs["cert_reqs"] = "CERT_NONE"
                pool_kwargs["assert_hostname"] = False
            elif self._tls.server_name:
                pool_kwargs["server_hostname"] = self._tls.server_name  # SNI
                pool_kwargs["assert_hostname"] = self._tls.server_name  # and the name checked
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}

    def build_connection_pool_key_attributes(self, request: Any, verify: Any,
                                             cert: Any = None) -> Any:
        # requests >= 2.32 adds TLS arguments of its own per request (its default context or
        # CA paths), which would override the context above: the pool is keyed by host alone.
        host_params, _ = super().build_connection_pool_key_attributes(request, verify, cert)
        return host_params, {}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would point the pool at certifi's bundle, which urllib3 then loads into our
        # context at each connection: every public CA trusted besides ca_file/ca_path.
        if self._tls is None:
            super().cert_verify(conn, url, verify, cert)
            return
        conn.cert_reqs = "CERT_REQUIRED" if self._tls.verify else "CERT_NONE"
        conn.ca_certs = conn.ca_cert_dir = None
        conn.cert_file = conn.key_file = None
