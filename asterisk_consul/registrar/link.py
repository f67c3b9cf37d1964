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
from ..consul import (Consul, ConsulAclNotFound, ConsulError, ConsulPermissionDenied,
                      ConsulUnreachable, TlsConfig)
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

# What Consul makes of the token in use (`discovery show status`).
TOKEN_ACCEPTED, TOKEN_NOT_FOUND, TOKEN_DENIED = "accepted", "ACL not found", "Permission denied"
_SECRETS_KEPT = 16  # tokens replaced by a rotation stay masked: a late line may still name one
# A client agent answers from its ACL cache for a while after a token is deleted: successes
# this soon after an "ACL not found" do not mean the token is back (no flapping of the status).
NOT_FOUND_HOLD_S = 60.0


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
        # How Consul took the token in use: "" (not used yet) or a TOKEN_* word. Set from the
        # transport's answers (worker thread) and from failed jobs.
        self.token_standing = ""
        self.token_rejections = 0  # "ACL not found" answers to the token in use, counted
        self._not_found_at = 0.0  # monotonic time of the last one
        self._secrets = [settings.token] if settings.token else []

    # -- the client ------------------------------------------------------------------------

    @property
    def consul(self) -> Consul:
        if self._consul is None:
            self._consul = self._watched(self._factory(self.settings))
        return self._consul

    @property
    def current(self) -> Optional[Consul]:
        """The client in use, if one was made (no client is made to answer this)."""
        return self._consul

    def client_for(self, settings: Settings) -> Consul:
        """A new client for these settings (may raise: a TLS file that cannot be loaded)."""
        return self._watched(self._factory(settings))

    def _watched(self, consul: Consul) -> Consul:
        transport = getattr(consul, "transport", None)
        if transport is not None:
            transport.on_answer = lambda status, body, used=consul: self._answer(used, status,
                                                                                 body)
        return consul

    def _answer(self, consul: Consul, status: int, body: str) -> None:
        """What an answer says of the token: any 2xx, that the agent knows it; a 403 "ACL not
        found", that it does not. A retired client's answers (an old registration left
        behind) say nothing of the token in use."""
        if consul is not self._consul:
            return
        if 200 <= status < 300:
            if self.token_standing not in (TOKEN_DENIED, TOKEN_NOT_FOUND) or self._held_long():
                self.token_standing = TOKEN_ACCEPTED
        elif status == 403 and "ACL not found" in body:
            if self.token_standing != TOKEN_NOT_FOUND:
                self.token_rejections += 1
            self.token_standing = TOKEN_NOT_FOUND
            self._not_found_at = self.clock.monotonic()

    def _held_long(self) -> bool:
        return self.clock.monotonic() - self._not_found_at >= NOT_FOUND_HOLD_S

    def reload(self, settings: Settings, client: Optional[Consul], keep_old: bool) -> None:
        """Reloaded settings; with a client (another agent or token, made beforehand with
        client_for), that client from now on, the old one closed unless keep_old (a
        registration left behind still needs it)."""
        self.settings = settings
        self.keep_secret(settings.token)
        if client is not None:
            old = self.consul
            self._consul = client
            self.version = ""  # another agent (or token): asked again
            self.token_standing = ""  # a new token: Consul has not said yet
            if not keep_old:
                old.close()

    def keep_secret(self, token: str) -> None:
        if token and token not in self._secrets:
            self._secrets = (self._secrets + [token])[-_SECRETS_KEPT:]

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
        """A job succeeded: the agent answers (and takes the token)."""
        if self._consul is not None and (self.token_standing != TOKEN_NOT_FOUND
                                         or self._held_long()):
            self.token_standing = TOKEN_ACCEPTED
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
        if isinstance(exc, ConsulPermissionDenied) and not isinstance(exc, ConsulAclNotFound):
            # A known token without the policy for what the job needs (ACL not found is
            # seen on every answer, by _answer).
            self.token_standing = TOKEN_DENIED
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
        return scrub(text, self._secrets + [self.settings.token])

    def log(self, level: int, message: str, *args: Any) -> None:
        """Log in the name of the line that called this (not this helper's)."""
        if not self.silenced.is_set():
            log.log(level, message, *args, stacklevel=2)
