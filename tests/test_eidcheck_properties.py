"""Property tests of the EID check: parse_eid accepts exactly Asterisk's EID form, and the
handler answers only 200/400/404/405, with 200 for the exact EID (in any letter case) only."""

import re
import string

import pytest
from hypothesis import example, given, settings, strategies as st

from asterisk_consul.eidcheck import CHECK_PATH, PARAM, EidCheck, parse_eid
from asterisk_consul.web import HttpRequest

OWN_EID = "02:42:ac:11:00:02"
ALLOWED = {200, 400, 404, 405}
# The form Asterisk prints (ast_eid_to_str), written independently of the module.
EID_FORM = re.compile(r"(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")

_HEX = "0123456789abcdefABCDEF"
_OCTETS = st.lists(st.text(_HEX, min_size=2, max_size=2), min_size=6, max_size=6)
VALID_EIDS = _OCTETS.map(":".join)
# Text that is often nearly an EID: hex digits, separators, unicode look-alikes, whitespace.
_EID_NOISE = st.sampled_from(list(_HEX) + [":", "-", ".", " ", "\n", "\t", "\x00", "０", "Ａ",
                                           "٣", "ｆ", "g", "G", "x", "%3A", "::"])
NEAR_EIDS = st.lists(_EID_NOISE, max_size=24).map("".join)


def case_variants(eid):
    return st.lists(st.booleans(), min_size=len(eid), max_size=len(eid)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(eid, flips)))


# -- parse_eid ---------------------------------------------------------------------------

@settings(max_examples=500, deadline=None)
@given(VALID_EIDS)
def test_every_eid_form_parses_to_its_lowercase(text):
    assert parse_eid(text) == text.lower()


@settings(max_examples=600, deadline=None)
@given(NEAR_EIDS | st.text(max_size=40))
@example("02:42:ac:11:00:02\n")
@example(" 02:42:ac:11:00:02")
@example("02:42:ac:11:00:02:")
@example("02-42-ac-11-00-02")
@example("0242ac110002")
@example("02:42:ac:11:00:0２")
@example("")
def test_parse_eid_accepts_exactly_the_eid_form(text):
    parsed = parse_eid(text)
    if EID_FORM.fullmatch(text):
        assert parsed == text.lower()
    else:
        assert parsed is None


@pytest.mark.parametrize("value", [None, 42, b"02:42:ac:11:00:02", ["02:42:ac:11:00:02"]])
def test_parse_eid_of_non_text_is_none(value):
    assert parse_eid(value) is None


# -- the handler -------------------------------------------------------------------------

METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
                           "UNKNOWN", "", "get", "TRACE", "CONNECT"]) | st.text(max_size=10)
PATHS = st.sampled_from([CHECK_PATH, "/" + CHECK_PATH, CHECK_PATH + "/", "", "/",
                         CHECK_PATH + "/x", "x/" + CHECK_PATH, CHECK_PATH.upper(),
                         "check_eid%00", "../" + CHECK_PATH, CHECK_PATH * 50]) | st.text()
PARAM_NAMES = st.sampled_from([PARAM, PARAM.upper(), PARAM + " ", "eid", ""]) | st.text(max_size=8)
PARAM_VALUES = VALID_EIDS | NEAR_EIDS | st.text() | st.just(OWN_EID) | \
    case_variants(OWN_EID) | st.text(min_size=1000, max_size=5000)
PARAMS = st.none() | st.lists(st.tuples(PARAM_NAMES, PARAM_VALUES), max_size=40)


def request(method, path, params):
    return HttpRequest(method, path, params)


@settings(max_examples=800, deadline=None)
@given(METHODS, PATHS, PARAMS)
def test_handler_answers_only_200_400_404_405(method, path, params):
    response = EidCheck(OWN_EID).handle(request(method, path, params))
    assert response.status in ALLOWED
    assert isinstance(response.body, str) and isinstance(response.reason, str)
    assert "\r" not in response.header_block().replace("\r\n", "")
    if response.status == 200:
        # Only the check path, a read method, and our EID given exactly once.
        assert path.strip("/") == CHECK_PATH and method in ("GET", "HEAD")
        values = [v for n, v in params if n == PARAM]
        assert len(values) == 1 and values[0].lower() == OWN_EID


@settings(max_examples=500, deadline=None)
@given(case_variants(OWN_EID), st.lists(st.tuples(st.sampled_from(["a", "b", "x"]), st.text()),
                                         max_size=5), st.sampled_from(["GET", "HEAD"]))
def test_own_eid_in_any_letter_case_passes(eid, others, method):
    params = others + [(PARAM, eid)]
    assert EidCheck(OWN_EID).handle(request(method, CHECK_PATH, params)).status == 200


@settings(max_examples=600, deadline=None)
@given(VALID_EIDS | NEAR_EIDS | st.text())
def test_anything_but_our_eid_fails(value):
    status = EidCheck(OWN_EID).handle(request("GET", CHECK_PATH, [(PARAM, value)])).status
    if value.lower() == OWN_EID:
        assert status == 200
    else:
        assert status in (400, 404)
        # A well-formed other EID is a mismatch (404); anything else is a bad request (400).
        assert status == (404 if EID_FORM.fullmatch(value) else 400)


@given(VALID_EIDS)
def test_any_instance_eid_recognises_itself_and_no_other(eid):
    check = EidCheck(eid)
    assert check.handle(request("GET", CHECK_PATH, [(PARAM, eid.upper())])).status == 200
    other = "ff:ff:ff:ff:ff:fe" if eid.lower() != "ff:ff:ff:ff:ff:fe" else "00:00:00:00:00:01"
    assert check.handle(request("GET", CHECK_PATH, [(PARAM, other)])).status == 404


@pytest.mark.parametrize("params, status", [
    (None, 400),                                            # more parameters than the shim passes
    ([], 400),
    ([(PARAM, "")], 400),
    ([(PARAM, OWN_EID), (PARAM, OWN_EID)], 400),            # duplicates are ambiguous
    ([(PARAM, OWN_EID), (PARAM, "")], 400),
    ([(PARAM.upper(), OWN_EID)], 400),                      # parameter names are exact
    ([(PARAM, OWN_EID + "\x00")], 400),
    ([("other", "1"), (PARAM, OWN_EID.upper())], 200),
])
def test_parameter_edge_cases(params, status):
    assert EidCheck(OWN_EID).handle(request("GET", CHECK_PATH, params)).status == status


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "UNKNOWN"])
def test_other_methods_are_405_with_allow(method):
    response = EidCheck(OWN_EID).handle(request(method, CHECK_PATH, [(PARAM, OWN_EID)]))
    assert response.status == 405 and ("Allow", "GET, HEAD") in response.headers


@pytest.mark.parametrize("bad", ["", "asterisk", "02:42:ac:11:00", "zz:zz:zz:zz:zz:zz"])
def test_a_bad_own_eid_is_refused_at_construction(bad):
    with pytest.raises(ValueError):
        EidCheck(bad)


def test_responses_say_nothing_about_whose_box_it_is():
    check = EidCheck(OWN_EID)
    for params in ([(PARAM, "aa:bb:cc:dd:ee:ff")], [(PARAM, OWN_EID)], [(PARAM, "x")], []):
        body = check.handle(request("GET", CHECK_PATH, params)).body
        assert OWN_EID not in body.lower() and OWN_EID.replace(":", "") not in body.lower()
    assert set(string.printable) >= set(check.handle(request("GET", "nope", [])).body)
