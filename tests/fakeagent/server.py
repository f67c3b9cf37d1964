"""The HTTP side: a ThreadingHTTPServer on 127.0.0.1 speaking HTTP/1.1 with keep-alive, as
Consul does, that logs each request, applies the fault mode of the moment and hands the rest
to the routes. It tracks its connections so that a stop really cuts kept-alive ones."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, NamedTuple, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from .acl import Access
from .routes import Answer, Call, route


class FakeRequest(NamedTuple):
    """One request the fake received, for a test's asserts."""

    time: float               # time.monotonic() at arrival
    method: str
    path: str                 # URL-decoded, without the query
    query: Dict[str, str]     # one value per key; a bare ?recurse is ""
    token: Optional[str]      # X-Consul-Token (or Bearer) as sent; None when absent
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "Server"

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_DELETE = do_POST = do_GET

    def _serve(self) -> None:
        with self.server.busy:  # counted from the start: a stop waits for this answer
            self.server.active += 1
        try:
            self._answer(self.server.fake)
        finally:
            with self.server.busy:
                self.server.active -= 1
                self.server.busy.notify_all()

    def _answer(self, fake) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        token = self.headers.get("X-Consul-Token")
        bearer = self.headers.get("Authorization", "")
        if token is None and bearer.startswith("Bearer "):
            token = bearer[len("Bearer "):]
        if self.server.closing:
            return self._drop()
        request = FakeRequest(time.monotonic(), self.command, unquote(parts.path), query,
                              token, body)
        fake._received(request)
        if fake.mode == "hang":
            fake._released.wait()  # until heal() or stop(): then dropped, never answered
            return self._drop()
        if fake.mode == "500":
            return self._send(Answer(500, b"No cluster leader", {}))
        access = Access(fake.acl_tokens, token or "")
        self._send(route(fake._state, Call(request.method, request.path, query, body, access)))

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        text = not answer.body or not answer.body.startswith((b"{", b"["))
        self.send_header("Content-Type", "text/plain; charset=utf-8" if text
                         else "application/json")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, *args) -> None:
        pass  # the request log is fake.requests


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, fake):
        self.fake = fake
        self.connections: set = set()
        self.closing = False
        self.busy = threading.Condition()
        self.active = 0  # requests being answered: a stop lets them finish first
        super().__init__(("127.0.0.1", port), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"fake-consul-{port}", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop listening (new connections are refused), let the answers being written
        finish (a blocking query answers as the agent stops), then cut every connection."""
        self.closing = True
        self.shutdown()
        self.server_close()
        self.thread.join(2.0)
        with self.busy:
            self.busy.wait_for(lambda: self.active == 0, timeout=2.0)
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
