"""Token rotation without reload, and a deleted token that never strands the registration, turn
by turn against the in-memory agent with ACLs (only the tokens a test lists exist; deleting one
is taking it out of the list) and a hand-moved clock."""

from __future__ import annotations

import logging
import os

import pytest

from asterisk_consul.registrar.choices import DRAIN, MAINTENANCE, Change
from asterisk_consul.registrar.tokenfile import LOOK_EVERY_S, SETTLE_S
from tests.fakeagent import FakeAgent
from tests.test_reconciler import DRAIN_CHECK, EID_CHECK, MAINT, SID, TTL_CHECK, Bench

OLD = "11111111-aaaa-4000-8000-000000000001"
NEW = "22222222-bbbb-4000-8000-000000000002"
NEWER = "33333333-cccc-4000-8000-000000000003"


@pytest.fixture
def agent():
    with FakeAgent(acl=True, acl_tokens=[OLD, NEW, NEWER]) as fake:
        yield fake


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "consul.token"
    path.write_text(OLD + "\n")
    return path


@pytest.fixture
def bench(agent, token_file):
    made = Bench(agent, token=OLD, token_file=str(token_file))
    made.turn()
    assert SID in agent.services()
    yield made
    made.close()


def registers_with(agent):
    return [r.token for r in agent.calls("/v1/agent/service/register", "PUT")]


def healthy(agent):
    return agent.service_health(SID)[0] == 200


def settle(bench):
    """The watch's next look finds the change, a second read SETTLE_S later takes it, and the
    next turn registers again: each turn checked to keep the service passing."""
    seen = []
    for seconds in (LOOK_EVERY_S, SETTLE_S, 0.0):
        bench.turn(seconds)
        seen.append(healthy(bench.agent))
    return seen


def test_a_token_rewritten_in_the_file_is_used_and_the_service_registered_again_with_it(
        bench, agent, token_file, caplog):
    caplog.set_level(logging.DEBUG)
    token_file.write_text(NEW + "\n")
    assert settle(bench) == [True, True, True], "never out of the healthy set"
    assert registers_with(agent) == [OLD, NEW]
    assert agent.calls("/v1/agent/service/deregister") == []
    checks = agent.checks()
    assert checks[EID_CHECK]["Status"] == "passing" and checks[TTL_CHECK]["Status"] == "passing"
    since = len(agent.requests)
    bench.turn(10.0)  # the TTL report
    assert {r.token for r in agent.requests[since:]} == {NEW}
    assert bench.secrets == [NEW], "the new token is masked in the log from now on"
    status = bench.rec.snapshot(True)
    assert status.token_standing == "accepted"
    assert status.token_from == f"file {token_file} (token_file, watched)"
    seen, in_use, registered = status.token_rotation
    assert seen <= in_use <= registered and registered - seen == pytest.approx(SETTLE_S)
    assert status.token_read_at == in_use
    assert OLD not in caplog.text and NEW not in caplog.text


def test_a_token_file_renamed_over_is_followed(bench, agent, token_file):
    fresh = token_file.with_name("consul.token.new")
    fresh.write_text(NEW)
    os.replace(fresh, token_file)
    assert settle(bench) == [True, True, True]
    assert registers_with(agent) == [OLD, NEW]
    assert bench.link.settings.token == NEW


def test_a_half_written_file_is_not_taken_until_two_reads_agree(bench, agent, token_file):
    token_file.write_text(NEW[:8])
    bench.turn(LOOK_EVERY_S)
    token_file.write_text(NEW)  # the writer finishes before the second read
    bench.turn(SETTLE_S)
    bench.turn(SETTLE_S)
    bench.turn()
    assert registers_with(agent) == [OLD, NEW]


def test_an_unchanged_file_changes_nothing(bench, agent, token_file):
    for _ in range(5):
        bench.turn(LOOK_EVERY_S)
    assert registers_with(agent) == [OLD]
    assert bench.rec.snapshot(True).token_rotation == ()


def test_an_empty_or_missing_token_file_keeps_the_token_in_use_and_says_why(bench, agent,
                                                                           token_file):
    token_file.write_text("")
    bench.turn(LOOK_EVERY_S)
    assert bench.rec.snapshot(True).token_problem == "the token file is empty"
    token_file.unlink()
    bench.turn(LOOK_EVERY_S)
    problem = bench.rec.snapshot(True).token_problem
    assert problem.startswith("cannot read the token file it names: No such file")
    assert str(token_file) not in problem
    assert bench.link.settings.token == OLD and registers_with(agent) == [OLD]
    token_file.write_text(NEW)
    settle(bench)
    assert bench.rec.snapshot(True).token_problem == "" and registers_with(agent) == [OLD, NEW]


def test_a_deleted_token_is_said_at_once_and_healed_once_the_file_holds_a_live_one(
        bench, agent, token_file):
    agent.acl_tokens.discard(OLD)  # deleted before the new one is in the file: the wrong order
    bench.turn(10.0)  # the TTL report: 403 ACL not found
    bench.turn()
    assert bench.events.names().count("DiscoveryTokenRejected") == 1
    headers = dict(bench.events.events[-1][1])
    assert headers == {"ID": SID, "Reason": "ACL not found"}
    assert bench.rec.snapshot(True).token_standing == "ACL not found"
    refused = bench.rec.change(Change(DRAIN, True, "upgrade"))
    assert not refused.ok and "ACL not found" in refused.message
    bench.turn(10.0)
    assert bench.events.names().count("DiscoveryTokenRejected") == 1, "once per change"
    assert DRAIN_CHECK not in agent.checks()

    token_file.write_text(NEW)
    settle(bench)
    assert registers_with(agent)[-1] == NEW
    assert agent.checks()[DRAIN_CHECK]["Status"] == "critical", "the wish kept is carried out"
    assert healthy(agent) is False  # draining: out of the healthy set, as asked
    status = bench.rec.snapshot(True)
    assert status.token_standing == "accepted" and status.state == "registered"


def test_a_deleted_token_is_retried_on_the_backoff_not_the_slow_retry(bench, agent):
    agent.acl_tokens.discard(OLD)
    bench.turn(30.0)  # the resync: 403 ACL not found
    assert "ACL not found" in bench.rec.snapshot(True).last_error
    assert bench.rec.service.due() - bench.clock.monotonic() <= 0.5


def test_a_rejected_token_from_the_config_waits_for_a_reload(agent):
    bench = Bench(agent, token=OLD)
    try:
        bench.turn()
        agent.acl_tokens.discard(OLD)
        bench.turn(30.0)
        bench.turn()
        status = bench.rec.snapshot(True)
        assert status.token_standing == "ACL not found" and status.token_from.startswith("config")
        # The slow retry (60 s, jittered down to half): no hurry for a token only a reload changes.
        assert 30.0 <= bench.rec.service.due() - bench.clock.monotonic() <= 60.0
        assert bench.events.names().count("DiscoveryTokenRejected") == 1
    finally:
        bench.close()


def test_the_deregistration_at_shutdown_uses_the_token_the_file_holds_now(bench, agent,
                                                                         token_file):
    token_file.write_text(NEW)
    agent.acl_tokens.discard(OLD)  # rotated and deleted before the watch looked
    bench.rec.shutdown(deregister=True, deadline=bench.clock.monotonic() + 1.0)
    assert SID not in agent.services()
    assert [r.token for r in agent.calls(f"/v1/agent/service/deregister/{SID}")] == [NEW]
    assert bench.secrets == [NEW]


def test_maintenance_is_set_again_with_the_new_token_without_a_healthy_moment(bench, agent,
                                                                             token_file):
    assert bench.rec.change(Change(MAINTENANCE, True, "upgrade")).ok
    token_file.write_text(NEW)
    assert settle(bench) == [False, False, False]
    maintenance_calls = [r for r in agent.calls(f"/v1/agent/service/maintenance/{SID}")]
    assert [(r.query["enable"], r.token) for r in maintenance_calls] == [
        ("true", OLD), ("false", NEW), ("true", NEW)]
    guard = [r for r in agent.calls("/v1/agent/check/register") if r.token == NEW]
    assert guard and guard[0].time < maintenance_calls[1].time, "guarded before the off"
    assert agent.checks()[MAINT]["Notes"] == "upgrade"
    assert bench.events.names().count("DiscoverySetMaintenance") == 1, "no news to announce"


def test_two_rotations_in_a_row_keep_both_old_tokens_masked(bench, agent, token_file):
    token_file.write_text(NEW)
    settle(bench)
    token_file.write_text(NEWER)
    settle(bench)
    assert registers_with(agent) == [OLD, NEW, NEWER]
    masked = bench.link.scrub(f"{OLD} {NEW} {NEWER}")
    assert masked == "<redacted> <redacted> <redacted>"


def test_answers_from_an_agents_acl_cache_do_not_flap_the_rejection(bench, agent):
    agent.acl_tokens.discard(OLD)
    bench.turn(10.0)  # the TTL report: 403 ACL not found
    bench.turn()
    agent.acl_tokens.add(OLD)  # a client agent still answering from its cache
    bench.turn(10.0)
    bench.turn(10.0)
    agent.acl_tokens.discard(OLD)
    bench.turn(10.0)
    bench.turn()
    assert bench.events.names().count("DiscoveryTokenRejected") == 1
    assert bench.rec.snapshot(True).token_standing == "ACL not found"
    agent.acl_tokens.add(OLD)  # really back (re-created with the same secret)
    for _ in range(7):
        bench.turn(10.0)
    assert bench.rec.snapshot(True).token_standing == "accepted"
