"""AMI action plumbing: what the shim registers and how an action answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Sequence, Tuple


@dataclass(frozen=True)
class AmiReply:
    success: bool
    message: str
    headers: Sequence[Tuple[str, str]] = ()


@dataclass(frozen=True)
class AmiAction:
    """One AMI action; run() gets the request's headers with lowercased names. Its
    parameters ((header, required, what it means)) and description are Asterisk's help
    (`manager show command`), written into the module's XML documentation."""

    name: str
    synopsis: str
    handler: Callable[[Dict[str, str]], AmiReply]
    parameters: Tuple[Tuple[str, bool, str], ...] = ()
    description: str = ""

    def run(self, fields: Dict[str, str]) -> AmiReply:
        return self.handler(fields)
