"""What answers on the agent's port is not always Consul: the client against stub peers on
127.0.0.1 that redirect, drip, send endless or malformed bodies (no Consul, no Asterisk), and
the registrar's parts that must neither leak the token nor spin on such answers."""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time

import pytest

from asterisk_consul.consul import (Agent, ConsulMalformed, ConsulUnreachable, TlsConfig,
                                    Transport, tls_context)
from asterisk_consul.consul.api import KV, Catalog
from asterisk_consul.consul.blocking import BlockingClient
from asterisk_consul.consul.deadline import MAX_BODY_BYTES
from integration_tests.testbed.peers import StandInPeer
from integration_tests.testbed.registrar_kit import settings_for, started
from integration_tests.testbed.runtime import wait_until


SECRET = "5ec7e7-70ce-4a11-b33f-token-never-shown"


def transport(url, timeout_s=2.0):
    return Transport(url, SECRET, timeout_s)


# -- redirects ---------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_its_target_never_sees_the_token(status):
    with StandInPeer(status=200, body="true") as elsewhere, \
            StandInPeer(mode="redirect", status=status) as peer:
        peer.location = elsewhere.url
        agent = Agent(transport(peer.url))
        with pytest.raises(ConsulMalformed) as caught:
            agent.service.register({"ID": "pbx-1", "Name": "Asterisk"})
        with pytest.raises(ConsulMalformed):
            Catalog(agent._transport).service_instance("Asterisk", "pbx-1")
        assert elsewhere.requests == []
        assert len(peer.requests) == 2 and peer.token_seen == {True}
    message = str(caught.value)
    assert f"redirect ({status} to {elsewhere.url}/v1/agent/service/register" in message
    assert "not followed" in message and SECRET not in message


def test_the_watch_does_not_follow_a_redirect_either():
    with StandInPeer(status=200, body="{}") as elsewhere, \
            StandInPeer(mode="redirect", location="") as peer:
        peer.location = elsewhere.url
        client = BlockingClient(peer.url, SECRET, 1.0)
        status, headers, _ = client.get("/v1/agent/service/pbx-1", {}, 0.0)
        client.interrupt()
    assert status == 307 and headers["location"].startswith(elsewhere.url)
    assert elsewhere.requests == []


# -- bounded answers ---------------------------------------------------------------------------

def test_a_dripping_answer_is_cut_at_the_total_deadline():
    """One byte every 0.1 s would take 100 s: the call ends at its 0.5 s budget (each byte
    would restart a socket timeout; the deadline counts the whole call)."""
    with StandInPeer(mode="drip", drip_s=0.1, drip_bytes=1000) as peer:
        began = time.monotonic()
        with pytest.raises(ConsulUnreachable) as caught:
            Agent(transport(peer.url, timeout_s=0.5)).self()
        took = time.monotonic() - began
        assert peer.written >= 2  # it did drip
    assert took < 3.0
    assert "no answer from Consul" in str(caught.value) and "within 0.5 s" in str(caught.value)


def test_an_endless_body_is_refused_past_the_limit_without_reading_it_all():
    with StandInPeer(mode="endless") as peer:
        with pytest.raises(ConsulMalformed) as caught:
            Agent(transport(peer.url, timeout_s=30.0)).check.list()
        assert peer.stream_ended.wait(10.0), "the peer saw the client hang up"
        written = peer.written
    assert f"longer than the {MAX_BODY_BYTES} bytes" in str(caught.value)
    # What the peer managed to push before we hung up: the limit plus socket buffers.
    assert written < MAX_BODY_BYTES + 16 * 1024 * 1024


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    body = " " * (MAX_BODY_BYTES + 1)
    with StandInPeer(status=200, body=body) as peer:
        with pytest.raises(ConsulMalformed) as caught:
            Agent(transport(peer.url)).self()
    assert f"{MAX_BODY_BYTES + 1} bytes, more than" in str(caught.value)


def test_the_blocking_query_is_cut_at_its_deadline_and_bounded_in_size():
    with StandInPeer(mode="drip", drip_s=0.1, drip_bytes=1000) as peer:
        client = BlockingClient(peer.url, SECRET, 0.5)
        began = time.monotonic()
        with pytest.raises(ConsulUnreachable) as caught:
            client.get("/v1/agent/service/pbx-1", {}, 0.0)
        assert time.monotonic() - began < 3.0
        assert "within 0.5 s" in str(caught.value)
    with StandInPeer(mode="endless") as peer:
        client = BlockingClient(peer.url, SECRET, 30.0)
        with pytest.raises(ConsulUnreachable) as caught:
            client.get("/v1/agent/service/pbx-1", {}, 0.0)
        assert "longer than" in str(caught.value)


# -- malformed answers -------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    '[{"Key": "k", "Value": "abc"}]',          # not base64
    '[{"Key": 5, "Value": null}]',             # a key that is no string
    '[{"Value": "YWJj"}]',                     # no key
    '["k"]',                                   # not an object
    '{"Key": "k"}',                            # not a list
    'not json',
])
def test_a_malformed_kv_answer_is_an_error_of_its_own(body):
    with StandInPeer(status=200, body=body) as peer:
        with pytest.raises(ConsulMalformed) as caught:
            KV(transport(peer.url)).get_tree("asterisk/pbx-1/")
    assert "GET /v1/kv/asterisk/pbx-1/" in str(caught.value)


@pytest.mark.parametrize("call,body", [
    (lambda a: a.self(), "[1, 2]"),
    (lambda a: a.check.list(), '"checks"'),
    (lambda a: a.version(), '{"Config": {"Version": 5}}'),
    (lambda a: a.health.service_by_id("pbx-1"), '{"Checks": "none"}'),
])
def test_answers_of_the_wrong_shape_are_malformed(call, body):
    with StandInPeer(status=200, body=body) as peer:
        with pytest.raises(ConsulMalformed):
            call(Agent(transport(peer.url)))


def test_malformed_kv_answers_neither_spin_the_worker_nor_hold_back_the_resync(
        fake_agent, make_registrar, caplog, wait_until):
    """KV reads answered with a value that is not base64: the KV part retries with backoff
    (a handful of reads, not thousands), says so once, and the service's resync goes on."""
    caplog.set_level(logging.DEBUG, logger="asterisk_consul")
    malformed = '[{"Key": "asterisk/pbx-1/role", "Value": "abc", "Session": ""}]'
    with StandInPeer(agent=fake_agent, override={"/v1/kv/": (200, malformed)}) as peer:
        settings = settings_for(peer.port, resync_interval="1s", kv_prefix="asterisk/${ID}",
                                kv_session_ttl="10s", kv=(("role", "edge"),))
        registrar = started(make_registrar(settings))
        wait_until(lambda: registrar.status(2.0).kv_error, what="the KV error in the status")
        began = time.monotonic()
        time.sleep(3.0)
        kv_reads = [r for r in peer.calls(began, "/v1/kv/") if r.method == "GET"]
        resyncs = peer.calls(began, "/v1/agent/service/pbx-1")
        status = registrar.status(2.0)
    assert len(kv_reads) <= 12, f"{len(kv_reads)} KV reads in 3 s: spinning"
    assert len(resyncs) >= 2, "the service's resync every 1 s goes on"
    assert status.registered and "not a KV entry as Consul sends it" in status.kv_error
    warned = [r.getMessage() for r in caplog.records
              if r.levelno >= logging.WARNING and "KV keys" in r.getMessage()]
    assert len(warned) == 1, warned


class _Link:
    """What the watch needs of the worker's link: somewhere to log."""

    def __init__(self):
        self.lines = []

    def log(self, level, message, *args):
        self.lines.append(message % args)


def test_an_agent_that_does_not_answer_is_asked_again_with_backoff_by_the_watch():
    """The watch's retries while nothing answers back off (0.2 s doubling to 2 s, jittered)
    instead of coming every 0.2 s; when the agent answers again it is seen within the cap."""
    from asterisk_consul.registrar.watch import AgentWatch

    wakes = []
    with StandInPeer(mode="drop") as peer:
        watch = AgentWatch(_Link(), lambda why, back: wakes.append((why, back)))
        watch.start(settings_for(peer.port))
        time.sleep(4.0)
        asked = len(peer.calls(0, "/v1/agent/service/pbx-1"))
        peer.mode, peer.status, peer.body = "answer", 404, ""
        began = time.monotonic()
        wait_until(lambda: wakes, timeout=5.0, what="the wake once the agent answers")
        back_after = time.monotonic() - began
        watch.close()
    assert 3 <= asked <= 9, f"{asked} attempts in 4 s (every 0.2 s would be 20)"
    assert wakes and wakes[0][1] is True and back_after < 2.5


# -- one TLS context per settings -------------------------------------------------------------

def test_the_tls_context_is_built_once_per_settings_and_again_when_a_file_changes(tmp_path):
    from integration_tests.testbed.consul import make_test_certs

    certs = make_test_certs(str(tmp_path))
    settings = TlsConfig(ca_file=str(certs["ca"]))
    first = tls_context(settings)
    assert tls_context(settings) is first
    assert tls_context(TlsConfig(ca_path=str(tmp_path))) is not first
    with open(certs["ca"], "a") as handle:
        handle.write("\n")
    assert tls_context(settings) is not first
    assert tls_context(TlsConfig(verify=False)).verify_mode == ssl.CERT_NONE


def test_an_encrypted_client_key_is_refused_without_a_prompt(tmp_path):
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=x", "-passout", "pass:pw"],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    with pytest.raises(ssl.SSLError):
        tls_context(TlsConfig(client_cert=str(cert), client_key=str(key)))


# -- a reload is all or nothing ----------------------------------------------------------------

def test_a_reload_whose_client_cannot_be_built_changes_nothing_and_is_tried_again(
        fake_agent, make_registrar, caplog, wait_until):
    """New settings whose client fails to build (here: a token the factory refuses, as a TLS
    file that cannot be loaded would): the running settings and registration stay whole, the
    error is said once, and the reload goes through once the client can be built."""
    import dataclasses

    from asterisk_consul.registrar import consul_client

    caplog.set_level(logging.DEBUG, logger="asterisk_consul")
    broken = {"on": True}

    def factory(settings):
        if settings.token == "new-token" and broken["on"]:
            raise ssl.SSLError("the client key is encrypted")
        return consul_client(settings)

    old = settings_for(fake_agent.http_port)
    registrar = started(make_registrar(old, consul_factory=factory))
    wait_until(lambda: registrar.status(2.0).registered, what="registered")
    new = dataclasses.replace(old, token="new-token", tags=("asterisk", "reloaded"))
    registrar.apply(new)
    wait_until(lambda: registrar.reconciler.pending_reload.settings == new, what="the reload pending")
    time.sleep(1.0)
    assert registrar.link.settings == old
    assert fake_agent.get("/v1/agent/service/pbx-1").json()["Tags"] == ["asterisk", "edge"]
    errors = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()
              and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "the running ones stay in use" in errors[0]
    broken["on"] = False
    wait_until(lambda: fake_agent.get("/v1/agent/service/pbx-1").json()["Tags"]
               == ["asterisk", "reloaded"], timeout=40.0, what="the reload applied")
    assert registrar.link.settings == new and registrar.reconciler.pending_reload.settings is None


def test_wakes_from_the_watch_coalesce_into_one_queued_command(make_registrar, refused_port):
    """A watch that sees change after change while the worker is busy queues one wake-up,
    carrying "the agent is back" if any of them said so: the queue cannot grow."""
    registrar = make_registrar(settings_for(refused_port))  # not started: nothing takes them
    for i in range(1000):
        registrar._wake("the agent's view of the service changed", agent_back=(i == 500))
    assert registrar._commands.qsize() == 1
    assert registrar._wake_pending == ("the agent's view of the service changed", True)


def test_an_event_too_large_for_consul_is_not_sent_and_said_once(fake_agent, make_registrar,
                                                                  caplog, wait_until):
    caplog.set_level(logging.DEBUG, logger="asterisk_consul")
    with StandInPeer(agent=fake_agent) as peer:
        settings = settings_for(peer.port, service_id="pbx-" + "x" * 300, events=True)
        registrar = started(make_registrar(settings))
        wait_until(lambda: registrar.status(2.0).registered, what="registered")
        registrar.set_maintenance(True, "test", 2.0)
        registrar.set_maintenance(False, "", 2.0)
        fired = peer.calls(0, "/v1/event/fire/")
    assert fired == []
    warned = [r.getMessage() for r in caplog.records
              if r.levelno >= logging.WARNING and "not fired" in r.getMessage()]
    assert len(warned) == 2, warned  # asterisk-register, then asterisk-maintenance (once)
    assert "512-byte limit" in warned[0]


def test_a_host_name_is_resolved_within_the_deadline_and_kept_for_the_request(monkeypatch):
    """The lookup runs within the call's budget (a resolver that hangs costs the budget, not
    the resolver's minutes); the request still names the host it was configured with."""
    import socket as socket_module

    with StandInPeer(status=200, body="{}") as peer:
        Agent(transport(f"http://localhost:{peer.port}")).self()
        assert peer.requests[0].headers["Host"] == f"localhost:{peer.port}"
        real = socket_module.getaddrinfo

        def slow(host, *args, **kwargs):
            if host == "slow.example":
                time.sleep(3.0)
            return real("127.0.0.1", *args, **kwargs)

        monkeypatch.setattr(socket_module, "getaddrinfo", slow)
        began = time.monotonic()
        with pytest.raises(ConsulUnreachable) as caught:
            Agent(transport(f"http://slow.example:{peer.port}", timeout_s=0.5)).self()
        assert time.monotonic() - began < 2.0
        # Said as the lookup's timeout or the call's, whichever fired first.
        assert re.search(r"resolving slow\.example took longer than|http://slow\.example:\d+ "
                         r"within 0\.5 s", str(caught.value)), str(caught.value)
        client = BlockingClient(f"http://slow.example:{peer.port}", SECRET, 0.5)
        began = time.monotonic()
        with pytest.raises(ConsulUnreachable):
            client.get("/v1/agent/service/pbx-1", {}, 0.0)
        assert time.monotonic() - began < 2.0
    # The lookups left behind end (the thread check after the test).
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("consul-dns")],
               timeout=10.0, what="the abandoned lookups ended")
