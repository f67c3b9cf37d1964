"""A small client for the parts of Consul's HTTP API this module uses (py-consul style).

    consul = Consul("https://10.0.0.5:8501", token, timeout_s=2.0, tls=TlsConfig(ca_file=...))
    consul.agent.service.register({...})

It knows nothing of the module's settings: it is built from plain values (the registrar does
that from Settings, in one place). Every failure is a ConsulError subclass (errors.py).
"""

from __future__ import annotations

from typing import Optional

from .api import (HEALTH_BY_STATUS_CODE, KV, Agent, AgentCheck, AgentHealth, AgentService,
                  Catalog, Event, Session)
from .tls import TLS_FILE_MAX_BYTES, TlsConfig, ca_directory_bundle, tls_context
from .errors import (ConsulAclNotFound, ConsulError, ConsulMalformed, ConsulNotFound,
                     ConsulPermissionDenied, ConsulRequestError, ConsulServerError,
                     ConsulUnreachable)
from .transport import Transport

__all__ = [
    "Consul", "TlsConfig", "Transport", "ConsulError", "ConsulUnreachable", "ConsulServerError",
    "ConsulPermissionDenied", "ConsulAclNotFound", "ConsulNotFound", "ConsulRequestError", "ConsulMalformed", "Agent", "AgentService",
    "AgentCheck", "AgentHealth", "Catalog", "Event", "Session", "KV", "HEALTH_BY_STATUS_CODE",
    "ca_directory_bundle", "tls_context", "TLS_FILE_MAX_BYTES",
]


class Consul:
    """The client for one agent: `consul.agent.service.register(...)`, `consul.kv.get(...)`."""

    def __init__(self, address: str, token: str = "", timeout_s: float = 2.0,
                 tls: Optional[TlsConfig] = None):
        """address: scheme://host:port; tls applies to https:// addresses only."""
        self.url = address.rstrip("/")
        self.transport = Transport(self.url, token, timeout_s, tls=tls or TlsConfig())
        self.agent = Agent(self.transport)
        self.event = Event(self.transport)
        self.session = Session(self.transport)
        self.kv = KV(self.transport)
        self.catalog = Catalog(self.transport)

    def close(self) -> None:
        self.transport.close()

    def __repr__(self) -> str:
        return f"<Consul {self.url}>"
