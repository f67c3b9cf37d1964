"""Consul user events: fired by the registrar after Consul accepted a change (against the
fake agent; a fire an ACL policy refuses: integration_tests/test_event_fire_refused_by_acl.py)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from integration_tests.testbed.registrar_kit import FACTS, settings_for, started



def events_named(agent_proc, name):
    """[(payload dict, event)] of GET /v1/event/list?name=<name>, oldest first."""
    r = agent_proc.get("/v1/event/list", params={"name": name})
    r.raise_for_status()
    return [(json.loads(base64.b64decode(e["Payload"])), e) for e in r.json() or []]


def wait_events(agent_proc, name, count, wait_until):
    return wait_until(lambda: len(events_named(agent_proc, name)) >= count and
                      events_named(agent_proc, name), timeout=10, what=f"{count}x {name}")


def payload(maintenance=False, service_id="pbx-1", port=5060):
    return {"id": service_id, "name": "Asterisk", "eid": FACTS.eid, "address": "127.0.0.1",
            "port": port, "version": FACTS.version, "maintenance": maintenance}


def test_register_maintenance_and_deregister_fire_events(fake_agent, make_registrar, events,
                                                         wait_until):
    registrar = started(make_registrar(settings_for(fake_agent.http_port, events=True)))
    events.wait_for("DiscoveryRegister")
    [(body, event)] = wait_events(fake_agent, "asterisk-register", 1, wait_until)
    assert body == payload()
    assert event["Name"] == "asterisk-register"

    assert registrar.set_maintenance(True, "upgrade", timeout=2).ok
    assert registrar.set_maintenance(False, timeout=2).ok
    fired = wait_events(fake_agent, "asterisk-maintenance", 2, wait_until)
    assert [b for b, _ in fired] == [payload(maintenance=True), payload(maintenance=False)]

    registrar.stop(deregister=True, timeout=2)
    [(body, _)] = wait_events(fake_agent, "asterisk-deregister", 1, wait_until)
    assert body == payload()
    status = registrar.status()
    assert status.events and status.events_fired == 4 and status.events_failed == 0
    assert status.last_event.startswith("asterisk-deregister at ")


def test_no_events_unless_enabled(fake_agent, make_registrar, events):
    registrar = started(make_registrar(settings_for(fake_agent.http_port)))
    events.wait_for("DiscoveryRegister")
    assert registrar.set_maintenance(True, "x", timeout=2).ok
    registrar.stop(deregister=True, timeout=2)
    r = fake_agent.get("/v1/event/list")
    assert r.json() in (None, [])
    assert not registrar.status().events


def test_event_names_are_configurable(fake_agent, make_registrar, events, wait_until):
    settings = settings_for(fake_agent.http_port, events=True, event_register="pbx-up",
                            event_deregister="pbx-down", event_maintenance="pbx-maint")
    registrar = started(make_registrar(settings))
    wait_events(fake_agent, "pbx-up", 1, wait_until)
    assert registrar.set_maintenance(True, "x", timeout=2).ok
    wait_events(fake_agent, "pbx-maint", 1, wait_until)
    registrar.stop(deregister=True, timeout=2)
    wait_events(fake_agent, "pbx-down", 1, wait_until)
    assert events_named(fake_agent, "asterisk-register") == []


def test_no_event_for_a_change_consul_refused(fake_agent, make_registrar, events, wait_until):
    registrar = started(make_registrar(settings_for(fake_agent.http_port, events=True)))
    wait_events(fake_agent, "asterisk-register", 1, wait_until)
    fake_agent.put("/v1/agent/service/deregister/pbx-1").raise_for_status()
    fake_agent.stop()
    assert not registrar.set_maintenance(True, "x", timeout=2).ok  # the agent is down
    fake_agent.start()
    # Back (empty): re-registered under maintenance, one register event, then maintenance.
    wait_events(fake_agent, "asterisk-maintenance", 1, wait_until)
    assert [b["maintenance"] for b, _ in events_named(fake_agent, "asterisk-register")] == [True]


def test_unreachable_agent_drops_events_without_blocking_stop(make_registrar, refused_port):
    registrar = make_registrar(settings_for(refused_port, events=True))
    registrar.notify._queue("register", "pbx-1", "Asterisk", "127.0.0.1", 5060, False)
    began = time.monotonic()
    started(registrar)
    registrar.stop(deregister=True, timeout=1)
    assert time.monotonic() - began < 3
    assert registrar.status().events_failed >= 1


@pytest.mark.parametrize("kind", ["register", "deregister", "maintenance"])
def test_payload_is_compact_json_well_under_consuls_limit(make_registrar, refused_port, kind):
    registrar = make_registrar(settings_for(refused_port, events=True))
    registrar.notify._queue(kind, "x" * 64, "y" * 64, "2001:db8::1", 5060, True)
    [(name, body)] = registrar.notify._pending
    assert name == "asterisk-" + kind
    assert json.loads(body)["maintenance"] is True
    assert len(name) + len(body) < 400  # Consul 1.8.7 refuses 512 bytes after encoding


def test_every_ami_event_fired_carries_exactly_its_documented_headers():
    """Asterisk's help (`manager show event`) is written from AMI_EVENTS: what is fired must
    match it, header for header."""
    import threading
    import types

    from asterisk_consul.registrar.notify import AMI_EVENTS, Notifications

    fired = []
    link = types.SimpleNamespace(silenced=threading.Event(), log=lambda *a: None,
                                 settings=types.SimpleNamespace(events=False))
    notes = Notifications(link, lambda name, headers: fired.append((name, headers)))
    definition = {"ID": "pbx-1", "Name": "Asterisk", "Address": "192.0.2.1", "Port": 5060}
    notes.registered(definition, maintenance=False)
    notes.deregistered("pbx-1", "Asterisk", "192.0.2.1", 5060, maintenance=False)
    notes.maintenance_changed(definition, True, "upgrade")
    notes.maintenance_changed(definition, False, "")
    notes.checks_switched("pbx-1", True)
    notes.drain_changed("pbx-1", True, "rolling restart")
    notes.drain_changed("pbx-1", False, "")
    notes.drained("pbx-1", "rolling restart", 0.0)
    notes.kv_conflict("pbx-1", "asterisk/pbx-1/sip", "4f1e-session", "other-box")
    notes.token_rejected("pbx-1", "ACL not found")

    assert {name for name, _ in fired} == set(AMI_EVENTS)
    for name, headers in fired:
        documented = [header for header, _ in AMI_EVENTS[name][1]]
        sent = [header for header, _ in headers]
        assert sent == [h for h in documented if h in sent], (name, sent, documented)
        optional = {"Reason"} if name in ("DiscoverySetMaintenance", "DiscoverySetDrain") else set()
        assert set(documented) - set(sent) <= optional, (name, sent, documented)
