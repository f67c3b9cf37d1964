"""The registrar's health checks and KV keys against a real Consul agent: the TTL check that follows
Asterisk's state, `discovery set check on|off` without re-registering the service, the HTTPS
EID check options, and the [kv] keys held by a Consul session."""

from __future__ import annotations

import base64
import copy
import dataclasses
import re
import threading
import time

from asterisk_consul.health import AsteriskState
from asterisk_consul.registrar import Result, consul_client
from asterisk_consul.render import show_status_text
from tests.standin import StatusView
from integration_tests.test_registrar_with_consul import gaps_in_registration
from integration_tests.testbed.registrar_kit import FACTS, settings_for, started

EID_CHECK = "check-asterisk-eid-pbx-1"
TTL_CHECK = "check-asterisk-ttl-pbx-1"
BOOTED = f"Asterisk 22.1.0 is fully booted (EID {FACTS.eid})"
STARTING = "Asterisk 22.1.0 is starting: not fully booted yet"
STOPPING = "Asterisk 22.1.0 is shutting down"
SESSION_NAME = "res_discovery_consul:pbx-1"
ROLE, SIP = "asterisk/pbx-1/role", "asterisk/pbx-1/sip"
KV = (("role", "edge ${NAME}"), ("sip", "${ADDRESS}:${PORT}"))


class HostState:
    """A host_state the test drives: Asterisk booted or not, shutting down, its channels."""

    def __init__(self, booted=True):
        self.booted = booted
        self.shutting_down = False
        self.stop_requested = False
        self.channels = 0

    def __call__(self):
        return AsteriskState(booted=self.booted, shutting_down=self.shutting_down,
                             stop_requested=self.stop_requested or self.shutting_down,
                             channels=self.channels)


class RecordingConsul:
    """A consul_factory whose clients record what they register with the agent."""

    def __init__(self):
        self.services = []  # bodies of PUT /v1/agent/service/register
        self.checks = []    # bodies of PUT /v1/agent/check/register
        self.updates = []   # (check ID, status, output) of PUT /v1/agent/check/update
        self._lock = threading.Lock()

    def __call__(self, settings):
        consul = consul_client(settings)
        consul.agent.service.register = self._recorded(consul.agent.service.register,
                                                       self.services)
        consul.agent.check.register = self._recorded(consul.agent.check.register, self.checks)
        update = consul.agent.check.update

        def recorded_update(check_id, status, output="", **kwargs):
            with self._lock:
                self.updates.append((check_id, status, output))
            return update(check_id, status, output, **kwargs)
        consul.agent.check.update = recorded_update
        return consul

    def _recorded(self, call, into):
        def record(definition, *args, **kwargs):
            with self._lock:
                into.append(copy.deepcopy(definition))
            return call(definition, *args, **kwargs)
        return record


def ttl_settings(agent, **overrides):
    base = dict(check=True, check_type="ttl", check_ttl="3s", resync_interval="1s")
    base.update(overrides)
    return settings_for(agent.http_port, **base)


def wait_check(agent, check_id, status, output, wait_until, timeout=10):
    """The agent's check once it has this status and output."""
    def reached():
        check = agent.checks().get(check_id)
        return check if check and (check["Status"], check["Output"]) == (status, output) else None
    return wait_until(reached, timeout=timeout, what=f"{check_id} {status}: {output}")


def wait_newer_sync(registrar, wait_until, result="ok, in sync"):
    """Wait for a resync that starts after this call and ends with `result`."""
    since = time.time()
    return wait_until(lambda: (s := registrar.status(2.0)).last_sync and s.last_sync > since
                      and s.last_sync_result == result and s, timeout=10,
                      what=f"a resync ending '{result}'")


def catalog_entry(agent, service_id="pbx-1"):
    entries = agent.get("/v1/catalog/service/Asterisk").json() or []
    return next((e for e in entries if e["ServiceID"] == service_id), None)


def catalog_check_ids(agent):
    return {c["CheckID"] for c in agent.get("/v1/health/checks/Asterisk").json() or []}


# -- the TTL check -----------------------------------------------------------------------------

def test_ttl_check_follows_asterisks_state(consul_agent, make_registrar, events, wait_until):
    """Registered as warning while Asterisk boots, passing once booted, critical at shutdown."""
    state, calls = HostState(booted=False), RecordingConsul()
    registrar = started(make_registrar(ttl_settings(consul_agent), host_state=state,
                                       consul_factory=calls))
    events.wait_for("DiscoveryRegister")
    [registered] = calls.services[0]["Checks"]
    assert (registered["CheckID"], registered["TTL"], registered["Status"]) == \
        (TTL_CHECK, "3s", "warning")  # the state of that moment, not critical

    check = wait_check(consul_agent, TTL_CHECK, "warning", STARTING, wait_until)
    assert check["Name"] == "Asterisk Instance Liveness" and check["Type"] == "ttl"
    assert check["ServiceID"] == "pbx-1" and "res_discovery_consul" in check["Notes"]

    state.booted = True
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until, timeout=5)
    status = wait_until(lambda: (s := registrar.status(2.0)).checks[0][2] == "passing" and s,
                        timeout=5, what="passing in the status")
    assert status.checks == (("ttl", TTL_CHECK, "passing", BOOTED),)
    assert status.checks_on and status.check_type == "ttl" and status.checks_set_by == "config"
    assert status.ttl_error == "" and status.health == "passing"

    state.shutting_down = True
    wait_check(consul_agent, TTL_CHECK, "critical", STOPPING, wait_until, timeout=5)
    assert registrar.status(2.0).health == "critical"


def test_ttl_check_starts_passing_and_stays_so_past_its_ttl(consul_agent, make_registrar,
                                                            events, wait_until):
    """Reported every third of the TTL: Consul never lets it expire while Asterisk is up."""
    calls = RecordingConsul()
    started(make_registrar(ttl_settings(consul_agent), host_state=HostState(booted=True),
                           consul_factory=calls))
    events.wait_for("DiscoveryRegister")
    assert calls.services[0]["Checks"][0]["Status"] == "passing"
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until)
    seen = set()
    until = time.monotonic() + 4.5  # longer than the 3 s TTL
    while time.monotonic() < until:
        seen.add(consul_agent.checks()[TTL_CHECK]["Status"])
        time.sleep(0.2)
    assert seen == {"passing"}


def test_ttl_check_removed_from_the_agent_comes_back(consul_agent, make_registrar, wait_until):
    """Someone deregisters the TTL check: the resync registers it again, reported passing."""
    started(make_registrar(ttl_settings(consul_agent)))
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until)
    consul_agent.put(f"/v1/agent/check/deregister/{TTL_CHECK}").raise_for_status()
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until)
    assert "pbx-1" in consul_agent.services()


def test_ttl_check_removed_comes_back_before_the_next_resync(consul_agent, make_registrar,
                                                             wait_until):
    """The TTL report (every second here) is what notices a check the agent lost, not the
    resync (1 h here). Consul 1.8.7 answers the update of an unknown check with a 500
    'CheckID "..." does not have associated TTL', not a 404."""
    registrar = started(make_registrar(ttl_settings(consul_agent, resync_interval="1h")))
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until)
    consul_agent.put(f"/v1/agent/check/deregister/{TTL_CHECK}").raise_for_status()
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until, timeout=8)
    assert registrar.status(2.0).ttl_error == ""


def test_ttl_check_comes_back_after_an_agent_restart(consul_agent, make_registrar, events,
                                                     wait_until):
    """A restarted (empty) agent gets the service and the TTL check again, in the current state."""
    state = HostState(booted=False)
    started(make_registrar(ttl_settings(consul_agent), host_state=state))
    wait_check(consul_agent, TTL_CHECK, "warning", STARTING, wait_until)
    consul_agent.restart()  # a dev agent comes back empty
    state.booted = True
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until)
    assert events.names().count("DiscoveryRegister") == 2


def test_both_checks_register_http_then_ttl(consul_agent, make_registrar, events, refused_port,
                                            wait_until):
    """check_type = both: the EID check and the TTL check, each with its own status and output."""
    registrar = started(make_registrar(ttl_settings(consul_agent, check_type="both",
                                                    check_http_port=refused_port,
                                                    check_interval="1s")))
    events.wait_for("DiscoveryRegister")
    checks = consul_agent.checks()
    assert (checks[EID_CHECK]["Type"], checks[TTL_CHECK]["Type"]) == ("http", "ttl")
    status = wait_until(lambda: (s := registrar.status(2.0)).checks[0][3]
                        and s.checks[1][3] == BOOTED and s, what="both outputs")
    assert [(kind, cid, state) for kind, cid, state, _ in status.checks] == \
        [("http", EID_CHECK, "critical"), ("ttl", TTL_CHECK, "passing")]
    assert status.health == "critical"


# -- the HTTPS EID check -----------------------------------------------------------------------

def test_https_eid_check_is_polled_over_https(consul_agent, make_registrar, events,
                                              refused_port, wait_until):
    """check_scheme = https: Consul polls the EID URL over https (TLSSkipVerify is accepted)."""
    settings = settings_for(consul_agent.http_port, check=True, check_scheme="https",
                            check_http_port=refused_port, check_tls_skip_verify=True,
                            check_interval="1s", check_timeout="500ms")
    started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    url = f"https://127.0.0.1:{refused_port}/res_discovery_consul/check_eid"
    check = wait_until(lambda: url in consul_agent.checks()[EID_CHECK]["Output"]
                       and consul_agent.checks()[EID_CHECK], what="an https check output")
    assert check["Status"] == "critical" and check["Type"] == "http"


def test_check_tls_server_name_is_refused_by_consul_1_8_7(consul_agent, make_registrar,
                                                          wait_until):
    """As documented: Consul 1.8.7 refuses TLSServerName; the status says so in Last error."""
    settings = settings_for(consul_agent.http_port, check=True, check_scheme="https",
                            check_tls_server_name="pbx.example.net")
    registrar = started(make_registrar(settings))
    status = wait_until(lambda: (s := registrar.status(2.0)).last_error and s,
                        what="a refused registration")
    assert 'unknown field "TLSServerName"' in status.last_error
    assert "400" in status.last_error and not status.registered
    assert "pbx-1" not in consul_agent.services()


# -- discovery set check on|off ----------------------------------------------------------------

def test_set_checks_on_adds_the_checks_without_re_registering(consul_agent, make_registrar,
                                                              events, refused_port, wait_until):
    """The checks are registered on their own: no service registration, no gap, same
    catalog entry."""
    calls = RecordingConsul()
    settings = ttl_settings(consul_agent, check=False, check_type="both",
                            check_http_port=refused_port, check_interval="1s")
    registrar = started(make_registrar(settings, consul_factory=calls))
    events.wait_for("DiscoveryRegister")
    before = wait_until(lambda: catalog_entry(consul_agent), what="the service in the catalog")
    assert not {EID_CHECK, TTL_CHECK} & set(consul_agent.checks())

    with gaps_in_registration(consul_agent) as gaps:
        result = registrar.set_checks(True, 2.0)
    assert result == Result(True, "Health check (both) for service pbx-1 is on "
                                  "(Consul accepted it)")
    assert not gaps
    checks = consul_agent.checks()
    assert checks[EID_CHECK]["ServiceID"] == checks[TTL_CHECK]["ServiceID"] == "pbx-1"
    assert len(calls.services) == 1  # the service was not registered again
    # Each with the status true now (Asterisk booted, idle): routable at once.
    assert [(c["ID"], c["ServiceID"], c.get("Status")) for c in calls.checks] == \
        [(EID_CHECK, "pbx-1", "passing"), (TTL_CHECK, "pbx-1", "passing")]
    assert events.wait_for("DiscoverySetCheck") == {"ID": "pbx-1", "Check": "on"}

    status = registrar.status(2.0)
    assert status.checks_on and status.checks_set_by == "discovery set check"
    assert [c[1] for c in status.checks] == [EID_CHECK, TTL_CHECK]
    wait_until(lambda: {EID_CHECK, TTL_CHECK} <= catalog_check_ids(consul_agent),
               what="the checks in the catalog")
    assert catalog_entry(consul_agent)["ModifyIndex"] == before["ModifyIndex"]

    wait_newer_sync(registrar, wait_until)  # a resync finds the checks as wanted
    assert events.names().count("DiscoveryRegister") == 1 and len(calls.services) == 1
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until)


def test_set_checks_off_removes_the_checks_without_re_registering(consul_agent, make_registrar,
                                                                  events, refused_port,
                                                                  wait_until):
    """The checks are deregistered on their own; a second 'off' changes nothing and says nothing."""
    calls = RecordingConsul()
    settings = ttl_settings(consul_agent, check_type="both", check_http_port=refused_port)
    registrar = started(make_registrar(settings, consul_factory=calls))
    events.wait_for("DiscoveryRegister")
    assert {EID_CHECK, TTL_CHECK} <= set(consul_agent.checks())

    with gaps_in_registration(consul_agent) as gaps:
        result = registrar.set_checks(False, 2.0)
    assert result == Result(True, "Health check (all) for service pbx-1 is off "
                                  "(Consul accepted it)")
    assert not gaps
    assert not {EID_CHECK, TTL_CHECK} & set(consul_agent.checks())
    assert events.wait_for("DiscoverySetCheck") == {"ID": "pbx-1", "Check": "off"}
    status = registrar.status(2.0)
    assert not status.checks_on and status.checks == ()
    assert status.checks_set_by == "discovery set check"

    assert registrar.set_checks(False, 2.0).ok  # already off: no second event
    wait_newer_sync(registrar, wait_until)
    assert not {EID_CHECK, TTL_CHECK} & set(consul_agent.checks())
    assert events.names().count("DiscoverySetCheck") == 1
    assert events.names().count("DiscoveryRegister") == 1 and len(calls.services) == 1


def test_set_checks_on_registers_the_ttl_check_in_asterisks_current_state(
        consul_agent, make_registrar, events, wait_until):
    """Switched on while Asterisk boots: the TTL check starts as warning, not critical."""
    calls = RecordingConsul()
    registrar = started(make_registrar(ttl_settings(consul_agent, check=False),
                                       host_state=HostState(booted=False), consul_factory=calls))
    events.wait_for("DiscoveryRegister")
    assert registrar.set_checks(True, 2.0) == \
        Result(True, "Health check (ttl) for service pbx-1 is on (Consul accepted it)")
    assert [(c["ID"], c["Status"]) for c in calls.checks] == [(TTL_CHECK, "warning")]
    wait_check(consul_agent, TTL_CHECK, "warning", STARTING, wait_until)


def test_set_checks_off_is_kept_across_a_reload_of_other_options(consul_agent, make_registrar,
                                                                 events, wait_until):
    """A reload that changes only the tags re-registers without the checks switched off."""
    settings = ttl_settings(consul_agent)
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    assert registrar.set_checks(False, 2.0).ok
    registrar.apply(dataclasses.replace(settings, tags=("asterisk", "reloaded")))
    events.wait_for("DiscoveryRegister", count=2)
    assert consul_agent.services()["pbx-1"]["Tags"] == ["asterisk", "reloaded"]
    assert TTL_CHECK not in consul_agent.checks()
    wait_newer_sync(registrar, wait_until)
    status = registrar.status(2.0)
    assert not status.checks_on and status.checks_set_by == "discovery set check"
    assert TTL_CHECK not in consul_agent.checks()


def test_set_checks_off_is_dropped_when_a_check_option_changes(consul_agent, make_registrar,
                                                               events, wait_until):
    """A reload changing check_interval hands the checks back to the config."""
    settings = ttl_settings(consul_agent)
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    assert registrar.set_checks(False, 2.0).ok
    assert TTL_CHECK not in consul_agent.checks()
    registrar.apply(dataclasses.replace(settings, check_interval="20s"))
    events.wait_for("DiscoveryRegister", count=2)
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until)
    status = registrar.status(2.0)
    assert status.checks_on and status.checks_set_by == "config"


def test_set_checks_on_is_kept_when_a_resync_re_registers(consul_agent, make_registrar, events,
                                                          wait_until):
    """Someone deregisters the service: the resync registers it with the checks switched on."""
    registrar = started(make_registrar(ttl_settings(consul_agent, check=False)))
    events.wait_for("DiscoveryRegister")
    assert registrar.set_checks(True, 2.0).ok
    consul_agent.put("/v1/agent/service/deregister/pbx-1").raise_for_status()
    events.wait_for("DiscoveryRegister", count=2)
    wait_check(consul_agent, TTL_CHECK, "passing", BOOTED, wait_until)
    status = registrar.status(2.0)
    assert status.checks_on and status.checks_set_by == "discovery set check"


def test_set_checks_off_is_kept_when_a_resync_finds_the_check_back(consul_agent,
                                                                   make_registrar, events,
                                                                   wait_until):
    """Our check registered behind our back while switched off is drift: the resync removes it."""
    registrar = started(make_registrar(ttl_settings(consul_agent)))
    events.wait_for("DiscoveryRegister")
    assert registrar.set_checks(False, 2.0).ok
    consul_agent.put("/v1/agent/check/register",
                     json={"ID": TTL_CHECK, "Name": "Asterisk Instance Liveness",
                           "ServiceID": "pbx-1", "TTL": "1h", "Status": "passing"}
                     ).raise_for_status()
    events.wait_for("DiscoveryRegister", count=2)  # drift: re-registered as wanted, checkless
    wait_until(lambda: TTL_CHECK not in consul_agent.checks(), what="the check gone again")
    status = registrar.status(2.0)
    assert not status.checks_on and status.checks_set_by == "discovery set check"


# -- the [kv] keys -----------------------------------------------------------------------------

def kv_settings(agent, **overrides):
    base = dict(resync_interval="1s", kv_prefix="asterisk/${ID}", kv_session_ttl="10s", kv=KV)
    base.update(overrides)
    return settings_for(agent.http_port, **base)


def kv_tree(agent, prefix="asterisk/"):
    """{key: (value, session)} under prefix."""
    response = agent.get(f"/v1/kv/{prefix}", params={"recurse": "true"})
    if response.status_code == 404:
        return {}
    response.raise_for_status()
    return {item["Key"]: (base64.b64decode(item["Value"] or ""), item.get("Session", ""))
            for item in response.json()}


def wanted_tree(session, prefix="asterisk/pbx-1"):
    return {f"{prefix}/role": (b"edge Asterisk", session),
            f"{prefix}/sip": (b"127.0.0.1:5060", session)}


def wait_kv(agent, wait_until, expected, what="the keys"):
    """Wait until the tree under asterisk/ is `expected` (a callable of the tree, or a dict)."""
    check = expected if callable(expected) else (lambda tree: tree == expected)
    return wait_until(lambda: (tree := kv_tree(agent)) and check(tree) and tree, what=what)


def our_session(tree, key=ROLE):
    return tree[key][1]


def session_info(agent, session_id):
    answer = agent.get(f"/v1/session/info/{session_id}").json()
    return answer[0] if answer else None


def make_session(agent, name, wait_until, lock_delay="15s"):
    """A session of someone else (or of an earlier run). A fresh dev agent refuses sessions
    (500) until its node is in the catalog: asked again until then."""
    body = {"Name": name, "TTL": "60s", "Behavior": "delete", "LockDelay": lock_delay}
    response = wait_until(lambda: (r := agent.put("/v1/session/create", json=body)).ok and r,
                          what="a session from the fresh agent")
    return response.json()["ID"]


def acquire(agent, key, value, session_id):
    response = agent.put(f"/v1/kv/{key}", params={"acquire": session_id}, data=value)
    response.raise_for_status()
    assert response.json() is True


def wait_our_keys(agent, wait_until):
    """The tree once both keys are written and held by one session; and that session."""
    tree = wait_kv(agent, wait_until,
                   lambda t: ROLE in t and t[ROLE][1] and t == wanted_tree(t[ROLE][1]))
    return tree, our_session(tree)


def test_kv_keys_are_written_under_the_prefix_held_by_our_session(consul_agent, make_registrar,
                                                                  events, wait_until):
    """Rendered values under the rendered prefix, held by our session; stop() takes them away."""
    registrar = started(make_registrar(kv_settings(consul_agent)))
    events.wait_for("DiscoveryRegister")
    _, session = wait_our_keys(consul_agent, wait_until)
    info = session_info(consul_agent, session)
    assert info["Name"] == SESSION_NAME and info["Behavior"] == "delete"
    assert info["TTL"] == "10s" and info["LockDelay"] == 0

    status = wait_until(lambda: (s := registrar.status(2.0)).kv_session and s,
                        what="the session in the status")
    assert status.kv_prefix == "asterisk/pbx-1" and status.kv_wanted == 2
    assert status.kv_keys == ((ROLE, "edge Asterisk"), (SIP, "127.0.0.1:5060"))
    assert status.kv_session == session and status.kv_error == ""
    assert status.kv_renewed is not None and status.kv_renewed <= time.time()

    registrar.stop()
    assert kv_tree(consul_agent) == {}
    assert session_info(consul_agent, session) is None


def test_kv_keys_deleted_or_changed_behind_our_back_are_rewritten(consul_agent, make_registrar,
                                                                  wait_until):
    """A deleted key and an edited value are put back by the next resync, in the same session."""
    started(make_registrar(kv_settings(consul_agent)))
    _, session = wait_our_keys(consul_agent, wait_until)
    consul_agent.delete(f"/v1/kv/{ROLE}").raise_for_status()
    consul_agent.put(f"/v1/kv/{SIP}", data=b"tampered").raise_for_status()
    assert kv_tree(consul_agent)[SIP][0] == b"tampered"
    wait_kv(consul_agent, wait_until, wanted_tree(session), what="the keys rewritten")


def test_kv_reload_deletes_removed_keys_and_writes_new_ones(consul_agent, make_registrar,
                                                            events, wait_until):
    """A reload changes, deletes and adds keys in the same session, without re-registering."""
    settings = kv_settings(consul_agent)
    registrar = started(make_registrar(settings))
    _, session = wait_our_keys(consul_agent, wait_until)
    registrar.apply(dataclasses.replace(settings, kv=(("role", "core ${NAME}"),
                                                      ("eid", "${EID}"))))
    wait_kv(consul_agent, wait_until, {ROLE: (b"core Asterisk", session),
                                       "asterisk/pbx-1/eid": (FACTS.eid.encode(), session)},
            what="one key changed, one removed, one added")
    assert events.names().count("DiscoveryRegister") == 1  # KV is not the registration
    status = registrar.status(2.0)
    assert status.kv_keys == ((ROLE, "core Asterisk"), ("asterisk/pbx-1/eid", FACTS.eid))


def test_kv_reload_to_another_service_id_moves_keys_and_session(consul_agent, make_registrar,
                                                                wait_until):
    """A new service ID: keys under the new prefix in a new session; the old session and keys go."""
    settings = kv_settings(consul_agent)
    registrar = started(make_registrar(settings))
    _, old_session = wait_our_keys(consul_agent, wait_until)
    registrar.apply(dataclasses.replace(settings, service_id="pbx-2"))
    tree = wait_kv(consul_agent, wait_until,
                   lambda t: set(t) == {"asterisk/pbx-2/role", "asterisk/pbx-2/sip"}
                   and t["asterisk/pbx-2/role"][1], what="the keys under pbx-2")
    session = tree["asterisk/pbx-2/role"][1]
    assert tree == wanted_tree(session, prefix="asterisk/pbx-2") and session != old_session
    assert session_info(consul_agent, session)["Name"] == "res_discovery_consul:pbx-2"
    assert session_info(consul_agent, old_session) is None


def test_kv_key_held_by_a_foreign_session_is_not_written(consul_agent, make_registrar, wait_until):
    """Someone else's key is left alone and reported; the module's other keys are written."""
    foreign = make_session(consul_agent, "other-app", wait_until)
    acquire(consul_agent, SIP, b"theirs", foreign)
    registrar = started(make_registrar(kv_settings(consul_agent)))
    status = wait_until(lambda: (s := registrar.status(2.0)).kv_error and s,
                        what="a KV error in the status")
    assert status.kv_error == (f"KV key {SIP} is held by another Consul session ({foreign}, "
                               f"name other-app): not written")
    wait_newer_sync(registrar, wait_until)  # and at the next resyncs, still not
    tree = kv_tree(consul_agent)
    assert tree[SIP] == (b"theirs", foreign)
    assert tree[ROLE][0] == b"edge Asterisk" and tree[ROLE][1] not in ("", foreign)
    assert session_info(consul_agent, foreign)["Name"] == "other-app"


def test_kv_a_foreign_key_does_not_hold_back_the_keys_after_it(consul_agent, make_registrar,
                                                               wait_until):
    """Only the foreign key is left alone: the keys after it in file order are written."""
    foreign = make_session(consul_agent, "other-app", wait_until)
    acquire(consul_agent, SIP, b"theirs", foreign)
    settings = kv_settings(consul_agent, kv=(("sip", "${ADDRESS}:${PORT}"),
                                             ("role", "edge ${NAME}")))
    registrar = started(make_registrar(settings))
    wait_until(lambda: registrar.status(2.0).kv_error, what="a KV error in the status")
    wait_kv(consul_agent, wait_until, lambda t: t.get(ROLE, (b"",))[0] == b"edge Asterisk",
            what="the key after the foreign one written")
    assert kv_tree(consul_agent)[SIP] == (b"theirs", foreign)


def test_kv_reload_deletes_a_removed_key_while_another_is_foreign(consul_agent, make_registrar,
                                                                  wait_until):
    """A key dropped from [kv] goes, whatever happens to the others (a conflict on one key
    must neither stop the deletes nor make the module forget what its session holds)."""
    foreign = make_session(consul_agent, "other-app", wait_until)
    acquire(consul_agent, SIP, b"theirs", foreign)
    settings = kv_settings(consul_agent)
    registrar = started(make_registrar(settings))
    wait_kv(consul_agent, wait_until, lambda t: t.get(ROLE, (b"",))[0] == b"edge Asterisk")
    wait_until(lambda: registrar.status(2.0).kv_error, what="a KV error in the status")
    registrar.apply(dataclasses.replace(settings, kv=(("sip", "${ADDRESS}:${PORT}"),)))
    wait_kv(consul_agent, wait_until, {SIP: (b"theirs", foreign)}, what="role deleted")


def test_kv_key_held_by_a_stale_session_of_ours_is_taken_over(consul_agent, make_registrar,
                                                              wait_until):
    """A key held by a session with our name (an earlier run) is taken over."""
    stale = make_session(consul_agent, SESSION_NAME, wait_until, lock_delay="0s")  # earlier run
    acquire(consul_agent, ROLE, b"old run", stale)
    registrar = started(make_registrar(kv_settings(consul_agent)))
    _, session = wait_our_keys(consul_agent, wait_until)
    assert session != stale
    assert session_info(consul_agent, stale) is None
    assert registrar.status(2.0).kv_error == ""


def test_kv_session_destroyed_by_someone_gets_a_new_one_and_the_keys_again(
        consul_agent, make_registrar, wait_until):
    """A lost session is replaced and the keys (gone with it) written again."""
    registrar = started(make_registrar(kv_settings(consul_agent)))
    _, session = wait_our_keys(consul_agent, wait_until)
    consul_agent.put(f"/v1/session/destroy/{session}").raise_for_status()
    tree = wait_kv(consul_agent, wait_until,
                   lambda t: ROLE in t and t[ROLE][1] not in ("", session)
                   and t == wanted_tree(t[ROLE][1]), what="the keys under a new session")
    new_session = our_session(tree)
    assert session_info(consul_agent, new_session)["Name"] == SESSION_NAME
    wait_until(lambda: registrar.status(2.0).kv_session == new_session,
               what="the new session in the status")


def test_kv_keys_come_back_after_an_agent_restart(consul_agent, make_registrar, wait_until):
    """A restarted (empty) agent gets a new session and the keys again."""
    started(make_registrar(kv_settings(consul_agent)))
    _, session = wait_our_keys(consul_agent, wait_until)
    consul_agent.restart()  # a dev agent comes back without keys and sessions
    tree = wait_kv(consul_agent, wait_until,
                   lambda t: ROLE in t and t[ROLE][1] and t == wanted_tree(t[ROLE][1]),
                   what="the keys written again")
    assert session_info(consul_agent, our_session(tree))["Name"] == SESSION_NAME


# -- what `discovery show status` makes of it ----------------------------------------------------

def test_status_text_shows_the_ttl_check_the_override_and_the_keys(consul_agent, make_registrar,
                                                                   wait_until):
    """'discovery show status' rows for the check, the TTL output and the KV keys."""
    settings = kv_settings(consul_agent, check=True, check_type="ttl", check_ttl="3s")
    registrar = started(make_registrar(settings))
    _, session = wait_our_keys(consul_agent, wait_until)
    app = StatusView(settings, registrar, 2.0)
    text = wait_until(lambda: BOOTED in (t := show_status_text(app)) and session in t and t,
                      what="the TTL output and the session in the status text")
    assert re.search(r"\n  Check: +on, type ttl \(config\)\n", text)
    assert re.search(rf"\n  TTL check: +{TTL_CHECK}: passing\n    output: +"
                     rf"{re.escape(BOOTED)}\n", text)
    assert re.search(rf"\n  KV: +2 of 2 keys under asterisk/pbx-1/ in Consul \(session "
                     rf"{session}, renewed ", text)
    assert re.search(rf"\n    {ROLE}: +edge Asterisk\n    {SIP}: +127\.0\.0\.1:5060\n", text)
    assert "KV error" not in text

    assert registrar.set_checks(False, 2.0).ok
    text = show_status_text(app)
    assert re.search(r"\n  Check: +off \(set by 'discovery set check off'; kept until the "
                     r"check options change\)\n", text)
    assert "TTL check:" not in text


def other_box_session(agent, name, wait_until, node="other-box"):
    """A live session named as ours, on another node: a second Asterisk with the same `id`
    (its node put into the catalog by hand; the session checks nothing, so it stays)."""
    agent.put("/v1/catalog/register", json={"Node": node, "Address": "127.0.0.2"}
              ).raise_for_status()
    body = {"Name": name, "Node": node, "TTL": "60s", "Behavior": "delete", "LockDelay": "0s",
            "NodeChecks": [], "Checks": []}
    response = wait_until(lambda: (r := agent.put("/v1/session/create", json=body)).ok and r,
                          what="a session on the other node")
    return response.json()["ID"]


def test_kv_key_held_by_another_box_with_the_same_id_is_a_conflict_never_deleted(
        consul_agent, make_registrar, events, wait_until):
    """Two boxes with one `id`: the other box's session (same name, another node) keeps its
    key and lives on; ours says who holds it, in the status and once on AMI; its other keys
    are written."""
    theirs = other_box_session(consul_agent, SESSION_NAME, wait_until)
    acquire(consul_agent, SIP, b"other box", theirs)
    registrar = started(make_registrar(kv_settings(consul_agent)))
    status = wait_until(lambda: (s := registrar.status(2.0)).kv_error and s,
                        what="a KV conflict in the status")
    assert status.kv_error == (
        f"KV key {SIP} is held by a live session of another Asterisk with the same id "
        f"(session {theirs} of node other-box; this box's agent is node "
        f"{session_info(consul_agent, status.kv_session)['Node']}): not taken over; "
        f"give each box its own id")
    events.wait_for("DiscoveryKvConflict", ID="pbx-1", Key=SIP, Session=theirs,
                    Node="other-box")
    wait_newer_sync(registrar, wait_until)  # and at the next resyncs, still not
    assert events.names().count("DiscoveryKvConflict") == 1
    tree = kv_tree(consul_agent)
    assert tree[SIP] == (b"other box", theirs)
    assert tree[ROLE] == (b"edge Asterisk", status.kv_session)
    assert session_info(consul_agent, theirs) is not None


def test_kv_key_held_by_an_earlier_session_of_this_box_is_taken_over(consul_agent,
                                                                      make_registrar, wait_until):
    """The same name on our own node: an earlier run of this box (killed, or whose unload
    could not reach Consul): its session is destroyed and the key ours."""
    earlier = make_session(consul_agent, SESSION_NAME, wait_until, lock_delay="0s")
    acquire(consul_agent, SIP, b"earlier run", earlier)
    started(make_registrar(kv_settings(consul_agent)))
    tree, session = wait_our_keys(consul_agent, wait_until)
    assert session != earlier and session_info(consul_agent, earlier) is None
