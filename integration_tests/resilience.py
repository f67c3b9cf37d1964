"""Helpers of the resilience tests (test_resilience_*.py) and of bench/lifecycle.py.

    proxy = ConsulProxy(agent)            # a counting HTTP proxy in front of a Consul agent
    proxy.mode = "error"                  # forward | error (proxy.status) | echo | drop
    ...
    registrar_threads(ast)                # our worker threads in the Asterisk process
    consul_requests(agent, since)         # (method, url) the agent logged after an offset

The proxy has .port and .address like the test bed's peers, so discovery.write_conf(ast,
proxy) points the module at it.
"""

import re
import threading
import time
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from integration_tests import discovery as d

# Python names native threads from 3.14 (Asterisk 22's), the registrar does it before: Linux
# keeps 15 bytes of "consul-registrar".
NATIVE_WORKER_NAME = "consul-registra"
_REQUEST_LINE = re.compile(r"agent\.http: Request finished: method=(\S+) url=(\S+)")


# -------------------------------------------------------------------------------- proxy
class ConsulProxy:
    """HTTP proxy on 127.0.0.1 in front of a Consul agent, recording every request.

    mode "forward": pass to the agent (502 if the agent is down); "error": answer
    `status` with a Consul-like text body; "echo": answer 500 with the request's headers in
    the body (a misdirected peer that reflects what it got, token included); "drop": close
    the connection without an answer.
    .requests lists (monotonic time, method, path, status answered); the token header is
    never recorded, only whether one came (.token_seen).
    """

    def __init__(self, agent=None, mode="forward", status=500):
        self.agent = agent
        self.mode = mode
        self.status = status
        self.requests = []
        self.token_seen = set()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                token = self.headers.get("X-Consul-Token")
                mode = proxy.mode
                if mode == "drop":
                    proxy._record(self.command, self.path, None, token)
                    self.close_connection = True
                    return
                if mode == "forward":
                    status, reason, headers, data = proxy._forward(self.command, self.path,
                                                                   body, token)
                elif mode == "echo":
                    status, reason = 500, "Internal Server Error"
                    data = "".join("%s: %s\n" % kv for kv in self.headers.items()).encode()
                    headers = [("Content-Type", "text/plain")]
                else:
                    status, reason = proxy.status, "Proxy Says So"
                    data = b"test proxy answers %d" % proxy.status
                    headers = [("Content-Type", "text/plain")]
                proxy._record(self.command, self.path, status, token)
                self.send_response(status, reason)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="consul-proxy-%d" % self.port, daemon=True)
        self._thread.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def url(self):
        return "http://" + self.address

    def _record(self, method, path, status, token):
        with self._lock:
            self.requests.append((time.monotonic(), method, path, status))
            self.token_seen.add(token is not None)

    def _forward(self, method, path, body, token):
        headers = {"Content-Type": "application/json"} if body else {}
        if token is not None:
            headers["X-Consul-Token"] = token
        try:
            conn = HTTPConnection("127.0.0.1", self.agent.http_port, timeout=10)
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders()
                    if k.lower() in ("content-type", "x-consul-index")]
            conn.close()
            return response.status, response.reason, kept, data
        except OSError as exc:
            return 502, "Bad Gateway", [("Content-Type", "text/plain")], str(exc).encode()

    def calls(self, since=0.0, path_prefix=""):
        """Requests after monotonic time `since` whose path starts with path_prefix."""
        with self._lock:
            return [r for r in self.requests if r[0] >= since and r[2].startswith(path_prefix)]

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -------------------------------------------------------------------------------- Asterisk
def native_threads(ast):
    """{thread name: count} of the Asterisk process (from /proc, names as the kernel has them)."""
    names = {}
    for task in Path("/proc/%d/task" % ast.pid).iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended while we looked
        names[name] = names.get(name, 0) + 1
    return names


def registrar_threads(ast):
    return native_threads(ast).get(NATIVE_WORKER_NAME, 0)


def timed(fn, *args, **kwargs):
    began = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - began


def unload(ast, attempts=20):
    """`module unload` that must succeed; returns (output, seconds of the attempt that did).

    Asterisk refuses a soft unload while an HTTP request holds the module ("use count 1":
    the shim holds it during each request, and Consul's EID check comes every second in
    these tests); that attempt returns at once and is made again, as an operator would. The CLI
    says only "Unable to unload resource" (the reason is in the log)."""
    for _ in range(attempts):
        out, took = d.timed_rx(ast, "module unload " + d.MODULE)
        if "Unable to unload" not in out and "use count" not in out:
            break
        time.sleep(0.05)
    assert not d.module_running(ast), out
    return out, took


def status_row(text, row):
    """The value of one row ("Last sync", "Agent", ...) of `discovery show status`."""
    match = re.search(r"^\s*%s:\s*(.*)$" % re.escape(row), text, re.M)
    assert match, "no %r row in:\n%s" % (row, text)
    return match.group(1)


# -------------------------------------------------------------------------------- Consul
def consul_log_offset(agent):
    try:
        return agent.log_path.stat().st_size
    except FileNotFoundError:
        return 0


def consul_requests(agent, since=0, method=None):
    """(method, url) of the HTTP requests the agent logged after byte offset `since`."""
    with open(agent.log_path, "rb") as fh:
        fh.seek(since)
        text = fh.read().decode("utf-8", "replace")
    found = _REQUEST_LINE.findall(text)
    return [(m, u) for m, u in found if method is None or m == method]


def consul_writes(agent, since=0):
    """The PUT requests (registrations, deregistrations, maintenance...) logged after `since`."""
    return consul_requests(agent, since, "PUT")
