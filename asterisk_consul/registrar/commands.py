"""What Asterisk's threads hand the worker: small typed commands, queued with their answer.
An operator's change is a choices.Change (answered with a Result)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..settings import Settings


@dataclass(frozen=True)
class Apply:
    """Reloaded settings."""
    settings: Settings


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Wake:
    """From the watch: the agent's view changed under us (or the agent is back); sync now."""
    reason: str
    agent_back: bool


@dataclass(frozen=True)
class Stop:
    deregister: bool
    deadline: float


@dataclass
class Queued:
    command: Any
    future: "Future[Any]"
    # Set by a caller that stopped waiting: the worker records the intent (an operator's
    # change) or drops the job (status) instead of spending another timeout on nobody.
    abandoned: bool = False
