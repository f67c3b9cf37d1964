"""FakeAgent: the fake's handle for tests, shaped as integration_tests/testbed/consul.py's
ConsulAgent (url, http_port, master_token, services(), checks(), kv_get(), get/put/delete,
stop/start/restart), plus what only a fake can do: fault modes, a request log, check status
set by hand, catalog sync switched off, a session made to lapse now."""

from __future__ import annotations

import socket
import threading
import time
import types
import uuid
from typing import Any, Callable, Iterable, List, Optional

import requests

from .kvstore import Store
from .server import FakeRequest, Server
from .services import Services
from .state import Core


class FakeAgent:
    """An in-memory Consul 1.8.7 agent on 127.0.0.1 (an ephemeral port), started at once.

    acl=True: ACLs on with default deny; `master_token` may do anything, as may every token
    of `acl_tokens`; no token is the anonymous token, any other is unknown ("ACL not found").
    """

    def __init__(self, acl: bool = False, acl_tokens: Iterable[str] = (),
                 node_name: str = ""):
        self.master_token = str(uuid.uuid4()) if acl else None
        tokens = set(acl_tokens) | ({self.master_token} if acl else set())
        self.acl_tokens = tokens if (acl or tokens) else None
        self.mode = "answer"  # or "hang", "500"; "refuse" is a closed listener
        self.requests: List[FakeRequest] = []
        self._released = threading.Event()
        self._server: Optional[Server] = None
        self._reserved = _reservation(0)
        self.http_port = self._reserved.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.http_port}"
        self._node_name = node_name or f"fake-{self.http_port}"
        self._state = self._fresh_state()
        self.start(keep_state=True)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, keep_state: bool = False) -> "FakeAgent":
        """Listen again; without keep_state it comes back empty, as a dev agent does."""
        if self._server is None:
            if not keep_state:
                self._state = self._fresh_state()
            self._state.core.stopping = False
            self._listen()
        return self

    def stop(self) -> None:
        """Shut down: blocking queries answer, connections close, new ones are refused."""
        with self._state.core.lock:
            self._state.core.stopping = True
            self._state.core.changed.notify_all()
        self._close_listener()

    def restart(self, keep_state: bool = False) -> "FakeAgent":
        """keep_state=False: an agent without its data dir, back with nothing registered."""
        self.stop()
        return self.start(keep_state)

    def is_running(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        self.stop()
        self._reserved.close()

    def __enter__(self) -> "FakeAgent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- faults --------------------------------------------------------------------------

    def refuse(self) -> None:
        """Connections are refused (the listener closes); what is registered stays."""
        self._close_listener()

    def answer_500(self) -> None:
        """Every request is answered 500 "No cluster leader"."""
        self.heal()
        self.mode = "500"

    def hang(self) -> None:
        """Requests are taken and never answered; heal() or stop() drops them."""
        self.heal()
        self._released.clear()
        self.mode = "hang"

    def heal(self) -> None:
        """Back to answering every request."""
        self.mode = "answer"
        self._released.set()
        if self._server is None:
            self._listen()

    # -- state a test reads or sets --------------------------------------------------------

    def services(self) -> dict:
        """GET /v1/agent/services as a token that may see everything."""
        return self._state.services.listed(_ALL)

    def checks(self) -> dict:
        return self._state.services.listed_checks(_ALL)

    def service_health(self, service_id: str):
        """(status code, body) of GET /v1/agent/health/service/id/<id>."""
        status, body, _ = self._state.services.health(service_id, _ALL)
        return status, body

    def kv_get(self, key: str) -> Optional[bytes]:
        return self._state.store.get(key, {"raw": ""}, _ALL)

    def kv_put(self, key: str, value: bytes) -> None:
        self._state.store.put(key, {}, value, _ALL)

    def set_check_status(self, check_id: str, status: str, output: str = "") -> None:
        """What Consul's poll of an HTTP check would find (the fake polls nothing)."""
        self._state.services.set_status(check_id, status, output)

    def expire_session(self, session_id: str) -> None:
        """The session lapses now, as if its TTL ran out: its keys go or are released."""
        self._state.store.invalidate(session_id)

    @property
    def catalog_sync(self) -> bool:
        return self._state.core.catalog_sync

    @catalog_sync.setter
    def catalog_sync(self, on: bool) -> None:
        """Off: the catalog keeps what it has (an agent that cannot sync); on: synced now."""
        self._state.core.catalog_sync = on
        self._state.services.sync_catalog()

    @property
    def node_name(self) -> str:
        return self._state.core.node["Name"]

    def calls(self, path_prefix: str = "", method: str = "") -> List[FakeRequest]:
        """The requests received whose path starts with path_prefix (and of that method)."""
        return [r for r in list(self.requests) if r.path.startswith(path_prefix)
                and (not method or r.method == method)]

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0,
                   what: str = "the condition") -> Any:
        """Wait for predicate() to be truthy, looking again at each change of the state."""
        deadline = time.monotonic() + timeout
        while True:
            core = self._state.core
            seen = core.index
            value = predicate()  # outside the lock: it may well ask the fake over HTTP
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} not within {timeout} s")
            # Woken by the next write; a TTL lapsing is no write, hence the bounded wait.
            with core.changed:
                core.changed.wait_for(lambda: core.index != seen, timeout=min(left, 0.1))

    def wait_service(self, service_id: str, present: bool = True, timeout: float = 10.0):
        return self.wait_until(lambda: (service_id in self.services()) == present, timeout,
                               f"service {service_id} {'present' if present else 'gone'}")

    def wait_service_status(self, service_id: str, status: str = "passing",
                            timeout: float = 10.0):
        code = {"passing": 200, "warning": 429, "critical": 503, "absent": 404}[status]
        return self.wait_until(lambda: (h := self.service_health(service_id))[0] == code and h,
                               timeout, f"service {service_id} {status}")

    # -- HTTP helpers, as ConsulAgent's: token None is the master token, "" none ------------

    def request(self, method: str, path: str, token: Optional[str] = None, timeout: float = 10,
                **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        token = self.master_token if token is None else token
        if token:
            headers["X-Consul-Token"] = token
        return requests.request(method, self.url + path, headers=headers, timeout=timeout,
                                **kwargs)

    def get(self, path: str, token: Optional[str] = None, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, token=token, **kwargs)

    def put(self, path: str, json: Any = None, token: Optional[str] = None,
            **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, token=token, json=json, **kwargs)

    def delete(self, path: str, token: Optional[str] = None, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, token=token, **kwargs)

    def __repr__(self) -> str:
        return f"<FakeAgent {self.url} acl={self.acl_tokens is not None} mode={self.mode}>"

    # -- inside ------------------------------------------------------------------------

    def _received(self, request: FakeRequest) -> None:
        self.requests.append(request)

    def _fresh_state(self) -> types.SimpleNamespace:
        core = Core(self._node_name, acl=self.acl_tokens is not None)
        return types.SimpleNamespace(core=core, services=Services(core), store=Store(core))

    def _listen(self) -> None:
        self._reserved.close()
        self._server = Server(self.http_port, self)

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._released.set()  # hung requests are dropped
            server.close()
            self._reserved = _reservation(self.http_port)


def _reservation(port: int) -> socket.socket:
    """A socket bound to the port but not listening: connecting is refused, and nobody else
    takes the port while the fake is down (closed connections may linger on it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class _Everything:
    """The access of a test's own look at the state: everything, filtered by nothing."""

    who = "anyone"

    def read(self) -> None:
        pass

    def write(self, *args: Any, **kwargs: Any) -> None:
        pass

    def filtered(self) -> bool:
        return False


_ALL = _Everything()
