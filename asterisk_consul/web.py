"""HTTP requests and responses as handlers under Asterisk's HTTP server see them."""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

Pairs = List[Tuple[str, str]]


class HttpRequest:
    """One request, as decoded by Asterisk's HTTP server.

    params is None when the request had more query parameters than the shim passes on;
    headers are decoded only when asked for (most handlers never need them).
    """

    __slots__ = ("method", "path", "params", "_headers", "_read_headers")

    def __init__(self, method: str, path: str, params: Optional[Pairs],
                 read_headers: Callable[[], Optional[Pairs]] = lambda: []):
        self.method = method
        self.path = path
        self.params = params
        self._read_headers = read_headers
        self._headers: Optional[Pairs] = None

    @property
    def headers(self) -> Optional[Pairs]:
        if self._headers is None:
            self._headers = self._read_headers()
        return self._headers


class HttpResponse:
    """A response. Treat it as a value: the EID check's answers are shared constants, and the
    header block and the encoded form are made once, at first use."""

    __slots__ = ("status", "reason", "body", "content_type", "headers", "_block", "_wire")

    def __init__(self, status: int, reason: str, body: str = "", content_type: str = "text/plain",
                 headers: Sequence[Tuple[str, str]] = ()):
        self.status = status
        self.reason = reason
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self._block: Optional[str] = None
        self._wire: Optional[Tuple[bytes, bytes, bytes]] = None

    def header_block(self) -> str:
        """Header lines for ast_http_send (it adds Content-Length, Date, Server, Connection)."""
        block = self._block
        if block is None:
            lines = ["Content-Type: %s\r\n" % self.content_type]
            lines.extend("%s: %s\r\n" % (k, v) for k, v in self.headers)
            block = self._block = "".join(lines)
        return block

    def wire(self) -> Tuple[bytes, bytes, bytes]:
        """(reason, header block, body) encoded as the shim takes them."""
        wire = self._wire
        if wire is None:
            wire = self._wire = (self.reason.encode("utf-8", "replace"),
                                 self.header_block().encode("utf-8", "replace"),
                                 self.body.encode("utf-8", "replace"))
        return wire


def plain(status: int, reason: str, body: str = "") -> HttpResponse:
    return HttpResponse(status, reason, body if body.endswith("\n") or not body else body + "\n")
