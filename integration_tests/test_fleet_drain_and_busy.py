"""The fleet with what no registrar does: drain by itself when Asterisk restarts gracefully,
and report load (busy_channels, Weights), counted in calls. (Drain by command: the
maintenance-or-drain tests of test_fleet_routing.py and test_fleet_failures.py.)"""

from integration_tests.fleet import scenarios


def test_fleet_rolling_core_restart_gracefully_alone_fails_no_call(fleet, fleet_report):
    """No operator step before the restart: the module drains each box as Asterisk begins its
    graceful restart, the box finishes its calls, and comes back as a new start."""
    result = scenarios.rolling_restart(fleet, take_out="graceful")
    fleet_report(result)
    assert set(result.details["hosts"]) == {h.name for h in fleet.hosts}
    assert result.failed == 0, result.details
    assert result.details["wrong_box"] == 0


def test_fleet_busy_box_gets_its_warning_weight_and_comes_back(fleet, fleet_report):
    result = scenarios.busy_box(fleet)
    fleet_report(result)
    d = result.details
    # The module's check says warning within a check interval or two of the box being busy
    # (the poll of Asterisk's channels, Consul's next check, the watch, Kamailio's reload).
    assert result.seconds <= 3.0, d
    # Warning weight 1 against 1 + 2: clearly fewer than the half it has when passing.
    assert d["shares_while_busy"][d["host"]] <= 0.4, d
    assert result.failed == 0
    assert d["wrong_box"] == 0
    # Idle again: below 90 % for the 5 s dwell, then the next check.
    assert d["passing_after_calls_ended"] <= 15.0, d
