"""Broken peers on 127.0.0.1 for fault tests. Each is a context manager with .port and .url.

RefusingPeer  - connections are refused (the port is bound but never listens, so nothing else
                can take it while the peer exists).
BlackholePeer - accepts TCP connections and never sends a byte (client timeouts).
StandInPeer   - the stand-in HTTP peer: answers one status, forwards to a Consul agent,
                echoes or drops, redirects, drips or sends an endless body; records every
                request.
"""

import json
import socket
import threading
import time
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, NamedTuple, Optional


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


class Request(NamedTuple):
    """One request a StandInPeer received (the token header is kept only as token_seen)."""

    time: float     # time.monotonic() at arrival
    method: str
    path: str
    headers: dict
    body: bytes
    status: Optional[int]  # what was answered (None: dropped)


class StandInPeer(_Peer):
    """The one stand-in HTTP peer of the tests, recording every request in .requests.

    mode "answer" (default): every request gets `status` with `body` (a small JSON error by
    default); "forward": passed to the Consul agent `agent` (502 when it is down); "echo":
    500 with the request's headers as the body (a misdirected peer that reflects what it got,
    token included); "drop": the connection is closed without an answer. .mode and .status
    may be changed while it runs. .token_seen says whether requests carried X-Consul-Token.
    hang: path prefixes whose requests are held without an answer (whatever the mode) until
    the peer closes or hang_s passed, then dropped: an agent that hangs on some calls only.

    Peers that are not Consul: "redirect": `status` (307 unless set) with `Location:
    <location><path>`; "drip": 200 and a JSON body of drip_bytes, one byte every drip_s;
    "endless": 200 with no length, 64 kB after 64 kB until the client gives up.
    override: {path prefix: (status, body)} answered instead, whatever the mode (an agent
    forwarded to, but whose KV reads are malformed). pass_hash: forwarded answers keep
    X-Consul-ContentHash, so that the module's watch holds blocking queries through the peer.
    """

    def __init__(self, status=500, body=None, headers=None, agent=None, mode=None, hang=(),
                 hang_s=60.0, location="", drip_s=0.2, drip_bytes=1000, override=None,
                 pass_hash=False):
        self.pass_hash = pass_hash  # forward X-Consul-ContentHash: the module's watch works
        self.location = location
        self.drip_s = drip_s
        self.drip_bytes = drip_bytes
        self.override = dict(override or {})
        self.written = 0  # bytes of body sent by "drip" and "endless"
        self.stream_ended = threading.Event()  # set once such a body ended (or its client left)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.agent = agent
        self.mode = mode or ("forward" if agent is not None else "answer")
        self.requests: List[Request] = []
        self.hang = tuple(hang)
        self.hang_s = hang_s
        self._closing = threading.Event()
        self.token_seen = set()
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self.port = None
        self.start()

    def start(self):
        if self._server is not None:
            return self
        self._closing.clear()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                headers = dict(self.headers)
                token = headers.get("X-Consul-Token")
                mode = peer.mode
                if peer.hang and self.path.startswith(peer.hang):
                    peer._record(self.command, self.path, headers, data, None, token)
                    peer._closing.wait(peer.hang_s)
                    self.close_connection = True
                    return
                if mode == "drop":
                    peer._record(self.command, self.path, headers, data, None, token)
                    self.close_connection = True
                    return
                override = next((v for k, v in peer.override.items()
                                 if self.path.startswith(k)), None)
                if override is None and mode in ("drip", "endless"):
                    peer._record(self.command, self.path, headers, data, 200, token)
                    self.close_connection = True
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    if mode == "drip":
                        self.send_header("Content-Length", str(peer.drip_bytes))
                    self.end_headers()
                    peer._stream(self.wfile, mode)
                    return
                if override is not None:
                    status, body = override
                    peer._record(self.command, self.path, headers, data, status, token)
                    body = body.encode() if isinstance(body, str) else body
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                status, reason, answer_headers, body = peer._answer(
                    mode, self.command, self.path, data, token, self.headers)
                peer._record(self.command, self.path, headers, data, status, token)
                self.send_response(status, reason)
                for name, value in answer_headers:
                    self.send_header(name, value)
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
                                        kwargs={"poll_interval": 0.05},
                                        name=f"standin-peer-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _stream(self, wfile, mode):
        """The body of "drip" (a byte at a time) or "endless" (until the client leaves)."""
        chunk = b" " if mode == "drip" else b" " * 65536
        sent = 0
        try:
            while not self._closing.is_set() and (mode == "endless" or sent < self.drip_bytes):
                wfile.write(chunk)
                wfile.flush()
                sent += len(chunk)
                with self._lock:
                    self.written += len(chunk)
                if mode == "drip":
                    self._closing.wait(self.drip_s)
        except OSError:
            pass  # the client gave up: what the test wants
        finally:
            self.stream_ended.set()

    def _answer(self, mode, method, path, data, token, request_headers):
        if mode == "redirect":
            status = self.status if 300 <= self.status < 400 else 307
            return status, None, [("Location", self.location + path),
                                  ("Content-Type", "text/plain")], b""
        if mode == "forward":
            return self._forward(method, path, data, token)
        if mode == "echo":
            body = "".join("%s: %s\n" % kv for kv in request_headers.items()).encode()
            return 500, "Internal Server Error", [("Content-Type", "text/plain")], body
        body = self.body
        if body is None:
            body = json.dumps({"error": f"test peer says {self.status}"})
        if isinstance(body, str):
            body = body.encode()
        headers = list(self.headers.items())
        if "Content-Type" not in self.headers:
            headers.append(("Content-Type", "application/json"))
        return self.status, None, headers, body

    def _forward(self, method, path, body, token):
        headers = {"Content-Type": "application/json"} if body else {}
        if token is not None:
            headers["X-Consul-Token"] = token
        try:
            conn = HTTPConnection("127.0.0.1", self.agent.http_port, timeout=10)
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            passed = ("content-type", "x-consul-index") + (
                ("x-consul-contenthash",) if self.pass_hash else ())
            kept = [(k, v) for k, v in response.getheaders() if k.lower() in passed]
            conn.close()
            return response.status, response.reason, kept, data
        except OSError as exc:
            return 502, "Bad Gateway", [("Content-Type", "text/plain")], str(exc).encode()

    def _record(self, method, path, headers, body, status, token):
        with self._lock:
            self.requests.append(Request(time.monotonic(), method, path, headers, body, status))
            self.token_seen.add(token is not None)

    def calls(self, since=0.0, path_prefix=""):
        """Requests after monotonic time `since` whose path starts with path_prefix."""
        with self._lock:
            return [r for r in self.requests if r.time >= since and r.path.startswith(path_prefix)]

    def close(self):
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
