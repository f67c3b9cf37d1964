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
        self._headers = None

    @property
    def headers(self) -> Optional[Pairs]:
        if self._headers is None:
            self._headers = self._read_headers()
        return self._headers


class HttpResponse:
    __slots__ = ("status", "reason", "body", "content_type", "headers")

    def __init__(self, status: int, reason: str, body: str = "", content_type: str = "text/plain",
                 headers: Sequence[Tuple[str, str]] = ()):
        self.status = status
        self.reason = reason
        self.body = body
        self.content_type = content_type
        self.headers = headers

    def header_block(self) -> str:
        """Header lines for ast_http_send (it adds Content-Length, Date, Server, Connection)."""
        lines = ["Content-Type: %s\r\n" % self.content_type]
        lines.extend("%s: %s\r\n" % (k, v) for k, v in self.headers)
        return "".join(lines)


def plain(status: int, reason: str, body: str = "") -> HttpResponse:
    return HttpResponse(status, reason, body if body.endswith("\n") or not body else body + "\n")
