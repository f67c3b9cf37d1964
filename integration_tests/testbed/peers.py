"""Broken peers on 127.0.0.1 for fault tests. Each is a context manager with .port and .url.

RefusingPeer  - connections are refused (the port is bound but never listens, so nothing else
                can take it while the peer exists).
BlackholePeer - accepts TCP connections and never sends a byte (client timeouts).
ErrorPeer     - answers every HTTP request with one status (default 500); records requests.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Peer:
    scheme = "http"

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class RefusingPeer(_Peer):
    """A port with nothing listening: connect() gets ECONNREFUSED."""

    def __init__(self):
        self._sock = None
        self.port = None
        self.start()

    def start(self):
        if self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sock.bind(("127.0.0.1", 0))  # bound, not listening: refused, and reserved
            self.port = self._sock.getsockname()[1]
        return self

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class BlackholePeer(_Peer):
    """Accepts TCP connections and then says nothing, ever (until closed)."""

    def __init__(self):
        self._sock = None
        self._conns = []
        self._thread = None
        self._stop = threading.Event()
        self.port = None
        self.accepted = 0
        self.start()

    def start(self):
        if self._sock is not None:
            return self
        self._stop.clear()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=f"blackhole-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self._conns.append(conn)  # held open, never read nor written
            self.accepted += 1

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
        self._conns = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class ErrorPeer(_Peer):
    """An HTTP server answering every request with `status` (and a small JSON body).

    .requests lists (method, path, headers dict, body bytes) of what it received."""

    def __init__(self, status=500, body=None, headers=None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.requests = []
        self._server = None
        self._thread = None
        self.port = None
        self.start()

    def start(self):
        if self._server is not None:
            return self
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                peer.requests.append((self.command, self.path, dict(self.headers), data))
                body = peer.body
                if body is None:
                    body = json.dumps({"error": f"test peer says {peer.status}"})
                if isinstance(body, str):
                    body = body.encode()
                self.send_response(peer.status)
                for k, v in peer.headers.items():
                    self.send_header(k, v)
                if "Content-Type" not in peer.headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _answer

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"errorpeer-{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
