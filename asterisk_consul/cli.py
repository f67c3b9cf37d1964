"""CLI command plumbing: what the shim registers and how a command answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

OK = "ok"
SHOW_USAGE = "usage"
FAILURE = "failure"


@dataclass(frozen=True)
class CliResult:
    status: str
    text: str = ""


def ok(text: str) -> CliResult:
    return CliResult(OK, text if text.endswith("\n") or not text else text + "\n")


def failure(text: str) -> CliResult:
    return CliResult(FAILURE, text if text.endswith("\n") or not text else text + "\n")


USAGE = CliResult(SHOW_USAGE)


@dataclass(frozen=True)
class CliCommand:
    """One CLI entry. run() gets the whole argv, the command's own words included."""

    command: str
    summary: str
    usage: str
    handler: Callable[[List[str]], CliResult]
    # Completion choices per word position (0-based, counted over the whole line).
    choices: Optional[Callable[[int], Sequence[str]]] = None

    def run(self, args: List[str]) -> CliResult:
        return self.handler(args)

    def complete(self, line: str, word: str, pos: int, n: int) -> Optional[str]:
        """The n-th choice at position pos that starts with word, as Asterisk's generator asks."""
        if self.choices is None:
            return None
        matches = [c for c in self.choices(pos) if c.lower().startswith(word.lower())]
        return matches[n] if n < len(matches) else None
