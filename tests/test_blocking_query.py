"""The blocking query (consul/blocking.py) on the Transport: interrupt() from another thread ends
it at once, wherever it waits (the answer, a TLS handshake, a DNS lookup), and it keeps every
bound of a call. Stand-in peers on 127.0.0.1: no Consul, no Asterisk."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from asterisk_consul.consul import ConsulUnreachable, TlsConfig
from asterisk_consul.consul.blocking import BlockingClient
from integration_tests.testbed.consul import make_test_certs
from integration_tests.testbed.peers import BlackholePeer, StandInPeer
from integration_tests.testbed.runtime import wait_until

SECRET = "5ec7e7-70ce-4a11-b33f-token-never-shown"
PATH = "/v1/agent/service/pbx-1"
PROMPT_S = 0.5  # "at once": well under a second, against a query that would last minutes


class Query:
    """One client.get() on a thread of its own, as the watch holds it."""

    def __init__(self, client, wait_s=300.0, params=None):
        self.result = self.error = None
        self.ended_at = None
        self._thread = threading.Thread(target=self._run, args=(client, wait_s, params or {}))
        self._thread.start()

    def _run(self, client, wait_s, params):
        try:
            self.result = client.get(PATH, params, wait_s)
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            self.error = exc
        self.ended_at = time.monotonic()

    def join(self, timeout=10.0):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the query did not end"
        return self


def interrupted_within(client, query):
    """interrupt() now; the time until the query returned."""
    began = time.monotonic()
    client.interrupt()
    query.join()
    return query.ended_at - began


def test_interrupt_ends_a_query_held_by_a_peer_that_never_answers_at_once():
    with StandInPeer(status=200, body="{}", hang=("/v1/agent/service/",), hang_s=60) as peer:
        client = BlockingClient(peer.url, SECRET, 2.0)
        query = Query(client, params={"hash": "abc", "wait": "300s"})
        wait_until(lambda: peer.requests, what="the query reached the peer")  # now it waits
        took = interrupted_within(client, query)
    assert took < PROMPT_S, f"interrupt() took {took:.2f} s"
    assert isinstance(query.error, ConsulUnreachable) and "interrupted" in str(query.error)
    assert SECRET not in str(query.error)


def test_after_interrupt_every_query_fails_at_once_without_reaching_the_peer():
    with StandInPeer(status=200, body="{}") as peer:
        client = BlockingClient(peer.url, SECRET, 2.0)
        assert client.get(PATH, {}, 0.0)[0] == 200
        client.interrupt()
        began = time.monotonic()
        with pytest.raises(ConsulUnreachable, match="interrupted"):
            client.get(PATH, {"hash": "abc", "wait": "300s"}, 300.0)
        assert time.monotonic() - began < PROMPT_S
        assert len(peer.requests) == 1


class TlsPeerThatHolds:
    """HTTPS on 127.0.0.1 with the test bed's server certificate (server.dc1.consul): reads
    one request, sets `received`, and never answers (until closed)."""

    def __init__(self, certs):
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(certs["server_cert"]), str(certs["server_key"]))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.received = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self):
        conn, _ = self._listener.accept()
        with self._context.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while b"\r\n\r\n" not in data:
                data += tls.recv(4096)
            self.received.set()
            self._closed.wait(30)

    def close(self):
        self._closed.set()
        self._listener.close()
        self._thread.join(5)


def test_interrupt_ends_a_query_held_over_verified_tls_at_once(tmp_path):
    certs = make_test_certs(tmp_path)
    peer = TlsPeerThatHolds(certs)
    try:
        tls = TlsConfig(ca_file=str(certs["ca"]), server_name="server.dc1.consul")
        client = BlockingClient(f"https://127.0.0.1:{peer.port}", SECRET, 2.0, tls)
        query = Query(client, params={"hash": "abc", "wait": "300s"})
        assert peer.received.wait(10), query.error  # verified, sent: now it waits
        took = interrupted_within(client, query)
    finally:
        peer.close()
    assert took < PROMPT_S, f"interrupt() took {took:.2f} s"
    assert isinstance(query.error, ConsulUnreachable) and "interrupted" in str(query.error)


def test_interrupt_ends_a_tls_handshake_with_a_silent_peer_at_once(tmp_path):
    certs = make_test_certs(tmp_path)
    with BlackholePeer() as peer:
        client = BlockingClient(f"https://127.0.0.1:{peer.port}", SECRET, 30.0,
                                TlsConfig(ca_file=str(certs["ca"])))
        query = Query(client)
        wait_until(lambda: peer.accepted, what="the client connected")
        took = interrupted_within(client, query)
    assert took < PROMPT_S, f"interrupt() took {took:.2f} s"
    assert isinstance(query.error, ConsulUnreachable)


@pytest.fixture
def hanging_dns(monkeypatch):
    """getaddrinfo of "hangs.example" hangs until the test ends; `asked` is set once it is."""
    released, asked = threading.Event(), threading.Event()
    real = socket.getaddrinfo

    def hanging(host, *args, **kwargs):
        if host == "hangs.example":
            asked.set()
            released.wait(10)
        return real("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    yield asked
    released.set()
    for thread in threading.enumerate():
        if thread.name.startswith("consul-dns"):
            thread.join(5)  # the lookups left behind end (the thread checks of other tests)


def test_interrupt_ends_a_dns_lookup_that_hangs_at_once(hanging_dns):
    client = BlockingClient("http://hangs.example:8500", SECRET, 30.0)
    query = Query(client)
    assert hanging_dns.wait(5)
    took = interrupted_within(client, query)
    assert took < PROMPT_S, f"interrupt() took {took:.2f} s"
    assert isinstance(query.error, ConsulUnreachable) and "interrupted" in str(query.error)


def test_the_connect_is_bounded_by_the_consul_timeout_not_the_wait(hanging_dns):
    """A lookup that never ends fails the query at the Consul timeout (0.3 s), not at the end
    of its 300 s wait: the watch sees an agent that does not answer within seconds."""
    client = BlockingClient("http://hangs.example:8500", SECRET, 0.3)
    began = time.monotonic()
    with pytest.raises(ConsulUnreachable, match="resolving hangs.example"):
        client.get(PATH, {"hash": "abc", "wait": "300s"}, 300.0)
    assert time.monotonic() - began < 2.0


def test_the_query_sends_the_token_in_its_header_only_and_returns_any_status():
    with StandInPeer(status=403, body="ACL not found") as peer:
        client = BlockingClient(peer.url, SECRET, 2.0)
        status, headers, body = client.get(PATH, {"hash": "abc", "wait": "5s"}, 5.0)
        client.interrupt()
    assert (status, body) == (403, b"ACL not found")
    assert headers["content-length"] == str(len(body))
    request = peer.requests[0]
    assert peer.token_seen == {True} and SECRET not in request.path
    assert request.path == PATH + "?hash=abc&wait=5s"
