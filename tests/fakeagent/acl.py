"""ACLs as a 1.8.7 agent with default_policy deny answers them: a token of `tokens` may do
anything (a master token), no token is the anonymous token (no rights: writes refused, lists
answered empty), any other token is unknown ("ACL not found")."""

from __future__ import annotations

from typing import Optional, Set

from .model import ApiError


class Access:
    def __init__(self, tokens: Optional[Set[str]], token: str):
        if tokens is None or token in tokens:
            self.who = "anyone"
        else:
            self.who = "anonymous" if not token else "unknown"

    def read(self) -> None:
        """An endpoint that refuses what may not be read (agent/self, a service, a key)."""
        self._known()
        if self.who == "anonymous":
            raise ApiError(403, "Permission denied")

    def write(self, missing: str = "", unknown_status: int = 403) -> None:
        """missing: the right 1.8.7 names in its refusal ("service:write on Asterisk")."""
        self._known(unknown_status)
        if self.who == "anonymous":
            raise ApiError(403, f"Permission denied: Missing {missing}" if missing
                           else "Permission denied")

    def filtered(self) -> bool:
        """A list endpoint: True when what it holds is to be left out (anonymous)."""
        self._known()
        return self.who == "anonymous"

    def _known(self, status: int = 403) -> None:
        if self.who == "unknown":
            raise ApiError(status, "ACL not found")
