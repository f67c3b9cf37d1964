"""contrib/kamailio/consul_dispatcher.py, the sample consul watch handler, on health entries
shaped as Consul 1.8 returns them (GET /v1/health/service/<name>): which instances Kamailio
routes new calls to, with which weight. The fleet tests run it for real; these cover the
states today's module cannot produce yet (warning, draining) and the weight rules."""

import importlib.util
import json
import subprocess
import sys

from integration_tests.testbed import paths

HANDLER = paths.repo_root() / "contrib" / "kamailio" / "consul_dispatcher.py"
_spec = importlib.util.spec_from_file_location("consul_dispatcher", HANDLER)
handler = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(handler)


def entry(sid, address, status="passing", weights=(1, 1), meta=None, output="", notes="",
          maintenance=False, port=5060):
    checks = [{"CheckID": "serfHealth", "ServiceID": "", "Status": "passing",
               "Output": "Agent alive and reachable", "Notes": ""},
              {"CheckID": f"check-asterisk-eid-{sid}", "ServiceID": sid, "Status": status,
               "Output": output, "Notes": notes}]
    if maintenance:
        checks.append({"CheckID": f"_service_maintenance:{sid}", "ServiceID": sid,
                       "Status": "critical", "Output": "", "Notes": "upgrade"})
    return {"Node": {"Node": f"node-{sid}", "Address": address},
            "Service": {"ID": sid, "Service": "Asterisk", "Address": address, "Port": port,
                        "Meta": dict(meta or {}),
                        "Weights": {"Passing": weights[0], "Warning": weights[1]}},
            "Checks": checks}


def lines(entries):
    """{service id: (flags, {attr: value})} of the rendered list."""
    out = {}
    for line in handler.render(entries).splitlines():
        if line.startswith("#"):
            continue
        _setid, _uri, flags, _priority, attrs = line.split()
        pairs = dict(a.split("=", 1) for a in attrs.split(";"))
        out[pairs["duid"]] = (int(flags), pairs)
    return out


def test_passing_boxes_are_routed_with_their_meta_weight_when_weights_are_consul_defaults():
    got = lines([entry("a", "10.0.0.1", meta={"weight": "1"}),
                 entry("b", "10.0.0.2", meta={"weight": "3"})])
    assert got["a"] == (0, {"duid": "a", "rweight": "1", "health": "passing"})
    assert got["b"][1]["rweight"] == "3"


def test_consul_weights_win_over_meta_weight():
    got = lines([entry("a", "10.0.0.1", weights=(10, 2), meta={"weight": "1"})])
    assert got["a"][1]["rweight"] == "10"


def test_warning_box_is_routed_with_its_warning_weight():
    got = lines([entry("a", "10.0.0.1", status="warning", weights=(10, 2)),
                 entry("b", "10.0.0.2", status="warning", meta={"weight": "5"})])
    assert got["a"] == (0, {"duid": "a", "rweight": "2", "health": "warning"})
    # Meta weight is the passing weight only; a warning box falls back to Consul's 1.
    assert got["b"][1]["rweight"] == "1"


def test_critical_maintenance_and_draining_boxes_are_listed_disabled():
    got = lines([entry("dead", "10.0.0.1", status="critical"),
                 entry("maint", "10.0.0.2", maintenance=True),
                 entry("drain", "10.0.0.3", output="HTTP GET ...: 200 OK Output: draining"),
                 entry("drain2", "10.0.0.4", status="warning", notes="Draining for upgrade")])
    assert {sid: (flags, a["health"]) for sid, (flags, a) in got.items()} == {
        "dead": (4, "critical"), "maint": (4, "maintenance"), "drain": (4, "draining"),
        "drain2": (4, "draining")}
    assert all("rweight" not in a for _f, a in got.values())


def test_a_critical_node_check_takes_its_boxes_out():
    dead_node = entry("a", "10.0.0.1")
    dead_node["Checks"][0]["Status"] = "critical"
    assert lines([dead_node])["a"][0] == 4


def test_weights_over_100_are_scaled_into_kamailios_range():
    got = lines([entry("a", "10.0.0.1", weights=(1000, 1)), entry("b", "10.0.0.2",
                                                                  weights=(250, 1))])
    assert (got["a"][1]["rweight"], got["b"][1]["rweight"]) == ("100", "25")


def test_two_registrations_on_one_address_are_two_lines():
    text = handler.render([entry("old", "10.0.0.1", status="critical"),
                           entry("new", "10.0.0.1")])
    assert text.count("sip:10.0.0.1:5060") == 2


def test_no_instance_renders_an_empty_list(tmp_path):
    listing = tmp_path / "dispatcher.list"
    proc = subprocess.run([sys.executable, str(HANDLER), "--list", str(listing), "--no-reload"],
                          input="[]", capture_output=True, text=True, check=True)
    assert [l for l in listing.read_text().splitlines() if not l.startswith("#")] == []
    assert "0 instance(s)" in proc.stdout


def test_the_list_file_is_written_for_kamailio(tmp_path):
    listing = tmp_path / "dispatcher.list"
    subprocess.run([sys.executable, str(HANDLER), "--list", str(listing), "--no-reload"],
                   input=json.dumps([entry("a", "10.0.0.1", meta={"weight": "2"})]),
                   capture_output=True, text=True, check=True)
    assert "1 sip:10.0.0.1:5060 0 0 duid=a;rweight=2;health=passing" in listing.read_text()


def test_a_transport_is_routed_to_the_address_and_port_its_tagged_address_names():
    tcp_box = entry("a", "10.0.0.1")
    tcp_box["Service"]["TaggedAddresses"] = {
        "sip_udp": {"Address": "10.0.0.1", "Port": 5060},
        "sip_tcp": {"Address": "10.0.0.1", "Port": 5080}}
    udp_only = entry("b", "10.0.0.2")
    udp_only["Service"]["TaggedAddresses"] = {"sip_udp": {"Address": "10.0.0.2", "Port": 5060}}
    uris = [line.split()[1] for line in handler.render([tcp_box, udp_only], transport="tcp")
            .splitlines() if not line.startswith("#")]
    assert uris == ["sip:10.0.0.1:5080;transport=tcp"], "a box without TCP is not listed"
    udp = [line.split()[1] for line in handler.render([tcp_box, udp_only]).splitlines()
           if not line.startswith("#")]
    assert udp == ["sip:10.0.0.1:5060", "sip:10.0.0.2:5060"]
