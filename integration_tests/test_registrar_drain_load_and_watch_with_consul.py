"""The registrar's operations against a real Consul agent, with Asterisk's state stood in:
drain (its own state, out of the healthy set at once, followed to 0 channels, started by a
stop), busy_channels and Weights, the status checks are registered with, the watch that heals
within a second, the instance token, and the catalog line."""

from __future__ import annotations

import dataclasses
import random
import threading
import time

import pytest

from asterisk_consul.health import HOST_POLL_AT_REST_S, HOST_POLL_S
from asterisk_consul.registrar import Result, consul_client
from asterisk_consul.registrar.link import AgentLink
from asterisk_consul.registrar.watch import AgentWatch
from asterisk_consul.registration import HostFacts
from integration_tests.testbed.registrar_kit import settings_for, started
from integration_tests.test_registrar_checks_and_kv_with_consul import HostState, RecordingConsul

FACTS = HostFacts(eid="02:42:ac:11:00:02", version="22.1.0", instance="5eed0a11")
DRAIN_CHECK = "check-asterisk-drain-pbx-1"
EID_CHECK = "check-asterisk-eid-pbx-1"
TTL_CHECK = "check-asterisk-ttl-pbx-1"
MAINT = "_service_maintenance:pbx-1"


def healthy_ids(agent):
    """Service IDs in /v1/health/service/Asterisk?passing: what consumers route to."""
    entries = agent.get("/v1/health/service/Asterisk", params={"passing": "1"}).json() or []
    return {e["Service"]["ID"] for e in entries}


def within(seconds, predicate, wait_until, what):
    """predicate() true within `seconds` from now; returns how long it took."""
    began = time.monotonic()
    wait_until(predicate, timeout=seconds, interval=0.02, what=what)
    return time.monotonic() - began


def registrar_for(make_registrar, agent, state=None, facts=FACTS, forget_stop=lambda: None,
                  **options):
    settings = settings_for(agent.http_port, check=True, check_type="both", check_ttl="30s",
                            check_http_port=1, check_interval="1h", resync_interval="1h",
                            **options)
    return started(make_registrar(settings, facts=facts, host_state=state or HostState(),
                                  forget_stop=forget_stop))


def test_drain_leaves_the_healthy_set_at_once_and_comes_back_at_once(
        consul_agent, make_registrar, events, wait_until):
    registrar = registrar_for(make_registrar, consul_agent)
    events.wait_for("DiscoveryRegister")
    within(1.0, lambda: "pbx-1" in healthy_ids(consul_agent), wait_until, "pbx-1 routable")

    result = registrar.set_drain(True, "move to the new hardware", 2.0)
    assert result == Result(True, "Drain for service pbx-1 is on (Consul accepted it)")
    assert "pbx-1" not in healthy_ids(consul_agent)  # at once: the answer came after it
    assert "pbx-1" in consul_agent.services()         # still registered
    drain = consul_agent.checks()[DRAIN_CHECK]
    assert drain["Status"] == "critical" and "draining" in drain["Notes"]
    assert "move to the new hardware" in drain["Notes"]
    assert events.wait_for("DiscoverySetDrain")["Drain"] == "on"

    # Maintenance is another state: switching it off does not end the drain.
    assert registrar.set_maintenance(True, "x", 2.0).ok
    assert registrar.set_maintenance(False, timeout=2.0).ok
    assert DRAIN_CHECK in consul_agent.checks() and "pbx-1" not in healthy_ids(consul_agent)
    status = registrar.status(2.0)
    assert status.drain and status.drain_by == "operator" and status.drain_since

    assert registrar.set_drain(False, timeout=2.0).ok
    assert "pbx-1" in healthy_ids(consul_agent) and DRAIN_CHECK not in consul_agent.checks()
    assert not registrar.status(2.0).drain


def test_drain_is_kept_by_a_re_registration_and_does_not_end_maintenance(
        consul_agent, make_registrar, events, wait_until):
    registrar = registrar_for(make_registrar, consul_agent)
    events.wait_for("DiscoveryRegister")
    assert registrar.set_maintenance(True, "upgrade", 2.0).ok
    assert registrar.set_drain(True, "and drain", 2.0).ok
    assert registrar.set_drain(False, timeout=2.0).ok
    assert MAINT in consul_agent.checks()  # drain off left maintenance on
    assert registrar.set_drain(True, "again", 2.0).ok
    consul_agent.put("/v1/agent/service/deregister/pbx-1")  # someone removes us
    wait_until(lambda: DRAIN_CHECK in consul_agent.checks() and MAINT in consul_agent.checks(),
               timeout=2, what="service, drain and maintenance back")


def test_drained_when_the_last_channel_ends(consul_agent, make_registrar, events, wait_until):
    state = HostState()
    state.channels = 2
    registrar = registrar_for(make_registrar, consul_agent, state)
    events.wait_for("DiscoveryRegister")
    assert registrar.set_drain(True, "calls end first", 2.0).ok
    time.sleep(1.2)  # two polls: channels are up, nothing is drained yet
    assert "DiscoveryDrained" not in events.names()
    assert registrar.status(2.0).drained_at is None
    state.channels = 0
    drained = events.wait_for("DiscoveryDrained", timeout=2)
    assert drained["ID"] == "pbx-1" and drained["Reason"] == "calls end first"
    status = registrar.status(2.0)
    assert status.drained_at and status.drain  # drained, and still out until switched off
    assert "pbx-1" not in healthy_ids(consul_agent)


def test_a_stop_asked_for_drains_by_itself_within_a_second(consul_agent, make_registrar, events,
                                                           wait_until):
    state = HostState()
    state.channels = 1
    registrar = registrar_for(make_registrar, consul_agent, state)
    events.wait_for("DiscoveryRegister")
    state.stop_requested = True  # core stop when convenient: not marked as shutting down
    took = within(1.0, lambda: DRAIN_CHECK in consul_agent.checks(), wait_until, "the drain")
    assert "pbx-1" not in healthy_ids(consul_agent)
    status = registrar.status(2.0)
    assert status.drain and status.drain_by == "shutdown", status
    print(f"\n[unit] stop asked -> drain check in the agent: {took:.2f} s")


def test_no_drain_at_stop_when_drain_on_shutdown_is_off(consul_agent, make_registrar, events):
    state = HostState()
    registrar = registrar_for(make_registrar, consul_agent, state, drain_on_shutdown=False)
    events.wait_for("DiscoveryRegister")
    state.stop_requested = True
    time.sleep(1.2)
    assert DRAIN_CHECK not in consul_agent.checks() and not registrar.status(2.0).drain


class CancellableStop(HostState):
    """A host whose stop can be cancelled as Asterisk's: 'when convenient' leaves its sign
    (stop_requested) until the module forgets it."""

    def __init__(self):
        super().__init__()
        self.forgotten = 0

    def forget(self):
        self.stop_requested = False
        self.forgotten += 1


def test_an_aborted_graceful_stop_ends_the_shutdown_drain_by_itself(consul_agent, make_registrar,
                                                                   events, wait_until):
    state = CancellableStop()
    state.channels = 1
    registrar = registrar_for(make_registrar, consul_agent, state, forget_stop=state.forget)
    events.wait_for("DiscoveryRegister")
    # core stop gracefully: the message queue goes (stop_requested stays), then shutting down.
    state.stop_requested = state.shutting_down = True
    within(1.0, lambda: DRAIN_CHECK in consul_agent.checks(), wait_until, "the shutdown drain")
    # core abort shutdown: Asterisk is no longer shutting down; the queue stays gone.
    state.shutting_down = False
    took = within(1.0, lambda: "pbx-1" in healthy_ids(consul_agent), wait_until,
                  "back in the healthy set")
    assert DRAIN_CHECK not in consul_agent.checks() and not registrar.status(2.0).drain
    assert state.forgotten == 1 and not state.stop_requested
    print(f"\n[unit] core abort shutdown -> passing again: {took:.2f} s")


def test_drain_off_after_a_cancelled_when_convenient_stop_forgets_that_stop(
        consul_agent, make_registrar, events, wait_until):
    state = CancellableStop()
    state.channels = 1
    registrar = registrar_for(make_registrar, consul_agent, state, forget_stop=state.forget)
    events.wait_for("DiscoveryRegister")
    state.stop_requested = True  # 'when convenient', then aborted: nothing in Asterisk changes back
    within(1.0, lambda: DRAIN_CHECK in consul_agent.checks(), wait_until, "the shutdown drain")
    time.sleep(1.0)
    assert DRAIN_CHECK in consul_agent.checks() and state.forgotten == 0  # no sign it was cancelled
    assert registrar.set_drain(False, timeout=2.0).ok
    assert state.forgotten == 1 and not state.stop_requested
    time.sleep(1.0)  # several looks at Asterisk: no new drain
    assert DRAIN_CHECK not in consul_agent.checks() and "pbx-1" in healthy_ids(consul_agent)


def test_busy_channels_say_warning_with_one_write_per_change(consul_agent, make_registrar, events,
                                                            wait_until):
    state, calls = HostState(), RecordingConsul()
    settings = settings_for(consul_agent.http_port, check=True, check_type="ttl",
                            check_ttl="30s", resync_interval="1h", busy_channels=4)
    registrar = started(make_registrar(settings, facts=FACTS, host_state=state,
                                       consul_factory=calls))
    wait_until(lambda: consul_agent.checks().get(TTL_CHECK, {}).get("Status") == "passing",
               timeout=3, what="passing")
    # Registered passing already; the first TTL report follows: count from after it.
    wait_until(lambda: calls.updates, timeout=3, what="the first TTL report")
    writes = len(calls.updates)
    state.channels = 4
    wait_until(lambda: consul_agent.checks()[TTL_CHECK]["Status"] == "warning", timeout=2,
               what="warning at busy_channels")
    assert "busy: 4 active channels or more" in consul_agent.checks()[TTL_CHECK]["Output"]
    state.channels = 5  # busier: still one state, no write
    time.sleep(1.2)
    assert len(calls.updates) == writes + 1
    state.channels = 3  # below 90 % of 4: idle again, but not before the dwell (5 s)
    time.sleep(1.0)
    assert consul_agent.checks()[TTL_CHECK]["Status"] == "warning"
    wait_until(lambda: consul_agent.checks()[TTL_CHECK]["Status"] == "passing", timeout=6,
               what="passing after the dwell")
    assert len(calls.updates) == writes + 2
    status = registrar.status(2.0)
    assert not status.busy and status.busy_channels == 4 and status.channels == 3


def test_weights_are_registered(consul_agent, make_registrar, events, wait_until):
    registrar_for(make_registrar, consul_agent, weight_passing=10, weight_warning=2)
    events.wait_for("DiscoveryRegister")
    assert consul_agent.services()["pbx-1"]["Weights"] == {"Passing": 10, "Warning": 2}
    entries = wait_until(lambda: consul_agent.get("/v1/catalog/service/Asterisk").json(),
                         timeout=3, what="the catalog entry")
    assert entries[0]["ServiceWeights"] == {"Passing": 10, "Warning": 2}


def test_checks_start_with_the_status_true_then_and_follow_the_boot_at_once(
        consul_agent, make_registrar, events, wait_until):
    state = HostState(booted=False)
    registrar_for(make_registrar, consul_agent, state)
    events.wait_for("DiscoveryRegister")
    checks = consul_agent.checks()
    assert checks[EID_CHECK]["Status"] == "critical"  # not routable before fully booted
    assert checks[TTL_CHECK]["Status"] == "warning"
    assert "pbx-1" not in healthy_ids(consul_agent)
    state.booted = True
    took = within(1.0, lambda: "pbx-1" in healthy_ids(consul_agent), wait_until,
                  "routable once booted")  # check_interval is 1h: no poll helped
    print(f"\n[unit] booted -> in the healthy set: {took:.2f} s")


def test_the_watch_heals_a_deregistration_within_a_second(consul_agent, make_registrar, events,
                                                         wait_until):
    registrar_for(make_registrar, consul_agent)  # resync_interval 1h: only the watch can
    events.wait_for("DiscoveryRegister")
    time.sleep(0.5)  # the watch holds its blocking query
    consul_agent.put("/v1/agent/service/deregister/pbx-1")
    took = within(1.0, lambda: "pbx-1" in consul_agent.services(), wait_until, "re-registered")
    print(f"\n[unit] deregistered by someone -> registered again: {took:.2f} s")


def test_the_watch_heals_an_agent_restart_with_maintenance_and_drain(
        consul_agent, make_registrar, events, wait_until):
    registrar = registrar_for(make_registrar, consul_agent, kv=(("role", "edge"),))
    events.wait_for("DiscoveryRegister")
    assert registrar.set_maintenance(True, "upgrade", 2.0).ok
    assert registrar.set_drain(True, "and drain", 2.0).ok
    wait_until(lambda: consul_agent.kv_get("pbx-1/role"), timeout=3, what="the KV key")
    consul_agent.restart()  # a dev agent comes back empty
    began = time.monotonic()
    wait_until(lambda: {"pbx-1"} <= set(consul_agent.services())
               and {MAINT, DRAIN_CHECK} <= set(consul_agent.checks())
               and consul_agent.kv_get("pbx-1/role"), timeout=1.5, interval=0.02,
               what="service, maintenance, drain and KV back")
    print(f"\n[unit] agent restarted -> all back: {time.monotonic() - began:.2f} s")


def test_instance_token_in_meta_and_check_url_and_catalog_line(consul_agent, make_registrar,
                                                               events, wait_until):
    registrar = registrar_for(make_registrar, consul_agent)
    events.wait_for("DiscoveryRegister")
    assert consul_agent.services()["pbx-1"]["Meta"]["instance"] == "5eed0a11"
    http = next(c for c in registrar.reconciler.service.definition["Checks"] if c["CheckID"] == EID_CHECK)
    assert http["HTTP"].endswith("&instance=5eed0a11")
    wait_until(lambda: registrar.status(2.0).in_catalog, timeout=3, what="in the catalog")
    status = registrar.status(2.0)
    assert status.catalog_since and status.instance == "5eed0a11"


def test_a_reload_keeps_drain_and_the_new_settings(consul_agent, make_registrar, events,
                                                   wait_until):
    state = HostState()
    registrar = registrar_for(make_registrar, consul_agent, state)
    events.wait_for("DiscoveryRegister")
    assert registrar.set_drain(True, "reload too", 2.0).ok
    settings = dataclasses.replace(registrar.link.settings, tags=("asterisk", "reloaded"))
    registrar.apply(settings)
    wait_until(lambda: consul_agent.services()["pbx-1"]["Tags"] == ["asterisk", "reloaded"],
               timeout=3, what="the reload")
    assert DRAIN_CHECK in consul_agent.checks()


def test_a_stop_racing_the_first_registration_stops_everything(consul_agent, make_registrar,
                                                               events):
    """The watch starts when the service is registered, on the worker, while an unload may be
    stopping the registrar: the stop always wins, deregisters, and leaves no thread."""
    for attempt in range(25):
        registrar = started(make_registrar(settings_for(consul_agent.http_port,
                                                        resync_interval="1h")))
        time.sleep(random.uniform(0.0, 0.03))  # around the registration
        registrar.stop(deregister=True, timeout=2)
        assert "pbx-1" not in consul_agent.services(), attempt
        alive = [t.name for t in threading.enumerate()
                 if t.name in ("consul-registrar", "consul-watch")]
        assert not alive, (attempt, alive)


def test_the_watch_never_starts_once_closed(consul_agent):
    link = AgentLink(settings_for(consul_agent.http_port), FACTS, consul_client)
    for attempt in range(50):
        watch = AgentWatch(link, lambda reason, back: None)
        starter = threading.Thread(target=watch.start, args=(link.settings,))
        starter.start()
        time.sleep(random.uniform(0.0, 0.002))
        watch.close()
        starter.join(5)
        watch.start(link.settings)  # closed: nothing
        assert not [t for t in threading.enumerate() if t.name == "consul-watch"], attempt


def test_a_reload_restarts_a_running_watch_with_the_new_token_and_no_other(consul_agent):
    import dataclasses

    link = AgentLink(settings_for(consul_agent.http_port), FACTS, consul_client)
    watch = AgentWatch(link, lambda reason, back: None)
    try:
        watch.follow(link.settings)  # not registered yet: nothing to restart
        assert not [t for t in threading.enumerate() if t.name == "consul-watch"]
        watch.start(link.settings)
        first = watch._thread
        watch.follow(dataclasses.replace(link.settings, resync_interval="5s"))
        assert watch._thread is first  # nothing the watch uses changed
        watch.follow(dataclasses.replace(link.settings, token="new-token"))
        assert watch._thread is not first and not first.is_alive()
        assert watch._client._headers["X-Consul-Token"] == "new-token"
    finally:
        watch.close()


def test_asterisk_is_looked_at_less_often_at_rest_and_often_once_anything_moves(make_registrar):
    # Not started: the poll is run by hand and its next due time read.
    state = HostState(booted=False)
    registrar = make_registrar(settings_for(1, check=True), host_state=state)
    watch = registrar.reconciler.asterisk
    soon = pytest.approx(HOST_POLL_S, abs=0.1)
    at_rest = pytest.approx(HOST_POLL_AT_REST_S, abs=0.1)

    def next_poll_in():
        began = time.monotonic()
        watch.look(draining=False)
        return watch.due() - began

    assert next_poll_in() == soon      # booting
    state.booted = True
    assert next_poll_in() == at_rest   # at rest
    state.channels = 1
    assert next_poll_in() == soon      # a call up
    state.channels = 0
    assert next_poll_in() == at_rest
    state.stop_requested = True
    assert next_poll_in() == soon      # stopping (drain follows it)
