"""Consul events: on Asterisk 16 and 22 against a real Consul agent, the events
the module fires are read back with GET /v1/event/list?name=… (payload base64-decoded)."""

import base64
import json
import re

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.resilience import status_row


def fired(consul, name):
    """Payloads (decoded JSON) of the events called name the agent has seen, oldest first."""
    answer = consul.get("/v1/event/list", params={"name": name})
    answer.raise_for_status()
    return [json.loads(base64.b64decode(e["Payload"])) for e in answer.json() or []]


def wait_fired(consul, name, count):
    return d.wait_until(lambda: len(fired(consul, name)) >= count and fired(consul, name),
                        timeout=10, interval=0.1,
                        what="%d event(s) %s" % (count, name))


def test_register_maintenance_and_unload_fire_consul_events(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, id="edge-7", name="pbx-edge", discovery_port=5080,
                 check="no", events="yes")
    with d.ami(ast) as ami:
        d.load(ast)
        d.wait_event(ami, "DiscoveryRegister")
    version = ast.rx("core show version").split()[1]
    expected = {"id": "edge-7", "name": "pbx-edge", "eid": ast.eid, "address": "127.0.0.1",
                "port": 5080, "version": version, "maintenance": False}
    assert wait_fired(consul_agent, "asterisk-register", 1) == [expected]

    assert "is set (Consul accepted it)" in ast.rx("discovery set maintenance on upgrade")
    assert "is unset (Consul accepted it)" in ast.rx("discovery set maintenance off")
    assert wait_fired(consul_agent, "asterisk-maintenance", 2) == [
        dict(expected, maintenance=True), expected]

    settings = ast.rx("discovery show settings")
    assert re.search(r"^\s+events\s+yes\s+res_discovery_consul\.conf:%d\s*$"
                     % d.conf_line(ast, "events"), settings, re.M), settings
    assert re.search(r"^\s+event_register\s+asterisk-register\s+default\s*$", settings, re.M)
    status = ast.rx("discovery show status")
    assert re.match(r"on: 3 fired, 0 failed; last: asterisk-maintenance at \d\d:\d\d:\d\d$",
                    status_row(status, "Events")), status

    r.unload(ast)
    assert wait_fired(consul_agent, "asterisk-deregister", 1) == [expected]
    assert len(fired(consul_agent, "asterisk-register")) == 1  # no duplicates along the way


def test_custom_names_and_no_events_by_default(asterisk_factory, ast_version, module_so,
                                               consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent, check="no")
    d.wait_service(consul_agent, ast.eid)
    assert "Events" not in ast.rx("discovery show status")
    assert re.search(r"^\s+events\s+no\s+default\s*$", ast.rx("discovery show settings"), re.M)

    d.write_conf(ast, consul_agent, check="no", events="yes", event_register="pbx.up",
                 event_maintenance="pbx.maint", event_deregister="pbx.down", name="renamed")
    assert "reloaded" in ast.rx("module reload " + d.MODULE).lower()
    assert wait_fired(consul_agent, "pbx.up", 1)[0]["name"] == "renamed"
    assert "is set (Consul accepted it)" in ast.rx("discovery set maintenance on x")
    assert wait_fired(consul_agent, "pbx.maint", 1)[0]["maintenance"] is True
    r.unload(ast)
    assert wait_fired(consul_agent, "pbx.down", 1)[0]["id"] == ast.eid
    for name in ("asterisk-register", "asterisk-maintenance", "asterisk-deregister"):
        assert fired(consul_agent, name) == []

    # A reserved name refuses the load, naming option and value.
    d.write_conf(ast, consul_agent, check="no", events="yes", event_register="_internal")
    log = d.load_declined(ast)
    assert re.search(r"\[consul\] event_register = '_internal': must not start with '_'", log)
