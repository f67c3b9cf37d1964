"""The token file (token_file, or CONSUL_HTTP_TOKEN_FILE), watched by the worker: read about
once a second and its content compared with the token in use, so that a rotated token is used
without a reload. Reading by name each time also follows a file replaced by rename.

A change is taken once two reads agree (SETTLE_S apart): a file being rewritten in place may
be read half written. An empty or unreadable file keeps the token in use (a rename in
progress, an editor's save); the problem is shown, never the file's name or content.
"""

from __future__ import annotations

import logging
from typing import Optional

from ..resolve import TokenFileProblem, token_of_file
from .link import AgentLink

LOOK_EVERY_S = 1.0
SETTLE_S = 0.2  # a second read this much later must agree before a new token is taken


class TokenFile:
    def __init__(self, link: AgentLink):
        self._link = link
        self._next = 0.0
        self._candidate: Optional[str] = None  # a new token read once, awaiting a second read
        self.read_at: Optional[float] = None   # wall-clock time the token in use was read
        self.seen_at: Optional[float] = None   # wall-clock time a new token was first read
        self.problem = ""  # why the last read gave no token

    @property
    def path(self) -> str:
        return self._link.settings.token_file

    def due(self) -> Optional[float]:
        return self._next if self.path else None

    def look_now(self) -> None:
        """Consul refused the token in use: the file may already hold its successor."""
        self._next = 0.0

    def look(self, settle: bool = True) -> Optional[str]:
        """When due: the new token the file holds, or None (the same, not settled, or no
        token readable now)."""
        clock = self._link.clock
        self._next = clock.monotonic() + LOOK_EVERY_S
        if not self.path:
            return None
        try:
            token = token_of_file(self.path)
        except TokenFileProblem as exc:
            self._note_problem(str(exc))
            return None
        if not token:
            self._note_problem("the token file is empty")
            return None
        if self.problem:
            self._link.log(logging.INFO, "Consul: the token file is readable again")
            self.problem = ""
        if token == self._link.settings.token:
            self._candidate = None
            if self.read_at is None:
                self.read_at = clock.time()
            return None
        if settle and token != self._candidate:
            self._candidate = token
            self.seen_at = clock.time()
            self._next = clock.monotonic() + SETTLE_S
            return None
        if self._candidate is None:
            self.seen_at = clock.time()
        self._candidate = None
        self.read_at = clock.time()
        return token

    def _note_problem(self, problem: str) -> None:
        self._candidate = None
        if problem != self.problem:
            self._link.log(logging.WARNING, "Consul: token_file: %s; the token in use stays",
                           problem)
        self.problem = problem
