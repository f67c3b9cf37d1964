"""The errors of a call to the agent, one class per thing the caller does next."""

from __future__ import annotations

from typing import Optional


class ConsulError(Exception):
    """A Consul call failed. `status` is the HTTP status, or None when nothing answered."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class ConsulUnreachable(ConsulError):
    """No HTTP answer: connection refused, timed out, DNS failure, TLS failure, or the call
    was interrupted (Transport.interrupt)."""


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
