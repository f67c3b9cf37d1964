"""The Consul client against the fake agent (tests/fakeagent, held to Consul 1.8.7 by the
contract suite) and against deliberately broken peers. Its TLS against a real agent is in
integration_tests/test_client_tls_to_consul.py."""

from __future__ import annotations

import base64
import time

import pytest

from asterisk_consul.consul import (Agent, ConsulError, ConsulNotFound, ConsulPermissionDenied,
                                    ConsulRequestError, ConsulServerError, ConsulUnreachable,
                                    Transport)
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


# -- an agent ----------------------------------------------------------------------------------

def test_agent_self_reports_version(fake_agent):
    _, agent = client(fake_agent.url)
    assert agent.version() == "1.8.7"
    assert "Member" in agent.self()


def test_register_get_deregister(fake_agent):
    _, agent = client(fake_agent.url)
    agent.service.register(service())
    got = agent.service.get("svc-1")
    assert got["Service"] == "Asterisk"
    assert got["Tags"] == ["a", "b"]
    assert (got["Address"], got["Port"]) == ("127.0.0.1", 5060)
    assert got["Meta"] == {"eid": "02:42:ac:11:00:02"}
    assert "svc-1" in fake_agent.services()

    agent.service.deregister("svc-1")
    assert agent.service.get("svc-1") is None
    assert "svc-1" not in fake_agent.services()


def test_check_register_list_deregister(fake_agent):
    _, agent = client(fake_agent.url)
    agent.service.register(service())
    agent.check.register({"ID": "ttl-1", "Name": "ttl", "TTL": "30s", "ServiceID": "svc-1"})
    assert agent.check.list()["ttl-1"]["ServiceID"] == "svc-1"
    agent.check.deregister("ttl-1")
    assert "ttl-1" not in agent.check.list()


@pytest.mark.parametrize("reason", ["upgrade to 22.1 & reboot", "héllo/wörld?x=1#frag", "a+b%00"])
def test_maintenance_reason_arrives_verbatim(fake_agent, reason):
    _, agent = client(fake_agent.url)
    agent.service.register(service())
    agent.service.maintenance("svc-1", True, reason)
    check = fake_agent.checks()["_service_maintenance:svc-1"]
    assert check["Status"] == "critical"
    assert check["Notes"] == reason  # no stray %00, no double encoding

    agent.service.maintenance("svc-1", False)
    assert "_service_maintenance:svc-1" not in fake_agent.checks()


def test_maintenance_of_unknown_service_is_not_found(fake_agent):
    _, agent = client(fake_agent.url)
    with pytest.raises(ConsulNotFound) as caught:
        agent.service.maintenance("nope", True, "x")
    assert caught.value.status == 404


def test_health_by_id_uses_status_codes(fake_agent):
    _, agent = client(fake_agent.url)
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


def test_service_id_with_odd_characters_round_trips(fake_agent):
    _, agent = client(fake_agent.url)
    agent.service.register(service("asterisk pbx#1"))
    assert agent.service.get("asterisk pbx#1")["ID"] == "asterisk pbx#1"
    agent.service.deregister("asterisk pbx#1")
    assert agent.service.get("asterisk pbx#1") is None


def test_facade_builds_from_settings(fake_agent):
    settings = Settings(host="127.0.0.1", port=fake_agent.http_port)
    consul = consul_client(settings)
    try:
        assert consul.url == fake_agent.url
        assert consul.agent.version() == "1.8.7"
    finally:
        consul.close()


def test_bad_request_is_a_request_error(fake_agent):
    _, agent = client(fake_agent.url)
    with pytest.raises(ConsulRequestError) as caught:
        agent.service.register(service(Meta={"consul-x": "1"}))
    assert caught.value.status == 400
    assert "reserved" in str(caught.value)


# -- ACL ---------------------------------------------------------------------------------------

def test_acl_without_or_with_wrong_token_is_permission_denied(fake_factory):
    agent_proc = fake_factory(acl=True)
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


def test_node_id_names_the_agent(fake_agent, fake_factory):
    _, agent = client(fake_agent.url)
    _, same = client("http://localhost:%d" % fake_agent.http_port)
    other = fake_factory()
    _, another = client(other.url)
    assert agent.node_id() and agent.node_id() == same.node_id()
    assert another.node_id() != agent.node_id()


def version_with(settings):
    consul = consul_client(settings)
    try:
        return consul.agent.version()
    finally:
        consul.close()


def test_tls_options_are_ignored_over_plain_http(fake_agent, tmp_path):
    other = make_test_certs(tmp_path / "other")
    settings = Settings(host="127.0.0.1", port=fake_agent.http_port, ca_file=str(other["ca"]),
                        tls_server_name="nowhere.example")
    assert version_with(settings) == "1.8.7"


# -- user events -------------------------------------------------------------------------------

def test_an_event_fired_reaches_the_agent_with_its_payload(fake_agent):
    consul = consul_client(Settings(host="127.0.0.1", port=fake_agent.http_port))
    try:
        answer = consul.event.fire("asterisk-test", b'{"a":1}')
        assert answer["Name"] == "asterisk-test" and answer["ID"]
        listed = fake_agent.get("/v1/event/list", params={"name": "asterisk-test"}).json()
        assert [e["ID"] for e in listed] == [answer["ID"]]
        assert base64.b64decode(listed[0]["Payload"]) == b'{"a":1}'
        assert fake_agent.get("/v1/event/list", params={"name": "nothing-of-that-name"}).json() == []
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
