"""The EID check's fixed answer (what the shim may send without calling Python) is exactly
what the handler answers to every request the shim's rule covers."""

from hypothesis import given, settings, strategies as st

from asterisk_consul.eidcheck import CHECK_PATH, PARAM, EidCheck
from asterisk_consul.web import HttpRequest

OWN_EID = "02:42:ac:11:00:02"


def ascii_case_variants(eid):
    return st.lists(st.booleans(), min_size=len(eid), max_size=len(eid)).map(
        lambda flips: "".join(c.upper() if f else c for c, f in zip(eid, flips)))


def covered_by_rule(answer, method, path, params):
    """The shim's rule (shim.c declared_answer): GET/HEAD, the exact path, one parameter,
    its value equal to the declared one in ASCII letter case."""
    if method not in ("GET", "HEAD") or path != answer.path or len(params) != 1:
        return False
    name, value = params[0]
    return (name == answer.param and value.isascii() and len(value) == len(answer.value)
            and value.lower() == answer.value.lower())


def test_the_check_declares_one_answer_for_its_own_eid():
    [answer] = EidCheck(OWN_EID.upper()).fixed_answers
    assert (answer.path, answer.param, answer.value) == (CHECK_PATH, PARAM, OWN_EID)
    assert answer.response.status == 200


@settings(max_examples=300, deadline=None)
@given(ascii_case_variants(OWN_EID), st.sampled_from(["GET", "HEAD"]))
def test_every_request_the_rule_covers_gets_the_fixed_answer_from_the_handler(value, method):
    check = EidCheck(OWN_EID)
    [answer] = check.fixed_answers
    params = [(PARAM, value)]
    assert covered_by_rule(answer, method, CHECK_PATH, params)
    assert check.handle(HttpRequest(method, CHECK_PATH, params)) is answer.response


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["GET", "HEAD", "POST"]), st.sampled_from([CHECK_PATH, "/" + CHECK_PATH, "x"]),
       st.lists(st.tuples(st.sampled_from([PARAM, "other"]),
                          ascii_case_variants(OWN_EID) | st.text(max_size=20)), max_size=3))
def test_the_handler_agrees_with_the_rule_wherever_the_rule_applies(method, path, params):
    check = EidCheck(OWN_EID)
    [answer] = check.fixed_answers
    response = check.handle(HttpRequest(method, path, params))
    if covered_by_rule(answer, method, path, params):
        assert response is answer.response
    else:
        # Outside the rule the handler decides; a 200 is still only ever our EID, alone or not.
        assert response.status != 200 or [v.lower() for n, v in params if n == PARAM] == [OWN_EID]


def test_the_encoded_answer_is_what_the_shim_sends():
    [answer] = EidCheck(OWN_EID).fixed_answers
    reason, headers, body = answer.response.wire()
    assert (reason, body) == (b"OK", b"EID match\n")
    assert headers == b"Content-Type: text/plain\r\n"
    assert answer.response.wire() is answer.response.wire()  # made once
