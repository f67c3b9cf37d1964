"""The registrar's pure core: the operator's choices, Asterisk's stop and what the agent should
hold, as plain functions of their inputs (no agent, no clock, no thread)."""

from __future__ import annotations

import pytest

from asterisk_consul.health import AsteriskState, verdict
from asterisk_consul.registration import HostFacts, check_id, drain_check_id, ttl_check_id
from asterisk_consul.registrar.choices import (BY_SHUTDOWN, CANCELLED, CHECK, DRAIN,
                                               MAINTENANCE, STARTED, Change, Choices, StopSeen,
                                               choose, drain_notes, follow_stop)
from asterisk_consul.registrar.wanted import (check_status, registration_body,
                                              unwanted_check_ids, wanted_definition)
from asterisk_consul.settings import Settings

FACTS = HostFacts(eid="02:42:ac:11:00:02", version="22.1.0", instance="5eed0a11")
SETTINGS = Settings(service_id="pbx-1", discovery_ip="127.0.0.1", check=True, check_type="both")


def state(stop=False, shutting_down=False, booted=True, channels=0):
    return AsteriskState(booted=booted, shutting_down=shutting_down, stop_requested=stop,
                         channels=channels)


# -- choices -------------------------------------------------------------------------------------

def test_a_drain_remembers_when_it_began_and_forgets_it_when_it_ends():
    draining = choose(Choices(), Change(DRAIN, True, "upgrade"), now=1000.0)
    assert (draining.drain, draining.drain_reason, draining.drain_since) == (True, "upgrade", 1000.0)
    again = choose(draining, Change(DRAIN, True, "another reason"), now=2000.0)
    assert again.drain_since == 1000.0 and again.drain_reason == "another reason"
    ended = choose(again, Change(DRAIN, False, "ignored"), now=3000.0)
    assert (ended.drain, ended.drain_reason, ended.drain_by, ended.drain_since) == \
        (False, "", "", None)


def test_each_kind_of_change_touches_only_its_own_choice():
    start = Choices(maintenance=True, maintenance_reason="m", checks=False, drain=True,
                    drain_reason="d", drain_by="operator", drain_since=5.0)
    assert choose(start, Change(CHECK, True), 9.0) == Choices(
        maintenance=True, maintenance_reason="m", checks=True, drain=True, drain_reason="d",
        drain_by="operator", drain_since=5.0)
    assert choose(start, Change(MAINTENANCE, False, "gone"), 9.0).maintenance_reason == ""
    assert choose(start, Change(MAINTENANCE, False), 9.0).drain_since == 5.0


def test_an_unknown_kind_of_change_is_refused():
    with pytest.raises(ValueError):
        choose(Choices(), Change("reboot", True), 0.0)


def test_the_drain_notes_say_why_and_who():
    choices = choose(Choices(), Change(DRAIN, True, "", BY_SHUTDOWN), now=0.0)
    assert drain_notes(choices).endswith("(shutdown): no reason given")
    assert drain_notes(Choices()) is None


# -- Asterisk's stop -----------------------------------------------------------------------------

def test_a_graceful_stop_then_abort_is_started_then_cancelled():
    seen, said = follow_stop(StopSeen(), state(stop=True))
    assert said == STARTED
    seen, said = follow_stop(seen, state(stop=True, shutting_down=True))
    assert said is None and seen.carried_out
    seen, said = follow_stop(seen, state(stop=True, shutting_down=False))  # core abort shutdown
    assert said == CANCELLED and seen == StopSeen()


def test_a_when_convenient_stop_stays_started_until_asterisk_says_otherwise():
    seen, said = follow_stop(StopSeen(), state(stop=True))
    for _ in range(5):
        seen, said = follow_stop(seen, state(stop=True))
        assert said is None and seen.requested
    seen, said = follow_stop(seen, state(stop=False))
    assert said == CANCELLED


def test_no_stop_says_nothing():
    assert follow_stop(StopSeen(), state()) == (StopSeen(), None)


# -- what the agent should hold ------------------------------------------------------------------

def test_the_definition_holds_the_checks_the_choices_want_and_the_drain_check_while_draining():
    ids = lambda d: [c["CheckID"] for c in d.get("Checks") or []]  # noqa: E731
    assert ids(wanted_definition(SETTINGS, FACTS, Choices())) == \
        [check_id("pbx-1"), ttl_check_id("pbx-1")]
    off = Choices(checks=False)
    assert ids(wanted_definition(SETTINGS, FACTS, off)) == []
    draining = choose(off, Change(DRAIN, True, "x"), 0.0)
    definition = wanted_definition(SETTINGS, FACTS, draining)
    assert ids(definition) == [drain_check_id("pbx-1")]
    assert unwanted_check_ids(definition) == [check_id("pbx-1"), ttl_check_id("pbx-1")]


def test_each_check_is_registered_with_what_is_true_now():
    definition = wanted_definition(SETTINGS, FACTS, choose(Choices(), Change(DRAIN, True), 0.0))
    starting = verdict(state(booted=False), False, FACTS.version, FACTS.eid, 0)
    body = registration_body(definition, starting)
    statuses = {c["CheckID"]: c["Status"] for c in body["Checks"]}
    assert statuses == {check_id("pbx-1"): "critical", ttl_check_id("pbx-1"): "warning",
                        drain_check_id("pbx-1"): "critical"}
    assert "Status" not in definition["Checks"][0], "the definition itself is left as it was"
    booted = verdict(state(), False, FACTS.version, FACTS.eid, 0)
    assert check_status(definition["Checks"][0], booted, "pbx-1") == "passing"
