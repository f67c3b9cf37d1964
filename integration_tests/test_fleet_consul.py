"""The fleet (integration_tests/fleet) when Consul itself fails: servers killed, client agents
restarted, an agent's data lost. Calls keep flowing; the module's registration, checks and KV
follow."""

from integration_tests.fleet import scenarios
from integration_tests.fleet.measure import CHECK_INTERVAL_S, RESYNC_INTERVAL_S


def test_fleet_consul_follower_then_leader_killed_fails_no_call(fleet, fleet_report):
    result = scenarios.consul_servers(fleet)
    fleet_report(result)
    d = result.details
    assert d["new_leader"] != d["killed_leader"]
    # Unload + load of the module with a server down, then after the leader was killed: the
    # registration, its EID check and its KV key (with its session) reach the catalog.
    for cycle in ("module_cycle_with_follower_down", "module_cycle_after_leader_killed"):
        assert set(d[cycle]) == {"passing", "routed", "kv"}, d
    assert result.failed == 0
    assert d["wrong_box"] == 0


def test_fleet_client_agent_restart_brings_its_asterisk_back(fleet, fleet_report):
    result = scenarios.agent_restart(fleet)
    fleet_report(result)
    # The agent restores the registration from its data dir; its check runs within an
    # interval.
    assert result.seconds <= CHECK_INTERVAL_S + 2.0, result.details
    assert result.failed == 0
    assert result.details["wrong_box"] == 0


def test_fleet_client_agent_losing_its_data_gets_the_asterisk_back_within_resync(
        fleet, fleet_report):
    result = scenarios.agent_restart(fleet, lose_data=True)
    fleet_report(result)
    # The module notices at its next resync and registers again.
    assert result.seconds <= RESYNC_INTERVAL_S + CHECK_INTERVAL_S + 2.0, result.details
    assert result.failed == 0
    assert result.details["wrong_box"] == 0
