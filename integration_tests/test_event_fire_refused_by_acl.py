"""A user event the agent refuses (a token that may register but not fire events): said once,
not retried, and the registration stands. Moved from tests/test_events.py: it needs a token
scoped by an ACL policy, which only a real agent's ACL system makes."""

from __future__ import annotations

import base64
import json
import logging
import time

from integration_tests.testbed.registrar_kit import settings_for, started



def events_named(agent_proc, name):
    """[(payload dict, event)] of GET /v1/event/list?name=<name>, oldest first."""
    r = agent_proc.get("/v1/event/list", params={"name": name})
    r.raise_for_status()
    return [(json.loads(base64.b64decode(e["Payload"])), e) for e in r.json() or []]


def _scoped_token(agent_proc, rules):
    policy = agent_proc.put("/v1/acl/policy", json={"Name": "p-%d" % time.monotonic_ns(),
                                                      "Rules": rules})
    policy.raise_for_status()
    token = agent_proc.put("/v1/acl/token", json={"Policies": [{"ID": policy.json()["ID"]}]})
    token.raise_for_status()
    return token.json()["SecretID"]


def test_a_refused_fire_is_logged_once_not_retried_and_registration_stands(
        consul_factory, make_registrar, events, caplog, wait_until):
    agent_proc = consul_factory(acl=True)
    token = _scoped_token(agent_proc, 'service_prefix "" { policy = "write" }\n'
                                      'node_prefix "" { policy = "read" }\n')
    caplog.set_level(logging.DEBUG, logger="asterisk_consul.registrar")
    registrar = started(make_registrar(settings_for(agent_proc.http_port, events=True,
                                                    token=token)))
    events.wait_for("DiscoveryRegister")
    wait_until(lambda: registrar.status().events_failed == 1, what="one failed fire")
    assert registrar.set_maintenance(True, "x", timeout=2).ok  # Consul took the change
    wait_until(lambda: registrar.status().events_failed == 2, what="two failed fires")
    time.sleep(1.0)  # several resyncs (300 ms): nothing is fired again
    status = registrar.status()
    assert status.registered and status.last_error == ""
    assert status.events_failed == 2 and status.events_fired == 0
    assert "permission denied" in status.last_event_error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "not fired" in r.getMessage()]
    assert len(warnings) == 2 and all("not retried" in w for w in warnings)
    assert token not in caplog.text
    assert "pbx-1" in agent_proc.services()
    assert events_named(agent_proc, "asterisk-register") == []
