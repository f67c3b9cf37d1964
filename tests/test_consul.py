"""The Consul client against a real agent, and against deliberately broken peers."""

from __future__ import annotations

import base64
import time

import pytest

from asterisk_consul.consul import (Agent, Consul, ConsulError, ConsulNotFound,
                                    ConsulPermissionDenied, ConsulRequestError,
                                    ConsulServerError, ConsulUnreachable, TlsConfig, Transport)
from asterisk_consul.registrar import consul_client
from asterisk_consul.settings import Settings
from integration_tests.testbed.consul import make_test_certs
from integration_tests.testbed.peers import BlackholePeer, RefusingPeer, StandInPeer

SECRET = "5ec7e7-70ce-4a11-b33f-token-never-shown"


def client(url, token="", timeout_s=2.0):
    transport = Transport(url, token, timeout_s)
    return transport, Agent(transport)


def service(service_id="svc-1", **extra):
    body = {"ID": service_id, "Name": "Asterisk", "Tags": ["a", "b"], "Address": "127.0.0.1",
            "Port": 5060, "Meta": {"eid": "02:42:ac:11:00:02"}}
    body.update(extra)
    return body


# -- a real agent ------------------------------------------------------------------------------

def test_agent_self_reports_version(consul_agent):
    _, agent = client(consul_agent.url)
    assert agent.version() == "1.8.7"
    assert "Member" in agent.self()


def test_register_get_deregister(consul_agent):
    _, agent = client(consul_agent.url)
    agent.service.register(service())
    got = agent.service.get("svc-1")
    assert got["Service"] == "Asterisk"
    assert got["Tags"] == ["a", "b"]
    assert (got["Address"], got["Port"]) == ("127.0.0.1", 5060)
    assert got["Meta"] == {"eid": "02:42:ac:11:00:02"}
    assert "svc-1" in consul_agent.services()

    agent.service.deregister("svc-1")
    assert agent.service.get("svc-1") is None
    assert "svc-1" not in consul_agent.services()


def test_check_register_list_deregister(consul_agent):
    _, agent = client(consul_agent.url)
    agent.service.register(service())
    agent.check.register({"ID": "ttl-1", "Name": "ttl", "TTL": "30s", "ServiceID": "svc-1"})
    assert agent.check.list()["ttl-1"]["ServiceID"] == "svc-1"
    agent.check.deregister("ttl-1")
    assert "ttl-1" not in agent.check.list()


@pytest.mark.parametrize("reason", ["upgrade to 22.1 & reboot", "héllo/wörld?x=1#frag", "a+b%00"])
def test_maintenance_reason_arrives_verbatim(consul_agent, reason):
    _, agent = client(consul_agent.url)
    agent.service.register(service())
    agent.service.maintenance("svc-1", True, reason)
    check = consul_agent.checks()["_service_maintenance:svc-1"]
    assert check["Status"] == "critical"
    assert check["Notes"] == reason  # no stray %00, no double encoding

    agent.service.maintenance("svc-1", False)
    assert "_service_maintenance:svc-1" not in consul_agent.checks()


def test_maintenance_of_unknown_service_is_not_found(consul_agent):
    _, agent = client(consul_agent.url)
    with pytest.raises(ConsulNotFound) as caught:
        agent.service.maintenance("nope", True, "x")
    assert caught.value.status == 404


def test_health_by_id_uses_status_codes(consul_agent):
    _, agent = client(consul_agent.url)
    assert agent.health.service_by_id("svc-1") == ("unknown", [])
    agent.service.register(service())
    assert agent.health.service_by_id("svc-1") == ("passing", [])
    agent.check.register({"ID": "ttl-1", "Name": "ttl", "TTL": "30s", "ServiceID": "svc-1",
                          "Status": "warning"})
    status, checks = agent.health.service_by_id("svc-1")
    assert status == "warning" and checks[0]["CheckID"] == "ttl-1"
    agent.service.maintenance("svc-1", True, "r")
    status, checks = agent.health.service_by_id("svc-1")
    assert status == "critical"
    assert "_service_maintenance:svc-1" in {c["CheckID"] for c in checks}


def test_service_id_with_odd_characters_round_trips(consul_agent):
    _, agent = client(consul_agent.url)
    agent.service.register(service("asterisk pbx#1"))
    assert agent.service.get("asterisk pbx#1")["ID"] == "asterisk pbx#1"
    agent.service.deregister("asterisk pbx#1")
    assert agent.service.get("asterisk pbx#1") is None


def test_facade_builds_from_settings(consul_agent):
    settings = Settings(host="127.0.0.1", port=consul_agent.http_port)
    consul = consul_client(settings)
    try:
        assert consul.url == consul_agent.url
        assert consul.agent.version() == "1.8.7"
    finally:
        consul.close()


def test_bad_request_is_a_request_error(consul_agent):
    _, agent = client(consul_agent.url)
    with pytest.raises(ConsulRequestError) as caught:
        agent.service.register(service(Meta={"consul-x": "1"}))
    assert caught.value.status == 400
    assert "reserved" in str(caught.value)


# -- ACL ---------------------------------------------------------------------------------------

def test_acl_without_or_with_wrong_token_is_permission_denied(consul_factory):
    agent_proc = consul_factory(acl=True)
    for token in ("", SECRET):
        _, agent = client(agent_proc.url, token)
        with pytest.raises(ConsulPermissionDenied) as caught:
            agent.service.register(service())
        assert caught.value.status == 403
        assert "permission denied" in str(caught.value)
        assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)

    _, agent = client(agent_proc.url, agent_proc.master_token)
    agent.service.register(service())
    assert "svc-1" in agent_proc.services()


# -- broken peers ------------------------------------------------------------------------------

def test_refused_is_unreachable_at_once():
    with RefusingPeer() as peer:
        _, agent = client(peer.url, SECRET)
        started = time.monotonic()
        with pytest.raises(ConsulUnreachable) as caught:
            agent.service.register(service())
        assert time.monotonic() - started < 1.0
    assert caught.value.status is None
    assert "refused" in str(caught.value).lower()
    assert SECRET not in str(caught.value)


def test_blackhole_is_unreachable_within_the_timeout():
    with BlackholePeer() as peer:
        _, agent = client(peer.url, SECRET, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(ConsulUnreachable) as caught:
            agent.service.register(service())
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 0.8
    assert "no answer" in str(caught.value)


def test_dns_failure_is_unreachable():
    _, agent = client("http://no-such-host.invalid:8500", SECRET)
    with pytest.raises(ConsulUnreachable):
        agent.self()


@pytest.mark.parametrize("status,error", [(500, ConsulServerError), (503, ConsulServerError),
                                          (400, ConsulRequestError), (404, ConsulNotFound),
                                          (403, ConsulPermissionDenied)])
def test_status_codes_map_to_errors(status, error):
    with StandInPeer(status=status, body=f"no: {SECRET}") as peer:
        _, agent = client(peer.url, SECRET)
        with pytest.raises(error) as caught:
            agent.service.deregister("svc-1")
    assert caught.value.status == status
    assert isinstance(caught.value, ConsulError)
    assert SECRET not in str(caught.value)  # even when the peer echoes the token back
    assert "<redacted>" in str(caught.value)


def test_token_travels_only_in_the_header():
    with StandInPeer(status=200, body="true") as peer:
        transport, agent = client(peer.url, SECRET)
        agent.service.maintenance("svc-1", True, "why not")
        method, path, headers = peer.requests[0][1:4]
    assert method == "PUT"
    assert headers.get("X-Consul-Token") == SECRET
    assert SECRET not in path
    assert path == "/v1/agent/service/maintenance/svc-1?enable=true&reason=why+not"
    assert SECRET not in repr(transport)


def test_non_json_answer_is_an_error():
    with StandInPeer(status=200, body="<html>hello</html>",
                   headers={"Content-Type": "text/html"}) as peer:
        _, agent = client(peer.url)
        with pytest.raises(ConsulError):
            agent.self()


# -- TLS ---------------------------------------------------------------------------------------

def test_https_with_the_agent_ca(consul_factory):
    agent_proc = consul_factory(tls=True)
    transport = Transport(agent_proc.https_url, "", 2.0, tls=TlsConfig(ca_file=agent_proc.ca_file))
    assert Agent(transport).version() == "1.8.7"

    untrusting = Agent(Transport(agent_proc.https_url, SECRET, 2.0))  # system CAs only
    with pytest.raises(ConsulUnreachable) as caught:
        untrusting.self()
    assert "TLS" in str(caught.value) and SECRET not in str(caught.value)


def test_https_facade_from_settings(consul_factory):
    agent_proc = consul_factory(tls=True)
    consul = Consul(agent_proc.https_url, tls=TlsConfig(
        ca_file=agent_proc.ca_file, client_cert=agent_proc.client_cert,
        client_key=agent_proc.client_key))
    try:
        assert consul.agent.version() == "1.8.7"
    finally:
        consul.close()


def test_node_id_names_the_agent(consul_agent, consul_factory):
    _, agent = client(consul_agent.url)
    _, same = client("http://localhost:%d" % consul_agent.http_port)
    other = consul_factory()
    _, another = client(other.url)
    assert agent.node_id() and agent.node_id() == same.node_id()
    assert another.node_id() != agent.node_id()


# -- TLS from the settings ------------------------------------------------------------------

def tls_settings(agent_proc, **overrides):
    base = dict(scheme="https", host="127.0.0.1", port=agent_proc.https_port,
                ca_file=agent_proc.ca_file)
    base.update(overrides)
    return Settings(**base)


def version_with(settings):
    consul = consul_client(settings)
    try:
        return consul.agent.version()
    finally:
        consul.close()


def test_tls_settings_verify_the_agent_with_the_ca_file(consul_factory):
    agent_proc = consul_factory(tls=True)
    assert version_with(tls_settings(agent_proc)) == "1.8.7"


def test_tls_wrong_ca_fails_clearly_and_sends_nothing(consul_factory, tmp_path):
    agent_proc = consul_factory(tls=True)
    other = make_test_certs(tmp_path / "other")
    settings = tls_settings(agent_proc, ca_file=str(other["ca"]), token=SECRET)
    with pytest.raises(ConsulUnreachable) as caught:
        consul_client(settings).agent.service.register(service())
    assert "svc-1" not in agent_proc.services()  # nothing reached the agent, by any port
    message = str(caught.value)
    assert message.startswith("PUT /v1/agent/service/register: TLS failure talking to https://127.0.0.1:")
    assert "certificate verify failed" in message and "ca_file" in message
    assert SECRET not in message


def test_tls_verify_no_accepts_an_unknown_ca(consul_factory, tmp_path, recwarn):
    agent_proc = consul_factory(tls=True)
    other = make_test_certs(tmp_path / "other")
    settings = tls_settings(agent_proc, ca_file=str(other["ca"]), tls_verify=False)
    assert version_with(settings) == "1.8.7"
    assert not [w for w in recwarn if "Unverified HTTPS" in str(w.message)]


def test_tls_server_name_checks_that_name_while_connecting_to_the_address(consul_factory):
    agent_proc = consul_factory(tls=True)
    # The agent's certificate names 127.0.0.1, localhost and server.dc1.consul.
    assert version_with(tls_settings(agent_proc, tls_server_name="server.dc1.consul")) == "1.8.7"
    with pytest.raises(ConsulUnreachable) as caught:
        version_with(tls_settings(agent_proc, tls_server_name="other.dc1.consul"))
    assert "other.dc1.consul" in str(caught.value) or "mismatch" in str(caught.value)
    assert "tls_server_name" in str(caught.value)


def test_tls_ca_path_of_plain_pem_files(consul_factory, tmp_path):
    agent_proc = consul_factory(tls=True)
    cas = tmp_path / "cas"
    cas.mkdir()
    other = make_test_certs(tmp_path / "other")
    (cas / "unrelated.pem").write_bytes(other["ca"].read_bytes())
    (cas / "ours.crt").write_bytes(open(agent_proc.ca_file, "rb").read())  # no hash links
    (cas / "README").write_text("not a certificate\n")
    settings = tls_settings(agent_proc, ca_file="", ca_path=str(cas))
    assert version_with(settings) == "1.8.7"

    (cas / "ours.crt").unlink()
    with pytest.raises(ConsulUnreachable, match="certificate verify failed"):
        version_with(settings)


def test_tls_client_certificate_required_by_the_agent(consul_factory):
    agent_proc = consul_factory(tls=True, tls_verify_incoming=True)
    with_cert = tls_settings(agent_proc, client_cert=agent_proc.client_cert,
                             client_key=agent_proc.client_key)
    assert version_with(with_cert) == "1.8.7"
    with pytest.raises(ConsulUnreachable) as caught:
        version_with(tls_settings(agent_proc))
    assert "TLS failure" in str(caught.value) or "cannot reach" in str(caught.value)


def test_tls_options_are_ignored_over_plain_http(consul_agent, tmp_path):
    other = make_test_certs(tmp_path / "other")
    settings = Settings(host="127.0.0.1", port=consul_agent.http_port, ca_file=str(other["ca"]),
                        tls_server_name="nowhere.example")
    assert version_with(settings) == "1.8.7"


# -- user events -------------------------------------------------------------------------------

def test_an_event_fired_reaches_the_agent_with_its_payload(consul_agent):
    consul = consul_client(Settings(host="127.0.0.1", port=consul_agent.http_port))
    try:
        answer = consul.event.fire("asterisk-test", b'{"a":1}')
        assert answer["Name"] == "asterisk-test" and answer["ID"]
        listed = consul_agent.events("asterisk-test")
        assert [e["ID"] for e in listed] == [answer["ID"]]
        assert base64.b64decode(listed[0]["Payload"]) == b'{"a":1}'
        assert consul_agent.events("nothing-of-that-name") == []
    finally:
        consul.close()


@pytest.mark.parametrize("reason,hint", [
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer",
     "ca_file/ca_path"),
    ("hostname 'x.example' doesn't match either of 'localhost'", "tls_server_name"),
    ("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate", "client_cert/client_key"),
    ("EOF occurred in violation of protocol (_ssl.c:2393)", "client_cert/client_key"),
    ("[SSL: WRONG_VERSION_NUMBER] wrong version number", "8501"),
    ("Connection refused", None)])
def test_tls_failures_say_what_to_check(reason, hint):
    from asterisk_consul.consul.transport import _tls_hint

    assert (hint in _tls_hint(reason)) if hint else _tls_hint(reason) == ""
