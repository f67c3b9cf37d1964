"""The registrar against a real Consul agent and against deliberately broken peers."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time

import pytest

from asterisk_consul.registrar import Registrar, Result, StatusSnapshot, consul_client
from integration_tests.testbed.peers import BlackholePeer, StandInPeer
from integration_tests.testbed.registrar_kit import FACTS, settings_for, started
from tests.standin import StatusView

MAINT = "_service_maintenance:pbx-1"


# -- the happy path ----------------------------------------------------------------------------

def test_registers_in_the_background(consul_agent, make_registrar, events):
    # No resync before the status: its last sync is the registration.
    registrar = started(make_registrar(settings_for(consul_agent.http_port, resync_interval="1h")))
    headers = events.wait_for("DiscoveryRegister")
    assert headers == {"ID": "pbx-1", "Name": "Asterisk", "Address": "127.0.0.1", "Port": "5060"}
    service = consul_agent.services()["pbx-1"]
    assert service["Service"] == "Asterisk"
    assert service["Tags"] == ["asterisk", "edge"]
    assert (service["Address"], service["Port"]) == ("127.0.0.1", 5060)
    assert service["Meta"] == {"eid": FACTS.eid, "asterisk_version": "22.1.0",
                               "ari_port": "8088", "ari_scheme": "http"}

    status = registrar.status(2.0)
    assert isinstance(status, StatusSnapshot)
    assert not status.stale and status.running
    assert status.registered and status.registered_since <= time.time()
    assert status.agent_url == consul_agent.url and status.agent_version == "1.8.7"
    assert (status.service_id, status.service_name, status.address, status.port) == \
        ("pbx-1", "Asterisk", "127.0.0.1", 5060)
    assert status.health == "passing" and status.last_sync_result == "ok, registered"
    assert status.last_error == "" and not status.checks_on and status.checks == ()


def test_stop_deregisters_and_joins(consul_agent, make_registrar, events, wait_until):
    registrar = started(make_registrar(settings_for(consul_agent.http_port)))
    events.wait_for("DiscoveryRegister")
    begun = time.monotonic()
    registrar.stop()
    assert time.monotonic() - begun < 1.0
    assert "pbx-1" not in consul_agent.services()
    assert events.names() == ["DiscoveryRegister", "DiscoveryDeregister"]
    assert not [t for t in threading.enumerate() if t.name == "consul-registrar"]
    time.sleep(0.5)  # nothing fires after stop() returned, even at resync time
    assert events.names() == ["DiscoveryRegister", "DiscoveryDeregister"]
    assert registrar.set_maintenance(True, "x", 0.5).ok is False
    assert registrar.status(0.5).stale


def test_stop_without_start_and_twice(make_registrar, refused_port):
    registrar = make_registrar(settings_for(refused_port))
    registrar.stop()
    registrar.stop()
    with pytest.raises(RuntimeError):
        registrar.start()


def test_eid_check_registered_and_reported(consul_agent, make_registrar, events, refused_port,
                                           wait_until):
    settings = settings_for(consul_agent.http_port, check=True, check_http_port=refused_port,
                            check_interval="1s", check_timeout="500ms", http_prefix="asterisk")
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    check = consul_agent.checks()["check-asterisk-eid-pbx-1"]
    assert check["Name"] == "Asterisk Instance EID Verification"
    assert check["ServiceID"] == "pbx-1" and check["Type"] == "http"

    status = wait_until(lambda: (s := registrar.status(2.0)).checks and s.checks[0][3] and s,
                        timeout=5, what="check output")
    (kind, cid, check_status, output), = status.checks
    assert (kind, cid) == ("http", "check-asterisk-eid-pbx-1")
    assert check_status == "critical" and status.health == "critical"
    assert f"127.0.0.1:{refused_port}/asterisk/res_discovery_consul/check_eid" \
           f"?expected_eid={FACTS.eid}" in output


# -- maintenance -------------------------------------------------------------------------------

def test_maintenance_on_and_off(consul_agent, make_registrar, events):
    registrar = started(make_registrar(settings_for(consul_agent.http_port)))
    events.wait_for("DiscoveryRegister")

    result = registrar.set_maintenance(True, "upgrade & reboot", 2.0)
    assert result == Result(True, "Maintenance mode for service pbx-1 is set (Consul accepted it)")
    check = consul_agent.checks()[MAINT]
    assert check["Status"] == "critical" and check["Notes"] == "upgrade & reboot"
    assert events.wait_for("DiscoverySetMaintenance") == \
        {"ID": "pbx-1", "Maintenance": "true", "Reason": "upgrade & reboot"}
    status = registrar.status(2.0)
    assert status.maintenance and status.maintenance_reason == "upgrade & reboot"
    assert status.maintenance_in_agent and status.health == "critical"

    # Consul keeps the first reason on a second enable; ours must still show up, and the
    # service must stay critical meanwhile (a guard check covers the swap, then goes).
    assert registrar.set_maintenance(True, "new reason", 2.0).ok
    checks = consul_agent.checks()
    assert checks[MAINT]["Notes"] == "new reason"
    assert [c for c in checks if c != MAINT] == []
    assert events.wait_for("DiscoverySetMaintenance", Reason="new reason")
    assert registrar.set_maintenance(True, "new reason", 2.0).ok  # same again: no event
    assert events.names().count("DiscoverySetMaintenance") == 2

    result = registrar.set_maintenance(False, "", 2.0)
    assert result.ok and "unset" in result.message
    assert MAINT not in consul_agent.checks()
    assert events.wait_for("DiscoverySetMaintenance", Maintenance="false")["ID"] == "pbx-1"
    assert registrar.status(2.0).health == "passing"


def test_maintenance_before_registration_is_applied_with_it(consul_agent, make_registrar,
                                                            events, wait_until):
    consul_agent.stop()
    registrar = started(make_registrar(settings_for(consul_agent.http_port)))
    result = registrar.set_maintenance(True, "not yet", 2.0)
    assert not result.ok and "will keep trying" in result.message
    consul_agent.start()
    events.wait_for("DiscoverySetMaintenance", timeout=5)
    assert consul_agent.checks()[MAINT]["Notes"] == "not yet"


def test_maintenance_survives_agent_restart(consul_agent, make_registrar, events, wait_until):
    registrar = started(make_registrar(settings_for(consul_agent.http_port)))
    events.wait_for("DiscoveryRegister")
    assert registrar.set_maintenance(True, "drain", 2.0).ok
    consul_agent.restart()  # a dev agent comes back empty
    wait_until(lambda: MAINT in consul_agent.checks(), timeout=5, what="maintenance re-applied")
    assert "pbx-1" in consul_agent.services()
    assert consul_agent.checks()[MAINT]["Notes"] == "drain"


def test_maintenance_answers_within_timeout_when_consul_blackholes(make_registrar):
    with BlackholePeer() as peer:
        registrar = started(make_registrar(settings_for(peer.port, consul_timeout_ms=800)))
        time.sleep(0.1)  # the worker is now stuck in its first call
        begun = time.monotonic()
        result = registrar.set_maintenance(True, "x", 0.2)
        assert time.monotonic() - begun < 0.6
        assert result == Result(False, "timed out after 200 ms; will keep trying")
        begun = time.monotonic()
        status = registrar.status(0.2)
        assert time.monotonic() - begun < 0.6
        assert status.stale and not status.registered
        registrar.stop()


# -- self-healing ------------------------------------------------------------------------------

def test_resync_after_someone_deregisters(consul_agent, make_registrar, events):
    started(make_registrar(settings_for(consul_agent.http_port)))
    events.wait_for("DiscoveryRegister")
    consul_agent.put("/v1/agent/service/deregister/pbx-1")
    events.wait_for("DiscoveryRegister", count=2, timeout=3)
    assert "pbx-1" in consul_agent.services()
    assert "DiscoveryDeregister" not in events.names()


def test_resync_after_agent_restart(consul_agent, make_registrar, events, wait_until):
    registrar = started(make_registrar(settings_for(consul_agent.http_port)))
    events.wait_for("DiscoveryRegister")
    consul_agent.restart()
    wait_until(lambda: "pbx-1" in consul_agent.services(), timeout=5, what="re-registration")
    assert registrar.status(2.0).registered


def test_resync_restores_a_changed_definition(consul_agent, make_registrar, events, wait_until):
    started(make_registrar(settings_for(consul_agent.http_port)))
    events.wait_for("DiscoveryRegister")
    consul_agent.put("/v1/agent/service/register",
                     json={"ID": "pbx-1", "Name": "Asterisk", "Port": 9999})
    wait_until(lambda: consul_agent.services()["pbx-1"]["Port"] == 5060, timeout=3,
               what="port restored")
    assert consul_agent.services()["pbx-1"]["Tags"] == ["asterisk", "edge"]


# -- reload ------------------------------------------------------------------------------------

def test_apply_identical_settings_does_nothing(consul_agent, make_registrar, events):
    settings = settings_for(consul_agent.http_port, resync_interval="1h")
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    registrar.apply(dataclasses.replace(settings))
    time.sleep(0.3)
    assert events.names() == ["DiscoveryRegister"]


@contextlib.contextmanager
def gaps_in_registration(agent, service_id="pbx-1"):
    """Yield a list that collects the moments service_id was missing from the agent while
    the block ran: a registration replaced in place leaves it empty."""
    gaps, watching = [], threading.Event()

    def watch():
        while not watching.is_set():
            if service_id not in agent.services():
                gaps.append(time.monotonic())
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield gaps
    finally:
        watching.set()
        watcher.join()


def test_apply_changes_in_place_without_a_gap(consul_agent, make_registrar, events):
    settings = settings_for(consul_agent.http_port, resync_interval="1h")
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    with gaps_in_registration(consul_agent) as gaps:
        registrar.apply(dataclasses.replace(settings, discovery_port=5070, tags=("x",)))
        events.wait_for("DiscoveryRegister", Port="5070")
    assert not gaps
    service = consul_agent.services()["pbx-1"]
    assert (service["Port"], service["Tags"]) == (5070, ["x"])
    assert "DiscoveryDeregister" not in events.names()


def test_apply_new_service_id_registers_then_deregisters_old(consul_agent, make_registrar,
                                                             events):
    settings = settings_for(consul_agent.http_port)
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    registrar.apply(dataclasses.replace(settings, service_id="pbx-2"))
    events.wait_for("DiscoveryDeregister", ID="pbx-1")
    assert [(n, dict(h)["ID"]) for n, h in events.events] == [
        ("DiscoveryRegister", "pbx-1"), ("DiscoveryRegister", "pbx-2"),
        ("DiscoveryDeregister", "pbx-1")]
    assert set(consul_agent.services()) == {"pbx-2"}
    registrar.stop()
    assert consul_agent.services() == {}


def test_apply_toggles_check_and_keeps_maintenance(consul_agent, make_registrar, events,
                                                   refused_port, wait_until):
    settings = settings_for(consul_agent.http_port, check_http_port=refused_port)
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    assert registrar.set_maintenance(True, "keep me", 2.0).ok

    registrar.apply(dataclasses.replace(settings, check=True))
    events.wait_for("DiscoveryRegister", count=2)
    checks = consul_agent.checks()
    assert "check-asterisk-eid-pbx-1" in checks and checks[MAINT]["Notes"] == "keep me"

    registrar.apply(settings)
    events.wait_for("DiscoveryRegister", count=3)
    checks = consul_agent.checks()
    assert "check-asterisk-eid-pbx-1" not in checks and checks[MAINT]["Notes"] == "keep me"
    time.sleep(0.5)  # a resync finds nothing to fix
    assert events.names().count("DiscoveryRegister") == 3


# -- a Consul that is down, black-holed or failing ---------------------------------------------

def test_refused_then_agent_comes_up(consul_factory, make_registrar, events, wait_until):
    agent = consul_factory(start=False)
    registrar = started(make_registrar(settings_for(agent.http_port)))
    wait_until(lambda: "refused" in registrar.status(1.0).last_error, timeout=3,
               what="a refused attempt")
    time.sleep(1.0)  # long enough for the backoff to reach its cap (0.4 s)
    agent.start()
    up = time.monotonic()
    events.wait_for("DiscoveryRegister", timeout=5)
    # backoff cap 0.4 s, plus the register call and scheduling slack on a busy 2-core CI box
    assert time.monotonic() - up < 0.4 + 0.6, "registered within one backoff period"
    status = registrar.status(2.0)
    assert status.registered and status.last_error == ""
    begun = time.monotonic()
    registrar.stop()
    assert time.monotonic() - begun < 1.0
    assert agent.services() == {}


def test_blackholed_agent_start_and_stop_are_bounded(make_registrar, events):
    with BlackholePeer() as peer:
        registrar = started(make_registrar(settings_for(peer.port, consul_timeout_ms=300)))
        time.sleep(1.0)
        assert peer.accepted >= 2, "retries happen"
        begun = time.monotonic()
        registrar.stop()
        assert time.monotonic() - begun < 0.3 + 0.4  # timeout_s plus slack, not n × timeout
    assert events.names() == []


def test_server_errors_are_retried_with_backoff_and_logged_once(make_registrar, caplog):
    caplog.set_level(logging.DEBUG, logger="asterisk_consul")
    with StandInPeer(status=500) as peer:
        registrar = started(make_registrar(settings_for(peer.port)))
        time.sleep(1.5)
        attempts = len(peer.requests)
        status = registrar.status(1.0)
        registrar.stop()
    # 0.05 s doubling to 0.4 s with jitter: a handful of tries, not a storm
    assert 4 <= attempts <= 30
    assert "500" in status.last_error and not status.registered
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "service/register" in w]) == 1, warnings


def test_permission_denied_is_retried_slowly(make_registrar, caplog):
    with StandInPeer(status=403, body="Permission denied") as peer:
        registrar = started(make_registrar(settings_for(peer.port), slow_retry_s=5.0))
        time.sleep(1.0)
        status = registrar.status(1.0)
        registrar.stop(deregister=False)
        register_calls = [r for r in peer.requests if r.path.startswith("/v1/agent/service/reg")]
    assert len(register_calls) == 1
    assert "permission denied" in status.last_error


def test_event_handler_errors_do_not_stop_the_worker(consul_agent, make_registrar, wait_until):
    def broken(name, headers):
        raise RuntimeError("listener bug")
    registrar = started(Registrar(settings_for(consul_agent.http_port), FACTS, broken))
    try:
        wait_until(lambda: registrar.status(1.0).registered, timeout=5, what="registration")
        assert registrar.set_maintenance(True, "x", 2.0).ok
    finally:
        registrar.stop()


# -- ACL ---------------------------------------------------------------------------------------

def test_acl_tokens_and_no_token_leak(consul_factory, make_registrar, events, caplog,
                                      wait_until):
    caplog.set_level(logging.DEBUG)
    agent = consul_factory(acl=True)
    wrong = "00000000-dead-beef-0000-000000000000"
    registrar = started(make_registrar(settings_for(agent.http_port, token=wrong)))
    status = wait_until(lambda: (s := registrar.status(1.0)).last_error and s, timeout=3,
                        what="an answer")
    assert "permission denied" in status.last_error and not status.registered

    policy = {"Name": "asterisk-pbx", "Rules": 'service_prefix "Aster" { policy = "write" }'}
    assert agent.put("/v1/acl/policy", json=policy).status_code == 200
    scoped = agent.put("/v1/acl/token", json={"Policies": [{"Name": "asterisk-pbx"}]}).json()
    scoped_token = scoped["SecretID"]
    registrar.apply(settings_for(agent.http_port, token=scoped_token))
    events.wait_for("DiscoveryRegister", timeout=3)
    assert "pbx-1" in agent.services()
    assert registrar.set_maintenance(True, "acl", 2.0).ok
    registrar.stop()
    assert "pbx-1" not in agent.services()

    master = started(make_registrar(settings_for(agent.http_port, service_id="other",
                                                 token=agent.master_token)))
    events.wait_for("DiscoveryRegister", ID="other")
    assert master.status(2.0).agent_version == "1.8.7"
    master.stop()

    secrets = (wrong, scoped_token, agent.master_token)
    texts = [r.getMessage() for r in caplog.records] + [str(r.exc_info) for r in caplog.records]
    texts += [repr(status), repr(registrar.status(0.1)), str(events.events)]
    leaks = [t for t in texts for s in secrets if s in t]
    assert not leaks


# -- never blocked by a backlog; retries; external maintenance; what the last sync did ---------

def test_status_requests_that_timed_out_do_not_delay_stop(make_registrar):
    with BlackholePeer() as peer:
        registrar = started(make_registrar(settings_for(peer.port, consul_timeout_ms=500)))
        time.sleep(0.05)
        for _ in range(5):  # each one gives up while the worker waits for the blackhole
            assert registrar.status(0.1).stale
        assert not registrar.set_maintenance(True, "x", 0.1).ok
        begun = time.monotonic()
        registrar.stop()
        # One in-flight call, then the deregistration's own short budget: not 6 more timeouts.
        assert time.monotonic() - begun < 0.5 + 0.5


class _SlowFirstRegister:
    """A Consul client whose first registration takes `delay` seconds (the agent is slow)."""

    def __init__(self, settings, delay=1.0):
        self._consul = consul_client(settings)
        self._delay = delay
        original = self._consul.agent.service.register

        def register(*args, **kwargs):
            if self._delay:
                time.sleep(self._delay)
                self._delay = 0
            return original(*args, **kwargs)
        self._consul.agent.service.register = register

    def __getattr__(self, name):
        return getattr(self._consul, name)


def test_maintenance_whose_caller_gave_up_is_applied_later(consul_agent, make_registrar, events):
    registrar = started(make_registrar(settings_for(consul_agent.http_port, resync_interval="1h"),
                                       consul_factory=_SlowFirstRegister))
    time.sleep(0.1)  # the worker is in its slow first registration
    result = registrar.set_maintenance(True, "late", 0.2)
    assert result == Result(False, "timed out after 200 ms; will keep trying")
    events.wait_for("DiscoverySetMaintenance", timeout=5)
    assert consul_agent.checks()[MAINT]["Notes"] == "late"
    assert registrar.status(2.0).maintenance_in_agent


def test_maintenance_set_outside_the_module_is_left_alone(consul_agent, make_registrar, events):
    registrar = started(make_registrar(settings_for(consul_agent.http_port,
                                                    resync_interval="100ms")))
    events.wait_for("DiscoveryRegister")
    consul_agent.put("/v1/agent/service/maintenance/pbx-1?enable=true&reason=ops")
    time.sleep(0.6)  # several resyncs
    assert consul_agent.checks()[MAINT]["Notes"] == "ops"
    status = registrar.status(2.0)
    assert status.maintenance is False and status.maintenance_in_agent is True
    assert "DiscoverySetMaintenance" not in events.names()
    # Asked for explicitly, off means off.
    assert registrar.set_maintenance(False, "", 2.0).ok
    assert MAINT not in consul_agent.checks()


def test_backoff_is_capped_by_the_resync_interval(make_registrar):
    with StandInPeer(status=503) as peer:
        registrar = started(make_registrar(settings_for(peer.port, resync_interval="200ms"),
                                           backoff_initial_s=0.05, backoff_max_s=30.0))
        time.sleep(2.0)
        registrar.stop(deregister=False)
        times = [request.time for request in peer.requests]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) >= 8, gaps  # never waiting 30 s: a healthy agent is noticed as fast
    assert max(gaps) < 0.2 + 0.15, gaps


def test_last_sync_says_what_it_did(consul_agent, make_registrar, events, wait_until):
    registrar = started(make_registrar(settings_for(consul_agent.http_port,
                                                    resync_interval="200ms")))
    events.wait_for("DiscoveryRegister")
    assert registrar.status(2.0).last_sync_result in ("ok, registered", "ok, in sync")
    wait_until(lambda: registrar.status(2.0).last_sync_result == "ok, in sync", timeout=3,
               what="a resync in sync")
    seen = set()
    consul_agent.put("/v1/agent/service/deregister/pbx-1")
    wait_until(lambda: seen.add(registrar._snapshot.last_sync_result) or
               any(s.startswith("ok, re-registered") for s in seen), timeout=3, interval=0.005,
               what="the re-registration in the last sync result")
    assert "ok, re-registered (service pbx-1 is not registered)" in seen


def test_worker_has_its_name_in_the_kernel_once_started(make_registrar, refused_port):
    registrar = started(make_registrar(settings_for(refused_port)))
    thread = registrar._thread
    assert open(f"/proc/self/task/{thread.native_id}/comm").read().strip() == "consul-registra"


# -- reload to another agent URL -----------------------------------------------------------------

def test_same_agent_under_another_url_keeps_the_registration(consul_agent, make_registrar,
                                                             events):
    settings = settings_for(consul_agent.http_port, resync_interval="1h")
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    with gaps_in_registration(consul_agent) as gaps:
        registrar.apply(dataclasses.replace(settings, host="localhost"))
        events.wait_for("DiscoveryRegister", count=2)
        time.sleep(0.3)
    assert not gaps and "pbx-1" in consul_agent.services()
    assert "DiscoveryDeregister" not in events.names()
    assert registrar.status(2.0).registered


def test_another_agent_gets_the_registration_and_the_old_one_loses_it(consul_factory,
                                                                      make_registrar, events):
    first, second = consul_factory(), consul_factory()
    settings = settings_for(first.http_port, resync_interval="300ms")
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    registrar.apply(dataclasses.replace(settings, port=second.http_port))
    events.wait_for("DiscoveryDeregister", ID="pbx-1")
    assert "pbx-1" in second.services() and "pbx-1" not in first.services()


def test_an_old_agent_that_is_down_does_not_fail_the_sync(consul_factory, make_registrar,
                                                          events, caplog, wait_until):
    caplog.set_level(logging.WARNING, logger="asterisk_consul")
    first, second = consul_factory(), consul_factory()
    settings = settings_for(first.http_port, resync_interval="300ms")
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    first.stop()
    registrar.apply(dataclasses.replace(settings, port=second.http_port))
    events.wait_for("DiscoveryRegister", count=2)
    wait_until(lambda: registrar.status(2.0).last_sync_result == "ok, in sync", timeout=3,
               what="syncs that succeed although the old agent is down")
    warnings = [r.getMessage() for r in caplog.records if "could not deregister old" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, not at every sync
    first.start()  # back (empty: a dev agent): the old registration is gone with its data
    time.sleep(0.8)
    # The module never registers with the old agent again (it only ever deregisters there).
    assert "pbx-1" not in first.services() and "pbx-1" in second.services()


# -- HTTPS to the agent --------------------------------------------------------------------------

def _https_settings(agent_proc, **overrides):
    overrides.setdefault("ca_file", agent_proc.ca_file)
    return settings_for(agent_proc.https_port, scheme="https", **overrides)


def test_https_registers_and_status_says_how(consul_factory, make_registrar, events):
    from asterisk_consul.render import show_status_text

    agent_proc = consul_factory(tls=True, tls_verify_incoming=True)
    settings = _https_settings(agent_proc, client_cert=agent_proc.client_cert,
                               client_key=agent_proc.client_key, tls_server_name="localhost")
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    assert "pbx-1" in agent_proc.services()
    text = show_status_text(StatusView(settings, registrar, 1.0))
    assert "Agent:" in text and "https://127.0.0.1:%d (reachable" % agent_proc.https_port in text
    assert ("TLS:         HTTPS, certificate verified against %s as localhost, client "
            "certificate %s" % (agent_proc.ca_file, agent_proc.client_cert)) in text


def test_https_with_a_wrong_ca_reports_tls_and_registers_nothing(consul_factory, make_registrar,
                                                                 events, tmp_path, caplog):
    from asterisk_consul.render import show_status_text
    from integration_tests.testbed.consul import make_test_certs

    agent_proc = consul_factory(tls=True)
    other = make_test_certs(tmp_path / "other")
    settings = _https_settings(agent_proc, ca_file=str(other["ca"]))
    registrar = started(make_registrar(settings))
    time.sleep(1.0)  # several retries
    status = registrar.status(timeout=1.0)
    assert not status.registered and "certificate verify failed" in status.last_error
    assert status.agent_url.startswith("https://")
    assert agent_proc.services() == {}  # nothing arrived, not over the plain HTTP port either
    assert events.names() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "TLS failure" in w]) == 1  # once, not once per retry
    text = show_status_text(StatusView(settings, registrar, 1.0))
    assert "Last error:" in text and "TLS failure talking to https://" in text


def test_https_without_verification_registers_with_an_unknown_ca(consul_factory, make_registrar,
                                                                  events, tmp_path):
    from asterisk_consul.render import show_status_text
    from integration_tests.testbed.consul import make_test_certs

    agent_proc = consul_factory(tls=True)
    other = make_test_certs(tmp_path / "other")
    settings = _https_settings(agent_proc, ca_file=str(other["ca"]), tls_verify=False)
    registrar = started(make_registrar(settings))
    events.wait_for("DiscoveryRegister")
    assert "HTTPS, certificate NOT verified (tls_verify = no)" in \
        show_status_text(StatusView(settings, registrar, 1.0))


def test_reload_to_another_ca_makes_a_new_client(consul_factory, make_registrar, events,
                                                 tmp_path, wait_until):
    from integration_tests.testbed.consul import make_test_certs

    agent_proc = consul_factory(tls=True)
    other = make_test_certs(tmp_path / "other")
    bad = _https_settings(agent_proc, ca_file=str(other["ca"]))
    registrar = started(make_registrar(bad))
    wait_until(lambda: "certificate verify failed" in registrar.status().last_error,
               what="a TLS failure")
    registrar.apply(_https_settings(agent_proc))
    events.wait_for("DiscoveryRegister")
    assert "pbx-1" in agent_proc.services()


def test_worker_log_lines_name_the_line_that_logged_not_a_helper(consul_agent, make_registrar,
                                                                  events, caplog):
    caplog.set_level(logging.INFO)
    started(make_registrar(settings_for(consul_agent.http_port)))
    events.wait_for("DiscoveryRegister")
    registered = [r for r in caplog.records if "registering service" in r.getMessage()]
    assert registered and all((r.filename, r.funcName) == ("worker.py", "_run")
                              for r in registered), [(r.filename, r.funcName) for r in registered]
