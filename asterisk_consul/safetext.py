"""Text from elsewhere made fit to show: secrets masked, a peer's page cut to one short line.

The one place a token is taken out of text bound for a log line, an exception, the CLI or AMI
(the log handler, the Consul transport and the registrar's link all mask with scrub()).
"""

from __future__ import annotations

from typing import Iterable, Optional

REDACTED = "<redacted>"
SHORT_CHARS = 200  # Consul's error bodies are one line; a misdirected peer's may be a page


def scrub(text: str, secrets: Iterable[str]) -> str:
    """text with every secret replaced by <redacted>. Longest first, so a secret inside another
    is not half-masked; an empty secret (no token set) masks nothing."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def short(text: Optional[str], limit: int = SHORT_CHARS) -> str:
    """text on one line (runs of whitespace, newlines included, become one space), cut after
    limit characters with an ellipsis."""
    text = " ".join((text or "").split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return text
