"""What a test can make the fake agent do that a real agent does not let it: faults, a request
log, check statuses set by hand, catalog sync off, a session lapsing now, keeping its state
across a restart. The contract suite covers what it answers; this covers the controls."""

import threading
import time

import pytest

from asterisk_consul.consul import (Consul, ConsulPermissionDenied, ConsulServerError,
                                    ConsulUnreachable)
from asterisk_consul.consul.blocking import BlockingClient
from tests.contract_cases import services_of
from tests.fakeagent import FakeAgent

SERVICE = {"ID": "pbx-1", "Name": "Asterisk", "Port": 5060,
           "Checks": [{"CheckID": "http-1", "Name": "eid", "HTTP": "http://127.0.0.1:1/",
                       "Interval": "10s"}]}


@pytest.fixture
def fake():
    with FakeAgent() as agent:
        yield agent


@pytest.fixture
def consul(fake):
    client = Consul(fake.url, timeout_s=0.5)
    yield client
    client.close()


def test_refuse_closes_the_port_and_heal_opens_it_with_the_state_kept(fake, consul):
    consul.agent.service.register(SERVICE)
    fake.refuse()
    with pytest.raises(ConsulUnreachable, match="Connection refused"):
        consul.agent.self()
    fake.heal()
    assert "pbx-1" in services_of(consul)


def test_hang_takes_requests_and_never_answers_until_healed(fake, consul):
    fake.hang()
    began = time.monotonic()
    with pytest.raises(ConsulUnreachable, match="no answer"):
        consul.agent.self()
    assert time.monotonic() - began >= 0.5
    assert [r.path for r in fake.calls()] == ["/v1/agent/self"]  # it did arrive
    fake.heal()
    assert consul.agent.version() == "1.8.7"


def test_answer_500_fails_every_call_until_healed(fake, consul):
    fake.answer_500()
    with pytest.raises(ConsulServerError) as caught:
        consul.agent.service.register(SERVICE)
    assert caught.value.status == 500
    fake.heal()
    consul.agent.service.register(SERVICE)
    assert list(fake.services()) == ["pbx-1"]


def test_the_request_log_holds_method_path_query_and_token():
    with FakeAgent(acl=True) as fake:
        master = Consul(fake.url, token=fake.master_token)
        master.agent.service.register(dict(SERVICE, ID="pbx 1"))
        master.agent.service.maintenance("pbx 1", True, "a&b")
        with pytest.raises(ConsulPermissionDenied):
            Consul(fake.url).agent.self()
    _, first, second = fake.requests
    assert (first.method, first.path, first.query) == \
        ("PUT", "/v1/agent/service/maintenance/pbx 1", {"enable": "true", "reason": "a&b"})
    assert first.token == fake.master_token and second.token is None


def test_set_check_status_is_what_the_health_endpoint_then_says(fake, consul):
    consul.agent.service.register(SERVICE)
    assert consul.agent.health.service_by_id("pbx-1")[0] == "critical"
    fake.set_check_status("http-1", "warning", "HTTP GET: 429 Too Many Requests")
    status, checks = consul.agent.health.service_by_id("pbx-1")
    assert status == "warning" and checks[0]["Output"] == "HTTP GET: 429 Too Many Requests"
    with pytest.raises(ValueError):
        fake.set_check_status("http-1", "sideways")


def test_with_catalog_sync_off_the_catalog_keeps_its_old_view(fake, consul):
    consul.agent.service.register(SERVICE)
    fake.catalog_sync = False
    consul.agent.service.register(dict(SERVICE, Port=5070))
    assert consul.catalog.service_instance("Asterisk", "pbx-1")["ServicePort"] == 5060
    fake.catalog_sync = True
    assert consul.catalog.service_instance("Asterisk", "pbx-1")["ServicePort"] == 5070


def test_a_restart_keeps_the_state_only_when_asked(fake, consul):
    consul.agent.service.register(SERVICE)
    fake.restart(keep_state=True)
    assert list(services_of(consul)) == ["pbx-1"]
    fake.restart()
    assert services_of(consul) == {}


def test_a_blocking_query_in_flight_answers_when_the_agent_stops(fake, consul):
    consul.agent.service.register(SERVICE)
    known = consul.agent.service.get("pbx-1")["ContentHash"]
    blocking = lambda: [r for r in fake.calls("/v1/agent/service/pbx-1") if "hash" in r.query]
    threading.Thread(target=lambda: fake.wait_until(blocking) and fake.stop()).start()
    client = BlockingClient(fake.url, "", 1.0)
    status, headers, _ = client.get("/v1/agent/service/pbx-1", {"hash": known, "wait": "30s"},
                                    30.0)
    assert (status, headers["x-consul-contenthash"]) == (200, known)
    with pytest.raises(ConsulUnreachable):
        consul.agent.self()


def test_an_expired_session_takes_its_keys_with_it(fake, consul):
    session_id = consul.session.create("s", "30s")
    assert consul.kv.acquire("asterisk/pbx-1/role", b"edge", session_id)
    fake.expire_session(session_id)
    assert fake.kv_get("asterisk/pbx-1/role") is None
    assert consul.session.renew(session_id) is False


def test_wait_until_returns_once_a_change_makes_it_true(fake, consul):
    threading.Thread(target=lambda: consul.agent.service.register(SERVICE)).start()
    assert fake.wait_service("pbx-1") is True
