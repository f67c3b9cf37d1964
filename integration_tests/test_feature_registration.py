"""Registration: what lands in Consul is what the config says, on Asterisk 16 and 22."""

import re
import socket
import time
import uuid
from datetime import datetime

import pytest

from integration_tests import discovery as d

PROFILE = {"group": "edge-a", "priority": 2, "weight": 150, "max_calls": 480, "flags": 3}


def check_poll_times(ast, since=0):
    """Timestamps (s) of the EID check requests Asterisk's HTTP server received."""
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\].*HTTP Request URI is "
                        r"\S*/res_discovery_consul/check_eid", ast.log_text(since), re.M)
    return [datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f").timestamp() for s in stamps]


@pytest.mark.parametrize("prefix", [None, "pbx"], ids=["no-prefix", "prefix"])
def test_every_registered_field_is_as_configured_and_the_check_passes(
        asterisk_factory, ast_version, module_so, consul_agent, prefix):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so, http_prefix=prefix)
    d.write_conf(ast, consul_agent, id="edge-1", name="pbx-edge", tags="sip, edge ,blue",
                 discovery_port=5080, scheme="http", metadata_profile="east",
                 extra_sections={"metadata_east": PROFILE})
    with d.ami(ast) as ami:
        d.load(ast)
        event = d.wait_event(ami, "DiscoveryRegister")
    assert (event["ID"], event["Name"], event["Address"], event["Port"]) == \
        ("edge-1", "pbx-edge", "127.0.0.1", "5080")

    service = d.wait_service(consul_agent, "edge-1")
    assert service["Service"] == "pbx-edge"
    assert service["Tags"] == ["sip", "edge", "blue"]  # a list, not one "sip, edge ,blue" tag
    assert (service["Address"], service["Port"]) == ("127.0.0.1", 5080)
    version = ast.rx("core show version").split()[1]
    assert service["Meta"] == {
        "eid": ast.eid, "asterisk_version": version,
        "ari_port": str(ast.http_port), "ari_scheme": "http",
        "group": "edge-a", "priority": "2", "weight": "150", "max_calls": "480", "flags": "3"}

    checks = d.wait_health(consul_agent, "pbx-edge", "edge-1", "passing")
    [check] = checks
    path = ("/pbx" if prefix else "") + "/res_discovery_consul/check_eid"
    assert check["CheckID"] == "check-asterisk-eid-edge-1"
    assert check["Name"] == "Asterisk Instance EID Verification"
    # The URL Consul polls carries the instance EID (not the service ID) and http.conf's prefix.
    assert check["Output"].startswith(
        "HTTP GET http://127.0.0.1:%d%s?expected_eid=%s: 200 OK" % (ast.http_port, path, ast.eid))

    # check_interval = 1s: Consul polls about every second (the default is 15s).
    d.wait_until(lambda: len(check_poll_times(ast)) >= 3, timeout=6, interval=0.1,
                 what="three check polls")
    times = check_poll_times(ast)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(0.7 < gap < 2.0 for gap in gaps), gaps


def test_default_id_is_the_eid_and_name_auto_is_the_host_name(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent, name="auto", check="no")
    service = d.wait_service(consul_agent, ast.eid)
    assert service["Service"] == socket.gethostname()
    assert service["Tags"] == ["asterisk"] and service["Port"] == 5060
    assert d.check_of(consul_agent, ast.eid) is None  # check = no

    # id = asterisk says the same explicitly.
    d.write_conf(ast, consul_agent, id="asterisk", name="auto", check="no")
    assert "reloaded" in ast.rx("module reload " + d.MODULE).lower()
    settings = ast.rx("discovery show settings")
    assert re.search(r"^\s+id\s+%s\s+res_discovery_consul\.conf:\d+" % re.escape(ast.eid),
                     settings, re.M), settings
    assert list(consul_agent.services()) == [ast.eid]


def _auto_id_service(consul, name):
    def find():
        ids = [s["ID"] for s in consul.services().values() if s["Service"] == name]
        return ids[0] if len(ids) == 1 else ids or None
    return d.wait_until(find, timeout=20.0, interval=0.1, what="one service named " + name)


def test_id_auto_is_kept_across_restarts_and_a_fresh_astdb_makes_a_new_one(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so, modules=[d.MODULE],
                         start=False)
    d.write_conf(ast, consul_agent, id="auto", name="auto-id")
    ast.start()
    first = _auto_id_service(consul_agent, "auto-id")
    assert str(uuid.UUID(first)) == first

    ast.restart()
    assert _auto_id_service(consul_agent, "auto-id") == first
    assert re.search(r"^\s+id\s+%s\s+astdb\s*$" % first, ast.rx("discovery show settings"), re.M)

    ast.stop()
    d.wait_gone(consul_agent, first, timeout=2)
    for db in (ast.host_dir / "db").iterdir():
        db.unlink()
    ast.start()
    second = _auto_id_service(consul_agent, "auto-id")
    assert second != first and str(uuid.UUID(second)) == second


def test_discovery_ip_auto_takes_the_address_of_discovery_interface(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent,
                  discovery_ip="auto", discovery_interface="lo")
    assert d.wait_service(consul_agent, ast.eid)["Address"] == "127.0.0.1"
    assert re.search(r"^\s+discovery_ip\s+127\.0\.0\.1\s+res_discovery_consul\.conf:\d+ "
                     r"\(auto, interface lo\)", ast.rx("discovery show settings"), re.M)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")


def test_token_is_accepted_by_an_acl_agent_and_never_shown(
        asterisk_factory, ast_version, module_so, consul_factory):
    consul = consul_factory(acl=True)
    token = consul.master_token
    ast = d.start(asterisk_factory, ast_version, module_so, consul, token=token)
    d.wait_service(consul, ast.eid)
    d.wait_health(consul, "Asterisk", ast.eid, "passing")
    assert "is set (Consul accepted it)" in ast.rx("discovery set maintenance on token test")
    d.wait_health(consul, "Asterisk", ast.eid, "critical")
    assert "is unset (Consul accepted it)" in ast.rx("discovery set maintenance off")

    settings = ast.rx("discovery show settings")
    assert re.search(r"^\s+token\s+\(set, 36 chars\)\s+res_discovery_consul\.conf:\d+",
                     settings, re.M), settings
    status = ast.rx("discovery show status")
    assert "(reachable, Consul 1.8.7)" in status, status
    for text in (settings, status, ast.log_text()):  # the log is at debug level 5
        assert token not in text


def test_token_file_is_read_and_without_a_token_the_acl_agent_refuses(
        asterisk_factory, ast_version, module_so, consul_factory):
    consul = consul_factory(acl=True)
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul, check="no")
    d.load(ast)
    ast.wait_log(r"WARNING.*Consul: .*(403|[Pp]ermission denied)")
    assert ast.eid not in consul.services()
    status = ast.rx("discovery show status")
    assert re.search(r"Registered:\s+no$", status, re.M), status
    assert re.search(r"Last error:\s+.*permission denied", status), status

    (ast.etc_dir / "consul.token").write_text(consul.master_token + "\n")
    d.write_conf(ast, consul, check="no", token_file="consul.token")
    assert "reloaded" in ast.rx("module reload " + d.MODULE).lower()
    d.wait_service(consul, ast.eid)
    assert d.check_of(consul, ast.eid) is None  # check = no
    settings = ast.rx("discovery show settings")
    assert re.search(r"^\s+token\s+\(set, 36 chars\)\s+res_discovery_consul\.conf:\d+ "
                     r"\(token_file \S+consul\.token\)", settings, re.M), settings
    assert consul.master_token not in settings + ast.log_text()


def test_resync_puts_back_a_service_removed_behind_its_back(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent, check="no",
                  resync_interval="1s")
    d.wait_service(consul_agent, ast.eid)
    since = ast.log_offset()
    began = time.monotonic()
    consul_agent.put("/v1/agent/service/deregister/" + ast.eid).raise_for_status()
    d.wait_service(consul_agent, ast.eid, timeout=5)
    assert time.monotonic() - began < 4
    ast.wait_log(r"drifted|no longer knows", since=since)
