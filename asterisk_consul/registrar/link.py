"""The worker's link to its Consul agent: the client, built from Settings in this one place,
what the agent last said of itself (reachable, version) and the last error, logged once per
kind of failure. Also the worker's stop and silence flags and its clock, which every part
consults; the link knows no other part.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from ..clock import SYSTEM_CLOCK, Clock
from ..consul import Consul, ConsulError, ConsulPermissionDenied, ConsulUnreachable, TlsConfig
from ..registration import HostFacts
from ..safetext import scrub
from ..settings import Settings

log = logging.getLogger("asterisk_consul.registrar")


class Stopping(Exception):
    """Raised between two Consul calls once stop() was asked: abandon the current job."""


def tls_config(settings: Settings) -> TlsConfig:
    return TlsConfig(verify=settings.tls_verify, ca_file=settings.ca_file,
                     ca_path=settings.ca_path, client_cert=settings.client_cert,
                     client_key=settings.client_key, server_name=settings.tls_server_name)


def consul_client(settings: Settings) -> Consul:
    """The client for the agent the settings name (TLS only matters for https)."""
    return Consul(settings.agent_url, settings.token, settings.timeout_s, tls_config(settings))


ConsulFactory = Callable[[Settings], Consul]


class AgentLink:
    def __init__(self, settings: Settings, facts: HostFacts, factory: ConsulFactory,
                 clock: Clock = SYSTEM_CLOCK):
        self.settings = settings
        self.clock = clock  # every part's time comes from here
        self.facts = facts
        self._factory = factory
        self._consul: Optional[Consul] = None
        self.stop_requested = threading.Event()
        self.silenced = threading.Event()  # set once stop() returned: no events, no logs
        self.reachable: Optional[bool] = None  # None: not tried yet
        self.version = ""
        self._self_denied: Optional[Consul] = None  # the client whose token may not read /agent/self
        self.last_error = ""
        self._last_error_kind = ""

    # -- the client ------------------------------------------------------------------------

    @property
    def consul(self) -> Consul:
        if self._consul is None:
            self._consul = self._factory(self.settings)
        return self._consul

    @property
    def current(self) -> Optional[Consul]:
        """The client in use, if one was made (no client is made to answer this)."""
        return self._consul

    def client_for(self, settings: Settings) -> Consul:
        """A new client for these settings (may raise: a TLS file that cannot be loaded)."""
        return self._factory(settings)

    def reload(self, settings: Settings, client: Optional[Consul], keep_old: bool) -> None:
        """Reloaded settings; with a client (another agent or token, made beforehand with
        client_for), that client from now on, the old one closed unless keep_old (a
        registration left behind still needs it)."""
        self.settings = settings
        if client is not None:
            old = self.consul
            self._consul = client
            self.version = ""  # another agent (or token): asked again
            if not keep_old:
                old.close()

    def close(self) -> Optional[Consul]:
        consul, self._consul = self._consul, None
        return consul

    def version_or_blank(self) -> str:
        """The agent's version, asked once per client: it does not change under us."""
        consul = self.consul
        if self.version or self._self_denied is consul:
            return self.version
        try:
            self.version = consul.agent.version()
        except ConsulPermissionDenied:
            # A token scoped to our service may not read the agent: not an error, and not
            # worth a refused call at every status.
            self._self_denied = consul
        return self.version

    # -- what the agent said ---------------------------------------------------------------

    def seen(self) -> None:
        """The agent answered a request (whatever the last job made of it)."""
        self.reachable = True

    def answered(self) -> None:
        """A job succeeded: the agent answers."""
        if self.last_error:
            self.log(logging.INFO, "Consul: the agent at %s answers again", self.settings.agent_url)
        self.last_error = ""
        self._last_error_kind = ""
        self.reachable = True

    def failed(self, exc: BaseException, retry_in: Optional[float] = None) -> None:
        """A job failed: note whether the agent answered at all, and the error."""
        if isinstance(exc, ConsulUnreachable):
            self.reachable = False
            self.version = ""  # it may come back as another version
        elif isinstance(exc, ConsulError):
            self.reachable = True
        self.note_error(exc, retry_in)

    def note_error(self, exc: BaseException, retry_in: Optional[float] = None) -> None:
        message = self.scrub(str(exc)) if isinstance(exc, ConsulError) else \
            self.scrub(f"unexpected {type(exc).__name__}: {exc}")
        kind = f"{type(exc).__name__}:{getattr(exc, 'status', None)}"
        self.last_error = message
        suffix = f"; retrying in {retry_in:.2f} s" if retry_in is not None else ""
        if kind != self._last_error_kind:
            # One line per change of state, not one per retry.
            self.log(logging.WARNING if isinstance(exc, ConsulError) else logging.ERROR,
                     "Consul: %s%s", message, suffix)
            self._last_error_kind = kind
        else:
            self.log(logging.DEBUG, "Consul: still failing: %s%s", message, suffix)

    # -- for every part --------------------------------------------------------------------

    def check_stop(self) -> None:
        if self.stop_requested.is_set():
            raise Stopping()

    def scrub(self, text: str) -> str:
        return scrub(text, [self.settings.token])

    def log(self, level: int, message: str, *args: Any) -> None:
        """Log in the name of the line that called this (not this helper's)."""
        if not self.silenced.is_set():
            log.log(level, message, *args, stacklevel=2)
