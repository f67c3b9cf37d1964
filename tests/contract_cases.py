"""The contract: what a Consul 1.8.7 agent answers to the calls the module makes, case by case.

Each case is a plain function `case(agent, consul)`: `agent` is an agent handle (.url,
.http_port, .master_token, services(), checks(), stop()/start(), request/get/put), `consul`
the module's own client (asterisk_consul.consul.Consul) for it, with the master token when
ACLs are on. tests/test_fake_agent_contract.py runs every case against tests/fakeagent,
integration_tests/test_fake_agent_contract_real.py the same ones against a real 1.8.7 agent:
a case failing on either side is a difference between the fake and Consul.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from typing import Callable, List

import pytest

from asterisk_consul.consul import (Consul, ConsulNotFound, ConsulPermissionDenied,
                                    ConsulRequestError, ConsulServerError, ConsulUnreachable)
from asterisk_consul.consul.blocking import BlockingClient
from integration_tests.testbed.runtime import wait_until

CASES: List[Callable] = []


def case(acl: bool = False):
    """Add the function to CASES; acl=True runs it on an agent with ACLs on (default deny)."""
    def add(function):
        function.acl = acl
        CASES.append(function)
        return function
    return add


SERVICE = {"ID": "pbx-1", "Name": "Asterisk", "Tags": ["asterisk", "edge"],
           "Address": "127.0.0.1", "Port": 5060, "Meta": {"eid": "02:42:ac:11:00:02"}}
TTL_CHECK = {"CheckID": "ttl-1", "Name": "ttl", "TTL": "30s", "Status": "passing",
             "Notes": "reported by the module"}
# Probes a port nobody listens on: critical from the start, and after every poll.
HTTP_CHECK = {"CheckID": "http-1", "Name": "eid", "HTTP": "http://127.0.0.1:1/check",
              "Method": "GET", "Interval": "10s", "Timeout": "2s",
              "DeregisterCriticalServiceAfter": "5m"}
MAINT = "_service_maintenance:pbx-1"
NO_SESSION = "00000000-0000-0000-0000-000000000000"


def service(**extra):
    return dict(SERVICE, **extra)


def refused(call, error, status, text):
    """call() raises `error` with `status`, and Consul's text is in its message."""
    with pytest.raises(error) as caught:
        call()
    assert caught.value.status == status, caught.value
    assert text in str(caught.value), str(caught.value)
    return caught.value


def services_of(consul):
    """GET /v1/agent/services as this client sees it (the module itself never lists)."""
    return consul.transport.get("/v1/agent/services").json()


def anonymous(agent):
    return Consul(agent.url, token="")


def after(delay_s, action):
    """Run action on another thread in delay_s: a change while a blocking query waits."""
    timer = threading.Timer(delay_s, action)
    timer.start()
    return timer


# -- agent/self ----------------------------------------------------------------------------

@case()
def agent_self_names_the_version_the_node_id_and_the_node_name(agent, consul):
    assert consul.agent.version() == "1.8.7"
    assert uuid.UUID(consul.agent.node_id())
    assert consul.agent.node_name()
    assert {"Config", "Member"} <= set(consul.agent.self())


# -- services ------------------------------------------------------------------------------

@case()
def a_registered_service_reads_back_with_consuls_defaults(agent, consul):
    consul.agent.service.register(service())
    got = consul.agent.service.get("pbx-1")
    assert (got["ID"], got["Service"], got["Tags"]) == ("pbx-1", "Asterisk", ["asterisk", "edge"])
    assert (got["Address"], got["Port"], got["Meta"]) == ("127.0.0.1", 5060, SERVICE["Meta"])
    assert got["Weights"] == {"Passing": 1, "Warning": 1} and got["EnableTagOverride"] is False
    assert got["TaggedAddresses"]["lan_ipv4"] == {"Address": "127.0.0.1", "Port": 5060}
    assert isinstance(got["ContentHash"], str) and got["ContentHash"]
    listed = services_of(consul)
    assert listed["pbx-1"] == {k: v for k, v in got.items() if k != "ContentHash"}
    assert agent.services() == listed


@case()
def tagged_addresses_read_back_beside_the_agents_own(agent, consul):
    sip = {"sip_udp": {"Address": "127.0.0.1", "Port": 5060},
           "sip_tls": {"Address": "127.0.0.1", "Port": 5061}}
    consul.agent.service.register(service(TaggedAddresses=sip))
    got = consul.agent.service.get("pbx-1")["TaggedAddresses"]
    assert {k: got[k] for k in sip} == sip
    assert got["lan_ipv4"] == {"Address": "127.0.0.1", "Port": 5060}


@case()
def a_service_id_defaults_to_its_name(agent, consul):
    consul.agent.service.register({"Name": "Asterisk"})
    assert consul.agent.service.get("Asterisk")["ID"] == "Asterisk"


@case()
def odd_service_ids_round_trip(agent, consul):
    for service_id in ("asterisk pbx#1", "pbx/1?x=%41"):
        consul.agent.service.register(service(ID=service_id))
        assert consul.agent.service.get(service_id)["ID"] == service_id
        consul.agent.service.deregister(service_id)
        assert consul.agent.service.get(service_id) is None


@case()
def an_unknown_service_reads_as_none_from_a_404(agent, consul):
    assert consul.agent.service.get("nope") is None
    answer = agent.get("/v1/agent/service/nope")
    assert (answer.status_code, answer.text) == (404, "unknown service ID: nope")


@case()
def a_registration_without_a_name_is_refused(agent, consul):
    refused(lambda: consul.agent.service.register({"ID": "pbx-1"}), ConsulRequestError, 400,
            "Missing service name")


@case()
def a_field_consul_does_not_know_is_refused(agent, consul):
    refused(lambda: consul.agent.service.register(service(Bogus=1)), ConsulRequestError, 400,
            'Request decode failed: json: unknown field "Bogus"')


@case()
def a_check_field_1_8_does_not_know_tlsservername_is_refused(agent, consul):
    check = dict(HTTP_CHECK, HTTP="https://127.0.0.1:1/check", TLSServerName="pbx.example")
    refused(lambda: consul.agent.service.register(service(Checks=[check])), ConsulRequestError,
            400, 'json: unknown field "TLSServerName"')
    assert consul.agent.service.get("pbx-1") is None


@case()
def reserved_or_malformed_meta_keys_are_refused(agent, consul):
    refused(lambda: consul.agent.service.register(service(Meta={"consul-x": "1"})),
            ConsulRequestError, 400, "Key prefix 'consul-' is reserved for internal use")
    refused(lambda: consul.agent.service.register(service(Meta={"a.b": "1"})),
            ConsulRequestError, 400, "Invalid Service Meta: Couldn't load metadata pair "
                                     "('a.b', '1'): Key contains invalid characters")


@case()
def a_port_sent_as_a_string_is_refused(agent, consul):
    refused(lambda: consul.agent.service.register(service(Port="5060")), ConsulRequestError,
            400, "cannot unmarshal string into Go struct field .Port of type int")


@case()
def deregistering_an_unknown_service_succeeds_without_acls(agent, consul):
    consul.agent.service.deregister("nope")
    consul.agent.check.deregister("nope")


@case()
def deregistering_takes_the_service_with_its_checks_but_not_the_nodes(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK, HTTP_CHECK]))
    consul.agent.service.maintenance("pbx-1", True, "upgrade")
    consul.agent.check.register({"ID": "node-1", "Name": "node", "TTL": "30s"})
    consul.agent.service.deregister("pbx-1")
    assert consul.agent.service.get("pbx-1") is None
    assert set(agent.checks()) == {"node-1"}


# -- checks --------------------------------------------------------------------------------

@case()
def embedded_checks_start_with_their_status_or_critical(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK, HTTP_CHECK]))
    checks = consul.agent.check.list()
    ttl, http = checks["ttl-1"], checks["http-1"]
    assert (ttl["Status"], ttl["Type"], ttl["Name"], ttl["Notes"]) == \
        ("passing", "ttl", "ttl", "reported by the module")
    assert (http["Status"], http["Type"], http["Name"], http["Output"]) == \
        ("critical", "http", "eid", "")
    for check in (ttl, http):
        assert (check["ServiceID"], check["ServiceName"]) == ("pbx-1", "Asterisk")
        assert check["Definition"] == {}  # 1.8.7 reports no definition
        assert check["Node"] == consul.agent.node_name()


@case()
def checks_without_ids_get_consuls_ids_and_names(agent, consul):
    consul.agent.service.register(service(Checks=[{"TTL": "10s"}, {"TTL": "10s"}]))
    consul.agent.service.register(service(ID="pbx-2", Check={"TTL": "10s"}))
    checks = consul.agent.check.list()
    assert set(checks) == {"service:pbx-1:1", "service:pbx-1:2", "service:pbx-2"}
    assert {c["Name"] for c in checks.values()} == {"Service 'Asterisk' check"}


@case()
def a_check_registered_again_keeps_its_status_and_output(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK]))
    consul.agent.check.update("ttl-1", "warning", "starting")
    consul.agent.service.register(service(Checks=[TTL_CHECK]), replace_existing_checks=False)
    consul.agent.service.register(service(Checks=[dict(TTL_CHECK, Status="critical")]))
    consul.agent.check.register({"ID": "ttl-1", "Name": "ttl", "TTL": "30s",
                                 "ServiceID": "pbx-1", "Status": "passing"})
    check = consul.agent.check.list()["ttl-1"]
    assert (check["Status"], check["Output"]) == ("warning", "starting")


@case()
def replace_existing_checks_drops_the_others_and_maintenance(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK, HTTP_CHECK]))
    consul.agent.service.maintenance("pbx-1", True, "upgrade")
    consul.agent.service.register(service(Checks=[TTL_CHECK]), replace_existing_checks=False)
    assert set(consul.agent.check.list()) == {"ttl-1", "http-1", MAINT}
    consul.agent.service.register(service(Checks=[TTL_CHECK]), replace_existing_checks=True)
    assert set(consul.agent.check.list()) == {"ttl-1"}


@case()
def check_register_takes_id_not_checkid(agent, consul):
    consul.agent.service.register(service())
    refused(lambda: consul.agent.check.register(dict(TTL_CHECK, ServiceID="pbx-1")),
            ConsulRequestError, 400, 'json: unknown field "CheckID"')
    consul.agent.check.register({"ID": "c-1", "Name": "c", "TTL": "10s", "ServiceID": "pbx-1",
                                 "Status": "warning"})
    check = consul.agent.check.list()["c-1"]
    assert (check["ServiceID"], check["Status"], check["Type"]) == ("pbx-1", "warning", "ttl")


@case()
def check_register_refuses_what_1_8_7_refuses(agent, consul):
    register = consul.agent.check.register
    refused(lambda: register({"ID": "c", "TTL": "10s"}), ConsulRequestError, 400,
            "Missing check name")
    refused(lambda: register({"ID": "c", "Name": "c", "TTL": "10s", "Status": "bogus"}),
            ConsulRequestError, 400, "Bad check status")
    refused(lambda: register({"ID": "c", "Name": "c", "TTL": "10s", "ServiceID": "nope"}),
            ConsulServerError, 500, 'ServiceID "nope" does not exist')


@case()
def a_check_needs_a_ttl_or_an_interval(agent, consul):
    def with_check(check):
        return lambda: consul.agent.service.register(service(Checks=[check]))

    refused(with_check({"CheckID": "x", "Name": "x"}), ConsulRequestError, 400,
            "Invalid check: TTL must be > 0 for TTL checks")
    refused(with_check({"CheckID": "x", "Name": "x", "HTTP": "http://127.0.0.1:1/"}),
            ConsulRequestError, 400,
            "Invalid check: Interval must be > 0 for Script, HTTP, or TCP checks")
    refused(with_check(dict(TTL_CHECK, Status="bogus")), ConsulRequestError, 400,
            "Status for checks must 'passing', 'warning', 'critical'")


@case()
def a_deregistered_check_is_gone(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK, HTTP_CHECK]))
    consul.agent.check.deregister("http-1")
    assert set(consul.agent.check.list()) == {"ttl-1"}


@case()
def a_ttl_update_sets_status_and_output(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK]))
    consul.agent.check.update("ttl-1", "warning", "busy")
    check = agent.checks()["ttl-1"]
    assert (check["Status"], check["Output"]) == ("warning", "busy")


@case()
def a_ttl_update_of_a_check_without_ttl_is_a_500(agent, consul):
    consul.agent.service.register(service(Checks=[HTTP_CHECK]))
    for check_id in ("http-1", "nope"):
        refused(lambda: consul.agent.check.update(check_id, "passing"), ConsulServerError, 500,
                f'CheckID "{check_id}" does not have associated TTL')
    refused(lambda: consul.agent.check.update("http-1", "bogus"), ConsulRequestError, 400,
            "Invalid check status: 'bogus'")


@case()
def a_ttl_check_not_reported_in_time_turns_critical(agent, consul):
    consul.agent.check.register({"ID": "t-1", "Name": "t", "TTL": "1s", "Status": "passing"})
    check = wait_until(lambda: (c := consul.agent.check.list()["t-1"])["Status"] == "critical"
                       and c, timeout=10, what="the TTL check critical")
    assert check["Output"] == "TTL expired"


# -- maintenance ---------------------------------------------------------------------------

@case()
def maintenance_is_a_critical_check_carrying_the_reason_verbatim(agent, consul):
    consul.agent.service.register(service())
    for reason in ("upgrade to 22.1 & reboot", "héllo/wörld?x=1#frag"):
        consul.agent.service.maintenance("pbx-1", True, reason)
        check = consul.agent.check.list()[MAINT]
        assert check["Notes"] == reason
        assert (check["Name"], check["Status"], check["Type"], check["Output"]) == \
            ("Service Maintenance Mode", "critical", "maintenance", "")
        assert (check["ServiceID"], check["ServiceName"]) == ("pbx-1", "Asterisk")
        consul.agent.service.maintenance("pbx-1", False)
        assert MAINT not in consul.agent.check.list()
    consul.agent.service.maintenance("pbx-1", False)  # off when off: fine


@case()
def maintenance_set_again_keeps_the_first_reason(agent, consul):
    consul.agent.service.register(service())
    consul.agent.service.maintenance("pbx-1", True, "first")
    consul.agent.service.maintenance("pbx-1", True, "second")
    assert consul.agent.check.list()[MAINT]["Notes"] == "first"


@case()
def maintenance_without_a_reason_has_consuls_default_note(agent, consul):
    consul.agent.service.register(service())
    consul.agent.service.maintenance("pbx-1", True)
    assert consul.agent.check.list()[MAINT]["Notes"] == (
        "Maintenance mode is enabled for this service, but no reason was provided. "
        "This is a default message.")


@case()
def maintenance_of_an_unknown_service_is_not_found(agent, consul):
    refused(lambda: consul.agent.service.maintenance("nope", True, "x"), ConsulNotFound, 404,
            'No service registered with ID "nope"')


@case()
def maintenance_enable_must_be_a_bool(agent, consul):
    consul.agent.service.register(service())
    answer = agent.put("/v1/agent/service/maintenance/pbx-1?enable=maybe")
    assert (answer.status_code, answer.text) == (400, 'Invalid value for enable: "maybe"')
    answer = agent.put("/v1/agent/service/maintenance/pbx-1")
    assert (answer.status_code, answer.text) == (400, "Missing value for enable")


@case()
def maintenance_leaves_the_content_hash_alone(agent, consul):
    consul.agent.service.register(service())
    before = consul.agent.service.get("pbx-1")["ContentHash"]
    consul.agent.service.maintenance("pbx-1", True, "x")
    assert consul.agent.service.get("pbx-1")["ContentHash"] == before


# -- health ----------------------------------------------------------------------------------

@case()
def health_by_id_is_the_status_code(agent, consul):
    health = consul.agent.health.service_by_id
    assert health("pbx-1") == ("unknown", [])
    consul.agent.service.register(service())
    assert health("pbx-1") == ("passing", [])
    consul.agent.service.register(service(Checks=[dict(TTL_CHECK, Status="warning")]))
    status, checks = health("pbx-1")
    assert status == "warning" and [c["CheckID"] for c in checks] == ["ttl-1"]
    consul.agent.check.update("ttl-1", "critical", "down")
    assert health("pbx-1")[0] == "critical"
    consul.agent.check.update("ttl-1", "passing", "up")
    consul.agent.service.maintenance("pbx-1", True, "r")
    status, checks = health("pbx-1")
    assert status == "critical" and MAINT in {c["CheckID"] for c in checks}


@case()
def health_bodies_carry_the_aggregated_status(agent, consul):
    answer = agent.get("/v1/agent/health/service/id/pbx-1")
    assert answer.status_code == 404
    assert answer.json() == {"AggregatedStatus": "critical", "Service": None, "Checks": None}
    assert answer.headers["X-Consul-Reason"] == "ServiceId pbx-1 not found"
    consul.agent.service.register(service(Checks=[TTL_CHECK]))
    consul.agent.service.maintenance("pbx-1", True, "r")
    answer = agent.get("/v1/agent/health/service/id/pbx-1")
    assert (answer.status_code, answer.json()["AggregatedStatus"]) == (503, "maintenance")
    assert answer.json()["Service"]["ID"] == "pbx-1"
    text = agent.get("/v1/agent/health/service/id/pbx-1?format=text")
    assert (text.status_code, text.text) == (503, "maintenance")


@case()
def a_node_check_counts_in_a_services_health(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK]))
    consul.agent.check.register({"ID": "node-1", "Name": "node", "TTL": "30s"})
    status, checks = consul.agent.health.service_by_id("pbx-1")
    assert status == "critical"
    assert {c["CheckID"] for c in checks} == {"ttl-1", "node-1"}


# -- the blocking query on a service -----------------------------------------------------

def _hash(agent):
    status, headers, body = BlockingClient(agent.url, agent.master_token or "", 2.0).get(
        "/v1/agent/service/pbx-1", {}, 0.0)
    assert status == 200
    return headers["x-consul-contenthash"]


def _block(agent, known_hash, wait_s):
    """(status, hash, seconds taken) of one blocking query, through the module's client."""
    client = BlockingClient(agent.url, agent.master_token or "", 2.0)
    began = time.monotonic()
    try:
        status, headers, _ = client.get("/v1/agent/service/pbx-1",
                                        {"hash": known_hash, "wait": f"{wait_s}s"}, wait_s)
    finally:
        client.interrupt()
    return status, headers.get("x-consul-contenthash"), time.monotonic() - began


@case()
def a_blocking_query_with_another_hash_returns_at_once(agent, consul):
    consul.agent.service.register(service())
    status, new_hash, took = _block(agent, "other", 5)
    assert (status, new_hash) == (200, _hash(agent)) and took < 2.0


@case()
def a_blocking_query_returns_when_the_definition_changes(agent, consul):
    consul.agent.service.register(service())
    old_hash = _hash(agent)
    after(0.5, lambda: Consul(agent.url, agent.master_token or "").agent.service.register(
        service(Port=5070))).join(0)
    status, new_hash, took = _block(agent, old_hash, 5)
    assert status == 200 and new_hash != old_hash and new_hash == _hash(agent)
    assert 0.4 <= took < 4.0


@case()
def a_blocking_query_sleeps_through_what_is_no_change(agent, consul):
    """The same definition again, a check, maintenance: none is the definition's."""
    consul.agent.service.register(service())
    old_hash = _hash(agent)

    def no_change():
        other = Consul(agent.url, agent.master_token or "")
        other.agent.service.register(service(), replace_existing_checks=False)
        other.agent.check.register({"ID": "c", "Name": "c", "TTL": "10s", "ServiceID": "pbx-1"})
        other.agent.service.maintenance("pbx-1", True, "x")

    after(0.2, no_change)
    status, new_hash, took = _block(agent, old_hash, 1)
    assert (status, new_hash) == (200, old_hash) and took >= 0.9


@case()
def a_blocking_query_on_a_service_deregistered_meanwhile_is_a_404(agent, consul):
    consul.agent.service.register(service())
    old_hash = _hash(agent)
    after(0.3, lambda: Consul(agent.url, agent.master_token or "").agent.service.deregister(
        "pbx-1"))
    status, _, took = _block(agent, old_hash, 5)
    assert status == 404 and took < 4.0


@case()
def a_wait_that_is_no_duration_is_refused(agent, consul):
    consul.agent.service.register(service())
    answer = agent.get("/v1/agent/service/pbx-1?hash=x&wait=10")
    assert (answer.status_code, answer.text) == (400, "Invalid wait time")


# -- catalog -------------------------------------------------------------------------------

@case()
def the_catalog_shows_the_registration_and_its_removal(agent, consul):
    consul.agent.service.register(service(ID="pbx-2"))
    consul.agent.service.register(service())
    entry = wait_until(lambda: consul.catalog.service_instance("Asterisk", "pbx-1"),
                       timeout=10, what="pbx-1 in the catalog")
    assert (entry["ServiceID"], entry["ServiceName"], entry["ServiceTags"]) == \
        ("pbx-1", "Asterisk", ["asterisk", "edge"])
    assert (entry["ServiceAddress"], entry["ServicePort"], entry["ServiceMeta"]) == \
        ("127.0.0.1", 5060, SERVICE["Meta"])
    assert entry["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    assert entry["Node"] == consul.agent.node_name()
    assert consul.catalog.service_instance("Other", "pbx-1") is None
    consul.agent.service.deregister("pbx-1")
    wait_until(lambda: consul.catalog.service_instance("Asterisk", "pbx-1") is None,
               timeout=10, what="pbx-1 out of the catalog")
    assert consul.catalog.service_instance("Asterisk", "pbx-2")["ServiceID"] == "pbx-2"


# -- sessions and KV -----------------------------------------------------------------------

@case()
def a_session_is_created_read_renewed_and_destroyed(agent, consul):
    session_id = consul.session.create("res_discovery_consul:pbx-1", "30s")
    info = consul.session.info(session_id)
    assert (info["ID"], info["Name"], info["Node"]) == \
        (session_id, "res_discovery_consul:pbx-1", consul.agent.node_name())
    assert (info["Behavior"], info["TTL"], info["LockDelay"]) == ("delete", "30s", 0)
    assert consul.session.renew(session_id) is True
    consul.session.destroy(session_id)
    assert consul.session.info(session_id) is None
    assert consul.session.renew(session_id) is False
    consul.session.destroy(session_id)  # gone already: still fine


@case()
def a_session_ttl_under_10s_or_an_odd_behavior_is_a_500(agent, consul):
    refused(lambda: consul.session.create("s", "1s"), ConsulServerError, 500,
            "Invalid Session TTL '1000000000', must be between [10s=24h0m0s]")
    refused(lambda: consul.session.create("s", "30s", behavior="bogus"), ConsulServerError,
            500, "Invalid Behavior setting 'bogus'")


@case()
def a_session_id_that_is_no_uuid_is_a_500(agent, consul):
    for call in (consul.session.info, consul.session.renew, consul.session.destroy):
        refused(lambda: call("nope"), ConsulServerError, 500, "UUID must be 36 characters")


@case()
def two_sessions_contend_for_a_key(agent, consul):
    first = consul.session.create("first", "30s")
    second = consul.session.create("second", "30s")
    assert consul.kv.acquire("asterisk/pbx-1/role", b"edge", first) is True
    assert consul.kv.acquire("asterisk/pbx-1/role", b"core", second) is False
    assert consul.kv.acquire("asterisk/pbx-1/role", b"edge2", first) is True  # its own: updated
    assert consul.kv.get("asterisk/pbx-1/role") == {"Value": b"edge2", "Session": first}
    put = consul.transport.put
    assert put("/v1/kv/asterisk/pbx-1/role", params={"release": second}).json() is False
    assert put("/v1/kv/asterisk/pbx-1/role", params={"release": first}, data=b"free").json()
    assert consul.kv.get("asterisk/pbx-1/role") == {"Value": b"free", "Session": ""}
    assert consul.kv.acquire("asterisk/pbx-1/role", b"core", second) is True


@case()
def a_destroyed_session_deletes_or_frees_what_it_held(agent, consul):
    deleting = consul.session.create("deleting", "30s", behavior="delete")
    releasing = consul.session.create("releasing", "30s", behavior="release")
    assert consul.kv.acquire("a/deleted", b"1", deleting)
    assert consul.kv.acquire("a/released", b"2", releasing)
    consul.session.destroy(deleting)
    consul.session.destroy(releasing)
    assert consul.kv.get_tree("a/") == {"a/released": {"Value": b"2", "Session": ""}}


@case()
def acquiring_with_a_session_consul_does_not_know_is_a_500(agent, consul):
    refused(lambda: consul.kv.acquire("k", b"v", NO_SESSION), ConsulServerError, 500,
            f'invalid session "{NO_SESSION}"')


@case()
def kv_keys_are_written_read_and_deleted(agent, consul):
    put = consul.transport.put
    assert consul.kv.get("a/b") is None and consul.kv.get_tree("a/") == {}
    assert put("/v1/kv/a/b", data=b"one").json() is True
    assert put("/v1/kv/a/c", data=b"").json() is True
    put("/v1/kv/other", data=b"x")
    assert consul.kv.get_tree("a/") == {"a/b": {"Value": b"one", "Session": ""},
                                        "a/c": {"Value": b"", "Session": ""}}
    assert agent.get("/v1/kv/a/b?raw").content == b"one"
    consul.kv.delete("a/b")
    consul.kv.delete("a/b")  # gone already: still fine
    assert consul.kv.get("a/b") is None
    assert consul.transport.request("DELETE", "/v1/kv/a", params={"recurse": ""}).json()
    assert consul.kv.get_tree("a") == {} and consul.kv.get("other")["Value"] == b"x"


@case()
def kv_cas_writes_only_over_the_index_named(agent, consul):
    put = consul.transport.put
    assert put("/v1/kv/k", params={"cas": "0"}, data=b"1").json() is True
    assert put("/v1/kv/k", params={"cas": "0"}, data=b"2").json() is False
    index = agent.get("/v1/kv/k").json()[0]["ModifyIndex"]
    assert put("/v1/kv/k", params={"cas": str(index + 1000)}, data=b"3").json() is False
    assert put("/v1/kv/k", params={"cas": str(index)}, data=b"4").json() is True
    assert consul.kv.get("k")["Value"] == b"4"


# -- events --------------------------------------------------------------------------------

@case()
def a_fired_event_is_answered_and_listed(agent, consul):
    answer = consul.event.fire("asterisk-register", b'{"id":"pbx-1"}')
    assert answer["Name"] == "asterisk-register" and uuid.UUID(answer["ID"])
    assert base64.b64decode(answer["Payload"]) == b'{"id":"pbx-1"}'
    listed = agent.get("/v1/event/list", params={"name": "asterisk-register"}).json()
    assert [e["ID"] for e in listed] == [answer["ID"]]
    assert agent.get("/v1/event/list", params={"name": "nothing-of-that-name"}).json() == []


@case()
def an_event_over_consuls_size_limit_is_a_500(agent, consul):
    consul.event.fire("asterisk-register", b"x" * 300)
    refused(lambda: consul.event.fire("asterisk-register", b"x" * 600), ConsulServerError, 500,
            "user event exceeds configured limit of 512 bytes before encoding")


# -- ACLs (default deny) -------------------------------------------------------------------

@case(acl=True)
def without_a_token_or_with_an_unknown_one_a_write_is_denied(agent, consul):
    refused(lambda: anonymous(agent).agent.service.register(service()),
            ConsulPermissionDenied, 403, "Permission denied: Missing service:write on Asterisk")
    unknown = Consul(agent.url, token=str(uuid.uuid4()))
    refused(lambda: unknown.agent.service.register(service()), ConsulPermissionDenied, 403,
            "ACL not found")
    consul.agent.service.register(service())
    assert "pbx-1" in agent.services()


@case(acl=True)
def anonymous_reads_are_filtered_or_denied(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK]))
    consul.transport.put("/v1/kv/k", data=b"v")
    session_id = consul.session.create("s", "30s")
    wait_until(lambda: consul.catalog.service_instance("Asterisk", "pbx-1"), timeout=10,
               what="pbx-1 in the catalog")
    nobody = anonymous(agent)
    assert services_of(nobody) == {} and nobody.agent.check.list() == {}
    assert nobody.catalog.service_instance("Asterisk", "pbx-1") is None
    assert nobody.kv.get_tree("") == {} and nobody.session.info(session_id) is None
    for read in (nobody.agent.self, lambda: nobody.agent.service.get("pbx-1"),
                 lambda: nobody.agent.health.service_by_id("pbx-1"),
                 lambda: nobody.kv.get("k")):
        refused(read, ConsulPermissionDenied, 403, "Permission denied")


@case(acl=True)
def anonymous_writes_name_the_right_they_miss(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK]))
    nobody = anonymous(agent)
    node = consul.agent.node_name()
    refused(lambda: nobody.agent.check.register({"ID": "n", "Name": "n", "TTL": "10s"}),
            ConsulPermissionDenied, 403, f"Permission denied: Missing node:write on {node}")
    for write in (lambda: nobody.agent.service.maintenance("pbx-1", True, "x"),
                  lambda: nobody.agent.check.update("ttl-1", "passing"),
                  lambda: nobody.agent.service.deregister("pbx-1")):
        refused(write, ConsulPermissionDenied, 403,
                "Permission denied: Missing service:write on Asterisk")
    for write in (lambda: nobody.session.create("s", "30s"),
                  lambda: nobody.transport.put("/v1/kv/k", data=b"v"),
                  lambda: nobody.event.fire("e", b"")):
        refused(write, ConsulPermissionDenied, 403, "Permission denied")


@case(acl=True)
def an_unknown_token_firing_an_event_is_a_500(agent, consul):
    unknown = Consul(agent.url, token=str(uuid.uuid4()))
    refused(lambda: unknown.event.fire("e", b""), ConsulServerError, 500, "ACL not found")


@case(acl=True)
def with_acls_unknown_services_and_checks_are_500s_read_as_not_found(agent, consul):
    refused(lambda: consul.agent.service.deregister("nope"), ConsulNotFound, 500,
            'Unknown service {"nope" {}}')
    refused(lambda: consul.agent.service.maintenance("nope", True), ConsulNotFound, 500,
            'Unknown service {"nope" {}}')
    refused(lambda: consul.agent.check.deregister("nope"), ConsulNotFound, 500,
            'Unknown check "nope"')
    refused(lambda: consul.agent.check.update("nope", "passing"), ConsulNotFound, 500,
            'Unknown check "nope"')


# -- the HTTP surface and restarts ---------------------------------------------------------

@case()
def a_wrong_method_is_a_405_and_an_unknown_path_a_404(agent, consul):
    answer = agent.request("POST", "/v1/agent/service/register", json=SERVICE)
    assert (answer.status_code, answer.text) == (405, "method POST not allowed")
    answer = agent.get("/v1/agent/service/register")
    assert (answer.status_code, answer.text) == (405, "method GET not allowed")
    assert agent.get("/v1/nonexistent").status_code == 404


@case()
def an_agent_restarted_without_its_data_has_forgotten_everything(agent, consul):
    consul.agent.service.register(service(Checks=[TTL_CHECK]))
    session_id = consul.session.create("s", "30s")
    consul.kv.acquire("k", b"v", session_id)
    agent.stop()
    refused(consul.agent.self, ConsulUnreachable, None, "Connection refused")
    agent.start()
    assert services_of(consul) == {} and consul.agent.check.list() == {}
    assert consul.kv.get("k") is None and consul.session.renew(session_id) is False
