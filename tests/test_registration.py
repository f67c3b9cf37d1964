"""The service definition we build, and how we judge the agent's view of it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from asterisk_consul.consul import Agent, Transport
from asterisk_consul.registration import (CHECK_NAME, META_KEY_PATTERN, HostFacts, check_id,
                                          check_url, drift,
                                          maintenance_check_id, meta,
                                          meta_problems, service_definition)
from asterisk_consul.settings import Settings

FACTS = HostFacts(eid="02:42:ac:11:00:02", version="22.1.0")


def make(**overrides):
    base = dict(service_id="pbx-1", name="Asterisk", tags=("asterisk", "edge"),
                discovery_ip="127.0.0.1", discovery_port=5060, ari_port=8089,
                ari_scheme="https", check=False, check_type="http")
    base.update(overrides)
    return Settings(**base)


# -- the definition ----------------------------------------------------------------------------

def test_definition_fields():
    definition = service_definition(make(), FACTS)
    assert definition["ID"] == "pbx-1"
    assert definition["Name"] == "Asterisk"
    assert definition["Tags"] == ["asterisk", "edge"]
    assert definition["Address"] == "127.0.0.1"
    assert definition["Port"] == 5060
    assert list(definition["Meta"].items()) == [
        ("eid", "02:42:ac:11:00:02"), ("asterisk_version", "22.1.0"),
        ("ari_port", "8089"), ("ari_scheme", "https")]
    assert "Checks" not in definition and "Check" not in definition  # check = no


def test_profile_metadata_follows_ours_as_strings():
    settings = make(metadata_profile="east",
                    metadata=(("group", "east"), ("priority", "1"), ("weight", "10")))
    assert list(meta(settings, FACTS))[4:] == ["group", "priority", "weight"]
    assert all(isinstance(v, str) for v in meta(settings, FACTS).values())


def test_bad_or_reserved_metadata_keys_are_left_out_and_reported():
    settings = make(metadata=(("eid", "forged"), ("bad.key", "1"), ("consul-x", "1"),
                              ("long", "x" * 513), ("ok_key-1", "v")))
    result = meta(settings, FACTS)
    assert result["eid"] == FACTS.eid
    assert "bad.key" not in result and "consul-x" not in result and "long" not in result
    assert result["ok_key-1"] == "v"
    problems = meta_problems(settings)
    assert len(problems) == 4
    assert any("bad.key" in p for p in problems)


def test_at_most_64_meta_entries():
    settings = make(metadata=tuple((f"k{i}", "v") for i in range(100)))
    assert len(meta(settings, FACTS)) == 64
    assert len(meta_problems(settings)) == 100 - 60


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=140), st.text(max_size=600)), max_size=80))
def test_meta_is_always_acceptable_to_consul(pairs):
    result = meta(make(metadata=tuple(pairs)), FACTS)
    assert len(result) <= 64
    for key, value in result.items():
        assert META_KEY_PATTERN.fullmatch(key) and not key.startswith("consul-")
        assert isinstance(value, str) and len(value) <= 512


def test_check_definition():
    definition = service_definition(make(check=True, check_http_port=8088, check_interval="10s",
                                         check_timeout="2s", check_deregister_after="5m"), FACTS)
    check, = definition["Checks"]
    assert check == {
        "CheckID": "check-asterisk-eid-pbx-1",
        "Name": CHECK_NAME,
        "HTTP": "http://127.0.0.1:8088/res_discovery_consul/check_eid"
                "?expected_eid=02:42:ac:11:00:02",
        "Method": "GET",
        "Interval": "10s",
        "Timeout": "2s",
        "DeregisterCriticalServiceAfter": "5m",
    }


@pytest.mark.parametrize("prefix", ["asterisk", "/asterisk", "asterisk/", "/asterisk/"])
def test_check_url_with_http_prefix(prefix):
    url = check_url(make(check=True, http_prefix=prefix), FACTS)
    assert url == ("http://127.0.0.1:8088/asterisk/res_discovery_consul/check_eid"
                   "?expected_eid=02:42:ac:11:00:02")


def test_check_url_brackets_ipv6_and_uses_the_eid_not_the_id():
    url = check_url(make(discovery_ip="2001:db8::10", service_id="02:42:ac:11:00:09"), FACTS)
    assert url.startswith("http://[2001:db8::10]:8088/")
    assert url.endswith("expected_eid=02:42:ac:11:00:02")


def test_ids():
    assert check_id("x") == "check-asterisk-eid-x"
    assert maintenance_check_id("x") == "_service_maintenance:x"


# -- against what an agent reports (the fake agent, held to Consul 1.8.7) ---------------------

def agent_view(fake_agent, service_id):
    return fake_agent.services().get(service_id) and \
        fake_agent.get(f"/v1/agent/service/{service_id}").json(), fake_agent.checks()


def register(fake_agent, definition, replace_existing_checks=True):
    Agent(Transport(fake_agent.url, "", 2.0)).service.register(definition,
                                                                 replace_existing_checks)


def test_registered_definition_is_in_sync(fake_agent):
    settings = make(check=True, metadata=(("group", "east"),))
    definition = service_definition(settings, FACTS)
    register(fake_agent, definition)
    service, checks = agent_view(fake_agent, "pbx-1")
    assert service["Tags"] == ["asterisk", "edge"]  # a list, one tag each
    assert service["Meta"]["eid"] == FACTS.eid
    assert checks["check-asterisk-eid-pbx-1"]["Name"] == CHECK_NAME
    assert drift(definition, service, checks) == []


def test_drift_seen_when_changed_missing_or_check_stale(fake_agent):
    settings = make(check=True)
    definition = service_definition(settings, FACTS)
    assert drift(definition, None, {}) == ["service pbx-1 is not registered"]

    register(fake_agent, dict(definition, Port=5070))
    service, checks = agent_view(fake_agent, "pbx-1")
    assert drift(definition, service, checks) == ["Port is 5070, expected 5060"]

    without_check = {k: v for k, v in definition.items() if k != "Checks"}
    register(fake_agent, without_check, replace_existing_checks=False)  # the check stays
    service, checks = agent_view(fake_agent, "pbx-1")
    assert "check" in drift(without_check, service, checks)[0]

    fake_agent.put("/v1/agent/check/deregister/check-asterisk-eid-pbx-1")
    service, checks = agent_view(fake_agent, "pbx-1")
    assert drift(definition, service, checks) == ["check check-asterisk-eid-pbx-1 is missing"]


def test_empty_tags_and_meta_compare_equal(fake_agent):
    definition = dict(service_definition(make(tags=()), FACTS))
    register(fake_agent, definition)
    service, checks = agent_view(fake_agent, "pbx-1")
    assert drift(definition, service, checks) == []


# -- SIP transports ----------------------------------------------------------------------------

TRANSPORTS = (("udp", "0.0.0.0", 5060), ("tcp", "0.0.0.0", 5060), ("tls", "0.0.0.0", 5061))


def test_each_sip_transport_is_in_tagged_addresses_and_none_without_transports():
    definition = service_definition(make(discovery_ip="192.0.2.7", sip_transports=TRANSPORTS),
                                    FACTS)
    assert definition["TaggedAddresses"] == {
        "sip_udp": {"Address": "192.0.2.7", "Port": 5060},
        "sip_tcp": {"Address": "192.0.2.7", "Port": 5060},
        "sip_tls": {"Address": "192.0.2.7", "Port": 5061}}
    assert "TaggedAddresses" not in service_definition(make(), FACTS)


def test_drift_compares_our_tagged_addresses_only(fake_agent):
    definition = service_definition(make(sip_transports=TRANSPORTS), FACTS)
    register(fake_agent, definition)
    service, checks = agent_view(fake_agent, "pbx-1")
    assert "lan_ipv4" in service["TaggedAddresses"]  # the agent adds its own
    assert drift(definition, service, checks) == []
    fewer = service_definition(make(sip_transports=TRANSPORTS[:1]), FACTS)
    assert drift(fewer, service, checks)[0].startswith("TaggedAddresses is ")
