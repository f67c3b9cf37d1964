"""Consul's blocking queries, which another thread can cut short.

A blocking query waits at the agent until something changes or `wait` ends; the thread that
holds one must still stop at once when the module unloads. It is a Transport call like any
other (requests, the same TLS, token, deadline and body limit), on a Transport of its own: the
watch's thread makes the query while the worker makes its calls, and interrupt() ends it.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from .errors import ConsulError, ConsulUnreachable
from .tls import TlsConfig
from .transport import Transport

_ANY_STATUS = range(100, 600)


class BlockingClient:
    """One GET at a time (kept alive between calls); interrupt() from any thread ends it."""

    def __init__(self, address: str, token: str, timeout_s: float, tls: Optional[TlsConfig] = None):
        self._timeout_s = float(timeout_s)
        self._transport = Transport(address, token, timeout_s, tls)
        self._headers = self._transport.headers  # what each query sends, the token's among them

    def get(self, path: str, params: Dict[str, str], wait_s: float
            ) -> Tuple[int, Dict[str, str], bytes]:
        """(status, headers with lower-case names, body), whatever the status: a redirect is
        returned, never followed. ConsulUnreachable when no whole answer came (the agent does
        not answer, the answer is cut at its deadline or too long, or interrupted)."""
        # The connect within the Consul timeout (an unload must not wait minutes for a connect
        # to a blackholed agent); the whole query within its wait, Consul's jitter (up to
        # wait/16) and the Consul timeout.
        budget = wait_s + wait_s / 16 + self._timeout_s
        try:
            answer = self._transport.get(path, params=params or None, accept=_ANY_STATUS,
                                         timeout_s=budget, connect_timeout_s=self._timeout_s)
        except ConsulUnreachable:
            raise
        except ConsulError as exc:  # an answer that is no answer: retried like no answer
            raise ConsulUnreachable(str(exc), exc.status) from None
        return answer.status, answer.headers, answer.body

    def interrupt(self) -> None:
        """End the GET in progress at once; every later one fails at once too."""
        self._transport.interrupt()
        self._transport.close()
