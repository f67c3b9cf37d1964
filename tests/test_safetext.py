"""safetext: the one scrubber of secrets, and a peer's text cut to one short line."""

from asterisk_consul.safetext import REDACTED, SHORT_CHARS, scrub, short


def test_every_occurrence_of_every_secret_is_masked():
    assert scrub("a=tok1 b=tok2 again tok1", ["tok1", "tok2"]) == \
        f"a={REDACTED} b={REDACTED} again {REDACTED}"


def test_a_secret_inside_a_longer_one_does_not_leave_half_of_it():
    # Shortest first would give "xx<redacted>xx": the longer secret's ends would show.
    assert scrub("xxabcxx abc", ["abc", "xxabcxx"]) == f"{REDACTED} {REDACTED}"


def test_no_token_set_masks_nothing():
    # str.replace("", ...) would put the mask between every character.
    assert scrub("GET /v1/agent/self", ["", ""]) == "GET /v1/agent/self"
    assert scrub("plain", []) == "plain"


def test_a_page_becomes_one_line_cut_after_the_limit():
    page = "<html>\n  <body>\t" + "x" * 500 + "</body>\n</html>"
    line = short(page)
    assert "\n" not in line and "\t" not in line and line.startswith("<html> <body> x")
    assert len(line) == SHORT_CHARS + 1 and line.endswith("…")
    assert short("a  b\r\nc", limit=3) == "a b…"
    assert short(None) == "" and short("fits") == "fits"
