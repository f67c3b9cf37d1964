"""The EID check's fast path (Consul's own poll: our EID, alone, on the check path) answers
exactly what the full checks answer, and responses are encoded once for the shim."""

from hypothesis import given, settings, strategies as st

from asterisk_consul.eidcheck import CHECK_PATH, PARAM, EidCheck
from asterisk_consul.web import HttpRequest

OWN_EID = "02:42:ac:11:00:02"


def ascii_case_variants(eid):
    return st.lists(st.booleans(), min_size=len(eid), max_size=len(eid)).map(
        lambda flips: "".join(c.upper() if f else c for c, f in zip(eid, flips)))


def full_checks_answer(check, request):
    """The answer of the slow path alone, for requests the fast path would take: a request
    with one extra, unrelated parameter skips the fast path and must end the same way."""
    padded = HttpRequest(request.method, request.path, request.params + [("x", "")])
    return check.handle(padded)


@settings(max_examples=300, deadline=None)
@given(ascii_case_variants(OWN_EID), st.sampled_from(["GET", "HEAD"]))
def test_consuls_poll_in_any_letter_case_matches(value, method):
    check = EidCheck(OWN_EID.upper())
    request = HttpRequest(method, CHECK_PATH, [(PARAM, value)])
    answer = check.handle(request)
    assert (answer.status, answer.body) == (200, "EID match\n")
    assert full_checks_answer(check, request) is answer


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["GET", "HEAD", "POST"]), st.sampled_from([CHECK_PATH, "/" + CHECK_PATH, "x"]),
       st.lists(st.tuples(st.sampled_from([PARAM, "other"]),
                          ascii_case_variants(OWN_EID) | st.text(max_size=20)), max_size=3))
def test_a_200_is_only_ever_our_eid_given_once(method, path, params):
    response = EidCheck(OWN_EID).handle(HttpRequest(method, path, params))
    if response.status == 200:
        assert method in ("GET", "HEAD") and path.strip("/") == CHECK_PATH
        assert [v.lower() for n, v in params if n == PARAM] == [OWN_EID]


def test_the_encoded_answer_is_what_the_shim_sends_and_is_made_once():
    answer = EidCheck(OWN_EID).handle(HttpRequest("GET", CHECK_PATH, [(PARAM, OWN_EID)]))
    reason, headers, body = answer.wire()
    assert (reason, body) == (b"OK", b"EID match\n")
    assert headers == b"Content-Type: text/plain\r\n"
    assert answer.wire() is answer.wire()
