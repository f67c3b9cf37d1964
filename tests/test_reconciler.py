"""The reconciler turn by turn, against the in-memory agent (tests/fakeagent, held to Consul
1.8.7 by tests/contract_cases.py) and a clock the test moves: no Consul binary, no thread of
the worker, no waiting on real time."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from asterisk_consul.health import AsteriskState
from asterisk_consul.registrar.choices import CHECK, DRAIN, MAINTENANCE, Change
from asterisk_consul.registrar.link import AgentLink, consul_client
from asterisk_consul.registrar.notify import Notifications
from asterisk_consul.registrar.reconciler import Reconciler
from integration_tests.testbed.registrar_kit import FACTS, EventRecorder, settings_for
from tests.fakeagent import FakeAgent

SID = "pbx-1"
EID_CHECK, TTL_CHECK = f"check-asterisk-eid-{SID}", f"check-asterisk-ttl-{SID}"
DRAIN_CHECK, MAINT = f"check-asterisk-drain-{SID}", f"_service_maintenance:{SID}"


class ManualClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return 1_700_000_000.0 + self.now

    def advance(self, seconds):
        self.now += seconds


class Asterisk:
    """What the host reports; a test changes it between turns."""

    def __init__(self):
        self.state = AsteriskState(booted=True, shutting_down=False, stop_requested=False,
                                   channels=0)
        self.stops_forgotten = 0

    def __call__(self):
        return self.state

    def set(self, **changes):
        self.state = dataclasses.replace(self.state, **changes)

    def forget_stop(self):
        self.stops_forgotten += 1
        self.set(stop_requested=False)


class Bench:
    """A reconciler wired as the worker wires it, and the means to run its due jobs."""

    def __init__(self, agent, **overrides):
        options = dict(check=True, check_type="both", check_ttl="30s", check_http_port=1,
                       check_interval="1h", resync_interval="30s")
        options.update(overrides)
        self.agent, self.clock, self.host = agent, ManualClock(), Asterisk()
        self.events = EventRecorder()
        self.link = AgentLink(settings_for(agent.http_port, **options), FACTS, consul_client,
                              self.clock)
        self.notify = Notifications(self.link, self.events)
        self.registered_with = []
        self.secrets = []  # what the reconciler gave the log's scrubber
        self.rec = Reconciler(self.link, self.notify, self.host, lambda verdict: None,
                              backoff_initial_s=0.5, backoff_max_s=30.0, slow_retry_s=60.0,
                              forget_stop=self.host.forget_stop,
                              on_registered=self.registered_with.append,
                              on_reloaded=lambda settings: None,
                              on_secret=self.secrets.append)

    def turn(self, seconds=0.0):
        """Move the clock, then run each job that is due, as one turn of the worker."""
        self.clock.advance(seconds)
        for job in self.rec.jobs:
            when = job.due()
            if when is not None and self.clock.monotonic() >= when:
                try:
                    job.run()
                except Exception as exc:  # noqa: BLE001 - as the worker does
                    self.rec.failed(exc, job)
        if self.notify.pending:
            self.notify.flush()

    def registers(self):
        return len(self.agent.calls("/v1/agent/service/register", "PUT"))

    def close(self):
        consul = self.link.close()
        if consul is not None:
            consul.close()


@pytest.fixture
def agent():
    with FakeAgent() as fake:
        yield fake


@pytest.fixture
def bench(agent):
    made = Bench(agent)
    yield made
    made.close()


def test_the_first_turn_registers_with_each_check_passing_at_once(bench, agent):
    bench.turn()
    checks = agent.checks()
    assert SID in agent.services() and bench.registers() == 1
    assert checks[EID_CHECK]["Status"] == "passing" and checks[TTL_CHECK]["Status"] == "passing"
    assert bench.events.names() == ["DiscoveryRegister"]
    assert bench.rec.snapshot(True).state == "registered"
    assert len(bench.registered_with) == 1, "the watch is started once registered"


def test_the_ttl_check_is_reported_every_third_of_its_ttl_and_not_between(bench, agent):
    bench.turn()
    updates = lambda: len(agent.calls(f"/v1/agent/check/update/{TTL_CHECK}"))  # noqa: E731
    assert updates() == 1
    bench.turn(5.0)
    assert updates() == 1
    bench.turn(5.0)
    assert updates() == 2


def test_a_resync_finds_the_service_gone_and_registers_it_again(agent):
    # No checks: a TTL report would find it gone first (the next test of that).
    bench = Bench(agent, check=False)
    bench.turn()
    agent.put(f"/v1/agent/service/deregister/{SID}")
    bench.turn(29.0)
    assert SID not in agent.services(), "not before the resync interval"
    bench.turn(1.0)
    assert SID in agent.services() and bench.registers() == 2
    assert bench.rec.snapshot(True).last_sync_result == \
        f"ok, re-registered (service {SID} is not registered)"
    bench.close()


def test_a_ttl_report_that_finds_its_check_gone_registers_again_at_once(bench, agent):
    bench.turn()
    agent.restart()  # without its data: empty
    bench.turn(10.0)  # the report is due: a 500 "does not have associated TTL"
    bench.turn()
    assert SID in agent.services() and bench.registers() == 2


def test_under_acls_an_agent_restarted_empty_gets_the_service_and_checks_back_at_once():
    # With ACLs, Consul 1.8.7 answers a TTL report for a check it does not know with a 500
    # "Unknown check" (not the 500 "does not have associated TTL" it says without ACLs).
    with FakeAgent(acl=True, acl_tokens=["module-token"]) as agent:
        bench = Bench(agent, token="module-token")
        try:
            bench.turn()
            agent.restart()
            bench.turn(10.0)
            bench.turn()
            assert SID in agent.services() and bench.registers() == 2
            bench.rec.shutdown(deregister=True, deadline=bench.clock.monotonic() + 1.0)
            agent.restart()
        finally:
            bench.close()


def test_under_acls_an_unload_after_the_agent_forgot_the_service_says_so_without_a_warning(
        caplog):
    caplog.set_level(logging.INFO)
    with FakeAgent(acl=True, acl_tokens=["module-token"]) as agent:
        bench = Bench(agent, token="module-token")
        try:
            bench.turn()
            agent.restart()
            bench.rec.shutdown(deregister=True, deadline=bench.clock.monotonic() + 1.0)
        finally:
            bench.close()
    assert "was no longer registered" in caplog.text and "could not deregister" not in caplog.text
    assert "DiscoveryDeregister" not in bench.events.names()


def test_a_resync_repairs_drift_in_place_and_leaves_a_faithful_agent_alone(bench, agent):
    bench.turn()
    bench.turn(30.0)
    assert bench.registers() == 1 and bench.rec.snapshot(True).last_sync_result == "ok, in sync"
    edited = dict(agent.services()[SID], Tags=["someone-else"])
    agent.put("/v1/agent/service/register", json={
        "ID": SID, "Name": edited["Service"], "Tags": edited["Tags"],
        "Address": edited["Address"], "Port": edited["Port"], "Meta": edited["Meta"]})
    bench.turn(30.0)
    assert agent.services()[SID]["Tags"] == ["asterisk", "edge"] and bench.registers() == 3


@pytest.mark.parametrize("kind, check, on_word", [(DRAIN, DRAIN_CHECK, "on"),
                                                  (CHECK, EID_CHECK, "on")])
def test_a_change_of_checks_is_made_in_place_without_registering_again(bench, agent, kind,
                                                                        check, on_word):
    bench.turn()
    off = bench.rec.change(Change(kind, kind == DRAIN, "upgrade"))
    assert off.ok and (check in agent.checks()) == (kind == DRAIN)
    back = bench.rec.change(Change(kind, kind != DRAIN))
    assert back.ok and (check in agent.checks()) == (kind != DRAIN)
    assert bench.registers() == 1, "the service itself is never registered again"
    assert bench.rec.snapshot(True).last_sync_result.startswith("ok, ")


def test_drain_says_so_and_tells_when_the_last_call_ended(bench, agent):
    bench.turn()
    bench.host.set(channels=2)
    result = bench.rec.change(Change(DRAIN, True, "upgrade"))
    assert result == result.__class__(True, f"Drain for service {SID} is on (Consul accepted it)")
    assert agent.checks()[DRAIN_CHECK]["Status"] == "critical"
    assert "(operator): upgrade" in agent.checks()[DRAIN_CHECK]["Notes"]
    assert "DiscoveryDrained" not in bench.events.names()
    bench.host.set(channels=0)
    bench.turn(1.0)
    assert bench.events.names()[-2:] == ["DiscoverySetDrain", "DiscoveryDrained"]
    assert bench.rec.snapshot(True).drained_at == bench.clock.time()


def test_maintenance_is_set_with_its_reason_and_set_again_after_the_agent_forgot_it(bench, agent):
    bench.turn()
    result = bench.rec.change(Change(MAINTENANCE, True, "upgrade"))
    assert result.message == f"Maintenance mode for service {SID} is set (Consul accepted it)"
    assert agent.checks()[MAINT]["Notes"] == "upgrade"
    agent.restart()  # without its data: empty
    bench.turn(30.0)
    assert SID in agent.services() and agent.checks()[MAINT]["Notes"] == "upgrade"


def test_a_change_the_agent_refuses_is_kept_and_carried_out_once_it_answers(bench, agent):
    bench.turn()
    agent.stop()
    result = bench.rec.change(Change(DRAIN, True, "upgrade"))
    assert not result.ok and result.message.endswith("; will keep trying")
    assert bench.rec.snapshot(True).state == "rejected for now"
    agent.start()  # back empty
    bench.turn(30.0)
    assert DRAIN_CHECK in agent.checks() and SID in agent.services()


def test_an_abandoned_change_is_queued_and_applied_at_the_next_sync(bench, agent):
    bench.turn()
    assert bench.rec.change(Change(CHECK, False), abandoned=True).message == "queued"
    assert EID_CHECK in agent.checks(), "nothing sent for a caller that stopped waiting"
    bench.turn(0.5)
    assert EID_CHECK not in agent.checks() and TTL_CHECK not in agent.checks()


def test_a_graceful_stop_drains_and_its_abort_ends_the_drain_and_forgets_the_stop(bench, agent):
    bench.turn()
    bench.host.set(stop_requested=True, shutting_down=True, channels=1)
    bench.turn(1.0)
    assert DRAIN_CHECK in agent.checks() and bench.rec.snapshot(True).drain_by == "shutdown"
    bench.host.set(shutting_down=False)  # core abort shutdown
    bench.turn(1.0)
    assert DRAIN_CHECK not in agent.checks() and bench.host.stops_forgotten == 1


def test_the_eid_check_turns_critical_at_once_when_asterisk_shuts_down(bench, agent):
    bench.turn()
    bench.host.set(shutting_down=True, stop_requested=True)
    bench.turn(1.0)
    assert agent.checks()[EID_CHECK]["Status"] == "critical"
    assert agent.checks()[TTL_CHECK]["Status"] == "critical"


def test_the_status_notices_a_missing_service_and_the_next_turn_registers_it(bench, agent):
    bench.turn()
    agent.put(f"/v1/agent/service/deregister/{SID}")
    bench.rec.refresh()
    status = bench.rec.snapshot(True)
    assert status.health == "unknown" and not status.registered
    bench.turn()
    assert SID in agent.services()


def test_a_reload_registers_again_in_place_only_when_the_definition_changed(bench, agent):
    bench.turn()
    settings = bench.link.settings
    bench.rec.apply(dataclasses.replace(settings))
    bench.turn()
    assert bench.registers() == 1
    bench.rec.apply(dataclasses.replace(settings, tags=("asterisk", "reloaded")))
    bench.turn()
    assert bench.registers() == 2 and agent.services()[SID]["Tags"] == ["asterisk", "reloaded"]


def test_shutdown_deregisters_within_its_budget_and_says_so(bench, agent):
    bench.turn()
    bench.rec.shutdown(deregister=True, deadline=bench.clock.monotonic() + 1.0)
    assert SID not in agent.services()
    assert bench.events.names()[-1] == "DiscoveryDeregister"


def test_a_failed_sync_is_retried_on_a_growing_backoff(bench, agent):
    agent.stop()
    due = []
    for _ in range(4):
        bench.turn(due[-1] - bench.clock.monotonic() if due else 0.0)
        due.append(bench.rec.service.due())
    waits = [b - a for a, b in zip(due, due[1:])]
    assert waits[0] < waits[-1], waits
    status = bench.rec.snapshot(True)
    assert status.state == "rejected for now" and status.agent_reachable is False
    assert agent.http_port and str(agent.http_port) in status.last_error


def test_the_catalog_is_looked_at_after_the_registration(bench, agent):
    bench.turn()
    assert bench.rec.snapshot(True).in_catalog is None
    bench.turn(0.5)
    status = bench.rec.snapshot(True)
    assert status.in_catalog is True and status.catalog_since == bench.clock.time()


def test_busy_turns_the_checks_to_warning_and_back_after_the_dwell(agent):
    bench = Bench(agent, busy_channels=10)
    try:
        bench.turn()
        bench.host.set(channels=10)
        bench.turn(1.0)
        assert bench.rec.snapshot(True).busy and agent.checks()[TTL_CHECK]["Status"] == "warning"
        bench.host.set(channels=5)
        bench.turn(1.0)
        assert bench.rec.snapshot(True).busy, "held for the dwell"
        bench.turn(5.0)
        assert not bench.rec.snapshot(True).busy
        assert agent.checks()[TTL_CHECK]["Status"] == "passing"
    finally:
        bench.close()


# -- SIP readiness (sip_check) ---------------------------------------------------------------

class SipStack:
    """The channel technologies registered and what the listener answers; the test moves them."""

    def __init__(self):
        from asterisk_consul.sip_probe import ALIVE
        self.techs = {"PJSIP"}
        self.outcome, self.probes = ALIVE, 0

    def has_tech(self, tech):
        return tech in self.techs

    def probe(self, target, timeout_s):
        from asterisk_consul.sip_probe import ALIVE, ProbeResult
        self.probes += 1
        if self.outcome == ALIVE:
            return ProbeResult(ALIVE, f"SIP: 200 OK from {target} in 0.3 ms", 0.0003, target)
        return ProbeResult(self.outcome, f"SIP: no answer on {target} within 500 ms", None, target)


@pytest.fixture
def sip_bench(agent):
    from asterisk_consul.registrar.sip import SipWatch
    made = Bench(agent, sip_check="auto")
    stack = SipStack()
    made.rec.sip = SipWatch(made.link, stack.has_tech, stack.probe)
    made.rec.jobs = tuple(j if j.name != "sip" else dataclasses.replace(
        j, due=made.rec.sip.due) for j in made.rec.jobs)
    yield made, stack
    made.close()


def test_sip_dead_turns_every_check_critical_within_a_probe_and_back(sip_bench, agent):
    from asterisk_consul.sip_probe import DEAD
    bench, stack = sip_bench
    bench.turn()
    assert agent.checks()[TTL_CHECK]["Status"] == "passing"
    stack.outcome = DEAD
    bench.turn(1.0)  # the next probe, one second later
    ttl = agent.checks()[TTL_CHECK]
    assert ttl["Status"] == "critical"
    assert "SIP: no answer on udp 127.0.0.1:5060 within 500 ms" in ttl["Output"]
    assert bench.rec.asterisk.verdict.http_status == 503  # what the EID endpoint answers
    status = bench.rec.snapshot(True)
    assert (status.sip_on, status.sip_status) == (True, "critical")
    stack.outcome = "alive"
    bench.turn(1.0)
    assert agent.checks()[TTL_CHECK]["Status"] == "passing"


def test_sip_auto_notices_the_driver_unloaded_once_it_was_seen(sip_bench, agent):
    bench, stack = sip_bench
    bench.turn()
    stack.techs.clear()  # module unload chan_pjsip.so
    bench.turn(1.0)
    assert agent.checks()[TTL_CHECK]["Status"] == "critical"
    assert "no SIP channel driver loaded" in agent.checks()[TTL_CHECK]["Output"]
    stack.techs.add("PJSIP")
    bench.turn(1.0)
    assert agent.checks()[TTL_CHECK]["Status"] == "passing"


def test_sip_auto_without_any_driver_ever_keeps_todays_meaning(sip_bench, agent):
    bench, stack = sip_bench
    stack.techs.clear()
    bench.turn()
    bench.turn(1.0)
    assert agent.checks()[TTL_CHECK]["Status"] == "passing" and stack.probes == 0
    assert bench.rec.snapshot(True).sip_on is False


def test_sip_check_no_never_probes_nor_wakes(agent):
    made = Bench(agent, sip_check="no")
    try:
        made.turn()
        assert made.rec.sip.due() is None
        assert agent.checks()[TTL_CHECK]["Status"] == "passing"
    finally:
        made.close()
