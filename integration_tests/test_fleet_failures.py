"""The fleet (integration_tests/fleet) when Asterisk boxes die, restart or are replaced:
calls counted by SIPp, routing decisions by Kamailio's log, answers by each Asterisk."""

import pytest

from integration_tests.fleet import scenarios
from integration_tests.fleet.measure import CHECK_INTERVAL_S, CHECK_TIMEOUT_S, REAP_BOUND_S


def test_fleet_kill_9_stops_calls_within_check_bound(fleet, fleet_report):
    result = scenarios.kill_9(fleet)
    fleet_report(result)
    # No new call reaches the dead box later than one check interval + timeout after the
    # kill (the check refuses at once; Consul -> watch -> reload is part of the budget).
    assert result.seconds <= CHECK_INTERVAL_S + CHECK_TIMEOUT_S, result.details
    # The calls it held are lost; INVITEs routed to it before Consul knew failed over.
    assert result.failed <= result.details["calls_on_it_when_killed"] + 2, result.details
    assert result.details["wrong_box"] == 0


def test_fleet_rolling_restart_without_drain_loses_only_the_calls_each_box_held(
        fleet, fleet_report):
    result = scenarios.rolling_restart(fleet)
    fleet_report(result)
    held = sum(h["calls_held"] for h in result.details["hosts"].values())
    assert set(result.details["hosts"]) == {h.name for h in fleet.hosts}
    assert result.failed <= held + 2, result.details
    assert result.details["wrong_box"] == 0


@pytest.mark.parametrize("take_out", ["maintenance", "drain"])
def test_fleet_rolling_restart_with_maintenance_or_drain_first_fails_no_call(
        fleet, fleet_report, take_out):
    result = scenarios.rolling_restart(fleet, take_out=take_out)
    fleet_report(result)
    assert all(h["calls_held"] == 0 for h in result.details["hosts"].values()), result.details
    assert result.failed == 0
    assert result.details["wrong_box"] == 0


def test_fleet_new_box_on_a_dead_ones_ip_gets_none_of_its_calls(fleet, fleet_report):
    result = scenarios.ip_reuse(fleet)
    fleet_report(result)
    d = result.details
    # Consul runs the check on its own schedule: up to one interval, then the refusal.
    assert result.seconds <= CHECK_INTERVAL_S + 1.0, d
    assert d["reaped_after_critical"] <= REAP_BOUND_S, d
    # Until it was reaped, the dead registration was critical, never passing again.
    assert set(d["old_states_seen"]) <= {"critical", "None"}, d
    assert d["answered_as_old_after_kill"] == 0 and d["routed_to_old_after_critical"] == 0, d
    assert d["answered_by_new"] > 0
    # An INVITE sent to the dead box before Consul knew and retransmitted once the new box
    # had the address reaches the new box: it refuses it (routed as the old EID) and the
    # proxy fails it over (refused_as_old_by_new counts them). None is answered there.
    assert d["wrong_box"] == 0
    # Only the calls the dead box held failed.
    assert result.failed <= 20, d


def test_fleet_box_refuses_calls_routed_as_another_box(fleet, fleet_report):
    result = scenarios.stale_list(fleet)
    fleet_report(result)
    d = result.details
    assert d["refused"] > 0 and d["refused_as_meant_by_other"] == d["refused"], d
    assert d["wrong_box"] == 0
    # Refused with 503, failed over to the box's own entry: no call lost.
    assert result.failed == 0
