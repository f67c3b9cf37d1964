"""check_success_before_passing / check_failures_before_critical: on the EID check only, for
agents that take them; an agent that does not gets a warning and the check without them."""

from __future__ import annotations

import json
import logging

import pytest

from asterisk_consul.registration import drift, service_definition
from integration_tests.testbed.registrar_kit import FACTS, settings_for
from tests.fakeagent import FakeAgent, services as fake_services
from tests.test_reconciler import DRAIN_CHECK, EID_CHECK, SID, TTL_CHECK, Bench
from asterisk_consul.registrar.choices import DRAIN, Change

THRESHOLDS = dict(check_success_before_passing=2, check_failures_before_critical=3)


@pytest.fixture
def agent():
    with FakeAgent() as fake:
        yield fake


def sent_checks(agent):
    """The checks of the last registration, as sent, by ID."""
    body = json.loads(agent.calls("/v1/agent/service/register", "PUT")[-1].body)
    return {c["CheckID"]: c for c in body["Checks"]}


def test_the_thresholds_go_into_the_eid_check_and_no_other(agent):
    bench = Bench(agent, **THRESHOLDS)
    try:
        bench.turn()
        assert bench.rec.change(Change(DRAIN, True, "upgrade")).ok
        bench.rec.service.register_now()
        bench.turn()
        checks = sent_checks(agent)
        assert checks[EID_CHECK]["SuccessBeforePassing"] == 2
        assert checks[EID_CHECK]["FailuresBeforeCritical"] == 3
        for other in (TTL_CHECK, DRAIN_CHECK):
            assert "SuccessBeforePassing" not in checks[other]
            assert "FailuresBeforeCritical" not in checks[other]
    finally:
        bench.close()


def test_zero_sends_neither_field_and_asks_no_version(agent):
    bench = Bench(agent)
    try:
        bench.turn()
        assert set(sent_checks(agent)[EID_CHECK]) & {"SuccessBeforePassing",
                                                      "FailuresBeforeCritical"} == set()
        assert agent.calls("/v1/agent/self") == []
    finally:
        bench.close()


def test_the_agents_version_is_read_once(agent):
    bench = Bench(agent, **THRESHOLDS)
    try:
        bench.turn()
        bench.rec.service.register_now()
        bench.turn()
        assert len(agent.calls("/v1/agent/self")) == 1
    finally:
        bench.close()


def test_an_agent_older_than_1_8_1_gets_a_warning_and_the_check_without_them(agent, caplog):
    bench = Bench(agent, **THRESHOLDS)
    bench.link.version = "1.7.4"  # what /v1/agent/self would say
    try:
        bench.turn()
        assert SID in agent.services()
        assert "FailuresBeforeCritical" not in sent_checks(agent)[EID_CHECK]
        assert "Consul 1.7.4 does not know them" in caplog.text
    finally:
        bench.close()


def test_an_agent_that_refuses_the_fields_gets_them_no_more_and_the_service_is_registered(
        agent, monkeypatch, caplog):
    older = fake_services.SERVICE_CHECK_FIELDS - {"SuccessBeforePassing",
                                                  "FailuresBeforeCritical"}
    monkeypatch.setattr(fake_services, "SERVICE_CHECK_FIELDS", older)
    bench = Bench(agent, **THRESHOLDS)
    bench.link.version = ""  # a token that may not read /v1/agent/self: sent, then refused
    bench.rec._thresholds_asked = None
    try:
        with caplog.at_level(logging.WARNING):
            bench.turn()
        assert SID in agent.services()
        assert len(agent.calls("/v1/agent/service/register")) == 2
        assert "it refused them" in caplog.text
        assert bench.rec.snapshot(True).last_error == ""
    finally:
        bench.close()


def test_drift_compares_the_thresholds_only_where_the_agent_reports_them():
    settings = settings_for(8500, check=True, check_type="http", **THRESHOLDS)
    definition = service_definition(settings, FACTS)
    agent_service = {"Service": definition["Name"], "Tags": definition["Tags"],
                     "Address": definition["Address"], "Port": definition["Port"],
                     "Meta": definition["Meta"], "Weights": definition["Weights"]}
    check = {"ServiceID": SID, "Name": definition["Checks"][0]["Name"], "Type": "http"}
    eid = definition["Checks"][0]["CheckID"]
    assert drift(definition, agent_service, {eid: dict(check, Definition={})}) == []
    reported = {"SuccessBeforePassing": 2, "FailuresBeforeCritical": 3}
    assert drift(definition, agent_service, {eid: dict(check, Definition=reported)}) == []
    other = dict(reported, FailuresBeforeCritical=0)
    assert drift(definition, agent_service, {eid: dict(check, Definition=other)}) == [
        f"check {eid} differs"]
