"""What the checks say of Asterisk (the verdict), busy_channels' hysteresis, and the EID
endpoint's answers by verdict and instance token: pure, no Asterisk, no Consul."""

import pytest

from asterisk_consul.eidcheck import CHECK_PATH, INSTANCE_PARAM, PARAM, EidCheck
from asterisk_consul.health import BUSY_DWELL_S, AsteriskState, BusyState, Verdict, verdict
from asterisk_consul.web import HttpRequest

EID = "02:42:ac:11:00:02"


def state(booted=True, shutting_down=False, channels=0):
    return AsteriskState(booted=booted, shutting_down=shutting_down,
                         stop_requested=shutting_down, channels=channels)


def test_verdict_follows_asterisk_starting_idle_busy_and_stopping():
    starting = verdict(state(booted=False), False, "22.1.0", EID, 0)
    assert (starting.ttl_status, starting.http_status, starting.http_check_status) == \
        ("warning", 503, "critical")  # not routable before fully booted
    idle = verdict(state(), False, "22.1.0", EID, 10)
    assert (idle.ttl_status, idle.http_status, idle.http_check_status) == ("passing", 200, "passing")
    busy = verdict(state(channels=12), True, "22.1.0", EID, 10)
    assert (busy.ttl_status, busy.http_status, busy.http_check_status) == ("warning", 429, "warning")
    assert "busy: 10 active channels or more" in busy.output
    stopping = verdict(state(shutting_down=True, channels=3), True, "22.1.0", EID, 10)
    assert (stopping.ttl_status, stopping.http_status) == ("critical", 503)


@pytest.mark.parametrize("booted, shutting_down, expected", [
    (False, False, ("warning", "Asterisk 22.1.0 is starting: not fully booted yet")),
    (True, False, ("passing", f"Asterisk 22.1.0 is fully booted (EID {EID})")),
    (True, True, ("critical", "Asterisk 22.1.0 is shutting down")),
    (False, True, ("critical", "Asterisk 22.1.0 is shutting down")),  # a stop wins over booting
])
def test_the_ttl_check_reports_the_state_with_the_version_and_eid(booted, shutting_down, expected):
    said = verdict(state(booted=booted, shutting_down=shutting_down), False, "22.1.0", EID, 0)
    assert (said.ttl_status, said.output) == expected


def test_busy_at_the_threshold_idle_below_ninety_percent_never_faster_than_the_dwell():
    busy, now = BusyState(), 100.0
    assert not busy.update(9, 10, now) and not busy.busy
    assert busy.update(10, 10, now) and busy.busy            # at the threshold
    now += BUSY_DWELL_S
    assert not busy.update(9, 10, now) and busy.busy         # 90 %: still busy
    assert busy.update(8, 10, now) and not busy.busy         # below 90 %: idle
    assert not busy.update(50, 10, now + 1) and not busy.busy  # within the dwell: holds
    assert busy.update(50, 10, now + BUSY_DWELL_S) and busy.busy
    assert busy.update(50, 0, now + 2 * BUSY_DWELL_S) and not busy.busy  # 0: off


def poll(check, eid=EID, instance=None, method="GET"):
    params = [(PARAM, eid)] + ([(INSTANCE_PARAM, instance)] if instance is not None else [])
    return check.handle(HttpRequest(method, CHECK_PATH, params))


def test_the_eid_endpoint_answers_the_verdict_to_this_start_and_404_to_another():
    check = EidCheck(EID, instance="a1b2")
    assert (poll(check, instance="a1b2").status, poll(check, instance="a1b2").body) == \
        (200, "EID match\n")
    assert poll(check, instance="0000").status == 404        # an earlier start's registration
    assert poll(check, instance="0000").body == "instance mismatch\n"
    assert poll(check, eid="02:42:ac:11:00:09", instance="a1b2").status == 404  # another box
    assert poll(check).status == 200                          # no token: the EID decides
    check.show(Verdict("warning", "busy", 429, "Too Many Requests", "EID match, busy"))
    assert poll(check, instance="a1b2").status == 429
    assert poll(check, instance="0000").status == 404         # a busy box still rejects others
    check.show(Verdict("warning", "starting", 503, "Service Unavailable", "Asterisk is starting"))
    assert poll(check, instance="a1b2", method="HEAD").status == 503
    check.show(Verdict("passing", "booted", 200, "OK", "EID match"))
    assert poll(check, instance="a1b2").status == 200


def test_consuls_poll_takes_the_fast_path_with_the_same_answer():
    check = EidCheck(EID, instance="a1b2")
    fast = poll(check, instance="a1b2")
    slow = check.handle(HttpRequest("GET", CHECK_PATH, [(PARAM, EID), (INSTANCE_PARAM, "a1b2"),
                                                        ("x", "")]))
    assert fast is slow


def test_a_dead_sip_stack_makes_a_booted_box_critical_with_the_reason():
    from asterisk_consul.health import SipHealth
    reason = "SIP: no answer on udp 127.0.0.1:5060 within 500 ms"
    dead = verdict(state(), False, "22.1.0", EID, 0, SipHealth("critical", reason))
    assert (dead.ttl_status, dead.http_status, dead.http_body) == ("critical", 503, reason)
    assert dead.output == f"Asterisk 22.1.0 takes no SIP calls: {reason}"


def test_a_sip_503_is_a_warning_and_a_stop_still_wins_over_sip():
    from asterisk_consul.health import SipHealth
    overloaded = SipHealth("warning", "SIP: udp 127.0.0.1:5060 answers 503 Service Unavailable")
    said = verdict(state(), False, "22.1.0", EID, 0, overloaded)
    assert (said.ttl_status, said.http_status) == ("warning", 429)
    stopping = verdict(state(shutting_down=True), False, "22.1.0", EID, 0,
                       SipHealth("critical", "SIP: no SIP channel driver loaded"))
    assert stopping.output == "Asterisk 22.1.0 is shutting down"
    alive = verdict(state(), False, "22.1.0", EID, 0, SipHealth("passing", "SIP answers"))
    assert alive == verdict(state(), False, "22.1.0", EID, 0)  # passing: as without SIP
