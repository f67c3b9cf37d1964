"""The fleet (integration_tests/fleet): Kamailio routes SIPp's calls to the Asterisk 16 boxes
by what Consul says of them, through the sample consul_dispatcher.py following the service (--follow).
Real Consul cluster, real Kamailio, real SIPp, real Asterisk with the module, in network
namespaces of their own."""

import pytest

from integration_tests.fleet import scenarios
from integration_tests.fleet.measure import first_times, routed


def test_fleet_routes_calls_by_weight(fleet, fleet_report):
    result = scenarios.steady_by_weight(fleet)
    fleet_report(result)
    assert result.attempted >= 80
    assert result.failed == 0
    assert result.details["wrong_box"] == 0
    # Meta weight 1, 2, 3 -> Kamailio's relative weights -> a sixth, a third and a half of
    # the calls (dispatcher deals them from a shuffled deck of 100).
    listed = result.details["listed"]
    for host in fleet.hosts:
        assert any(f"duid={host.service_id};rweight={host.weight};health=passing" in line
                   and line.split()[2] == "0" for line in listed), listed
    assert result.details["max_deviation"] <= 0.07, result.details


@pytest.mark.parametrize("how", ["maintenance", "drain"])
def test_fleet_maintenance_or_drain_stops_new_calls_to_the_box_within_one_second(
        fleet, fleet_report, how):
    host = fleet.hosts[1]
    result = scenarios.out_of_rotation(fleet, how, host=host)
    fleet_report(result)
    assert result.seconds <= 1.0, result.details
    assert result.details["routes_while_out"] == 0
    assert result.failed == 0
    assert result.details["wrong_box"] == 0


def test_fleet_maintenance_box_stays_listed_as_disabled(fleet):
    host = fleet.hosts[0]
    host.set_maintenance(True, "kept in the list")
    try:
        first_times({"out": lambda: not routed(fleet, host)}, 10, "out of rotation")
        assert fleet.proxy.destinations()[host.service_id].startswith("D")
        assert "health=maintenance" in fleet.proxy.list_path.read_text()
    finally:
        host.set_maintenance(False)
    first_times({"back": lambda: routed(fleet, host)}, 10, "back in rotation")


def test_fleet_warning_box_gets_its_warning_weight_and_draining_box_none(fleet, fleet_report):
    result = scenarios.warning_and_draining(fleet)
    fleet_report(result)
    d = result.details
    host = fleet.host(d["host"])
    # Passing weight 3 (Meta), warning weight 1 (Consul's default): still routed, with 1.
    assert any(f"duid={host.service_id};rweight=1;health=warning" in line
               and line.split()[2] == "0" for line in d["listed_while_warning"]), d
    # 1 of 1 + 2 + 1 -> about a quarter of the calls instead of half.
    assert abs(d["shares_while_warning"][host.name] - 0.25) <= 0.1, d
    assert result.details["routes_while_draining"] == 0
    assert result.failed == 0
    assert result.details["wrong_box"] == 0
    # Its check gone, the box is back with its passing weight.
    assert f"rweight={host.weight};health=passing" in fleet.proxy.list_path.read_text()

