"""Property tests: the parser fails only with ConfigError, round-trips what it is given,
and duration parsing accepts exactly Go's duration syntax."""

import os
import re
import tempfile
from fractions import Fraction

from hypothesis import assume, example, given, settings, strategies as st

from asterisk_consul.config import ConfigError, parse_file
from asterisk_consul.loader import load_settings
from asterisk_consul.settings import settings_report
from asterisk_consul.values import parse_go_duration
from tests.configtext import parse_text, section_names
from tests.standin import StandInHost

# One directory for every example: #include lines in generated text resolve inside it.
# (Function-scoped pytest fixtures are not reset between hypothesis examples.)
_INCLUDE_DIR = tempfile.mkdtemp(prefix="config-properties-")
with open(os.path.join(_INCLUDE_DIR, "inc.conf"), "w", encoding="utf-8") as _handle:
    _handle.write("[inc]\nk = v\n")

# -- the parser fails only with ConfigError ----------------------------------------------

_FRAGMENTS = st.sampled_from([
    "[", "]", "(", ")", "!", "+", ",", "(!)", "(+)", "(a)", "(!,a)", "a", "b", "A", " ", "\t",
    "=", "=>", ";", ";--", "--;", "\\", "\\;", "#", "#include ", "#tryinclude ", "#exec ",
    "inc.conf", "nope.conf", "*.conf", "*", '"', "<", ">", "\n", "\n", "\n", "\r\n", "/",
    "..", "\x00", "é", "\u2028",
])
_CONFIG_LIKE_TEXT = st.lists(_FRAGMENTS | st.text(max_size=3), max_size=60).map("".join)


@settings(max_examples=500, deadline=None)
@given(_CONFIG_LIKE_TEXT)
def test_parse_text_raises_only_config_error(text):
    try:
        config = parse_text(text, "fuzz.conf", _INCLUDE_DIR)
    except ConfigError as exc:
        assert exc.file and str(exc)
        return
    for section in config:
        for entry in section:
            assert entry.key == entry.key.strip() and entry.key
            assert entry.value == entry.value.strip()


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_text_on_any_text(text):
    try:
        parse_text(text, "fuzz.conf", _INCLUDE_DIR)
    except ConfigError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_file_on_any_bytes(data):
    with tempfile.NamedTemporaryFile("wb", suffix=".conf", dir=_INCLUDE_DIR, delete=False) as handle:
        handle.write(data)
    try:
        parse_file(handle.name, _INCLUDE_DIR)
    except ConfigError:
        pass
    finally:
        os.unlink(handle.name)


# -- round trip --------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAMES = st.builds(lambda first, rest: first + rest, st.sampled_from(_LETTERS),
                   st.text(_LETTERS + "0123456789.-", max_size=12))
_VALUES = st.text(st.characters(exclude_characters="\n\r", exclude_categories=("Cs",)),
                  max_size=20).map(str.strip)
_SECTIONS = st.lists(
    st.tuples(_NAMES, st.lists(st.tuples(_NAMES, _VALUES), max_size=6)),
    max_size=5, unique_by=lambda section: section[0].lower())


def render(sections):
    lines = []
    for name, items in sections:
        lines.append(f"[{name}] ; a comment")
        for key, value in items:
            lines.append(f"{key} = {value.replace(';', chr(92) + ';')}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None)
@given(_SECTIONS)
def test_round_trip_of_generated_sections(sections):
    config = parse_text(render(sections), "gen.conf")
    assert section_names(config) == [name for name, _ in sections]
    for name, items in sections:
        parsed = config.section(name)
        assert [(e.key, e.value) for e in parsed] == items
        for key, _ in items:  # last one wins
            assert parsed.value(key) == [v for k, v in items if k.lower() == key.lower()][-1]


@settings(max_examples=100, deadline=None)
@given(_SECTIONS)
def test_line_numbers_point_at_the_lines(sections):
    text = render(sections)
    lines = text.split("\n")
    for section in parse_text(text, "gen.conf"):
        assert lines[section.line - 1].startswith(f"[{section.name}]")
        for entry in section:
            assert lines[entry.line - 1].startswith(f"{entry.key} = ")


# -- durations: exactly Go's syntax ------------------------------------------------------

_UNITS_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6,
             "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
# The syntax of Go's time.ParseDuration, written independently as a regex.
_GO_DURATION = re.compile(
    r"[-+]?(?:0|(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+)")
_COMPONENT = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def exact_ns(text):
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return 0, 1
    parts = _COMPONENT.findall(body)
    total = sum(Fraction(number if not number.endswith(".") else number + "0")
                * _UNITS_NS[unit] for number, unit in parts)
    return sign * total, len(parts)


_DIGITS = "0123456789"
_NUMBER = st.one_of(
    st.text(_DIGITS, min_size=1, max_size=6),
    st.builds("{}.{}".format, st.text(_DIGITS, min_size=1, max_size=4), st.text(_DIGITS, max_size=12)),
    st.builds(".{}".format, st.text(_DIGITS, min_size=1, max_size=12)),
)
_VALID_DURATIONS = st.tuples(
    st.sampled_from(["", "+", "-"]),
    st.lists(st.tuples(_NUMBER, st.sampled_from(sorted(_UNITS_NS))), min_size=1, max_size=4),
).map(lambda t: t[0] + "".join(n + u for n, u in t[1]))


@settings(max_examples=500, deadline=None)
@given(_VALID_DURATIONS)
def test_valid_go_durations_are_accepted_with_their_value(text):
    exact, components = exact_ns(text)
    assume(abs(exact) < 2**62)
    value = parse_go_duration(text)
    # Go truncates each fractional part to whole nanoseconds.
    assert abs(value - exact) <= components


_DURATION_ALPHABET = st.sampled_from(list("0123456789..+-nsuµμmh") + ["ms", "us", " ", "d", "e", "S"])


@settings(max_examples=1000, deadline=None)
@given(st.lists(_DURATION_ALPHABET, max_size=12).map("".join) | st.text(max_size=8))
def test_duration_accepted_exactly_when_go_syntax(text):
    if _GO_DURATION.fullmatch(text):
        assume(abs(exact_ns(text)[0]) < 2**62)
        parse_go_duration(text)
    else:
        try:
            parse_go_duration(text)
        except ValueError:
            return
        raise AssertionError(f"accepted {text!r}, which Go refuses")


@given(st.integers(min_value=2**63, max_value=2**70), st.sampled_from(sorted(_UNITS_NS)))
def test_durations_beyond_int64_are_refused(count, unit):
    try:
        parse_go_duration(f"{count}{unit}")
    except ValueError:
        return
    raise AssertionError("accepted an overflowing duration")


# -- the loader fails only with ConfigError ----------------------------------------------

_OPTIONS = st.sampled_from([
    "enabled", "host", "port", "token", "token_file", "scheme", "id", "name", "tags",
    "discovery_ip", "discovery_port", "discovery_interface", "metadata_profile", "check",
    "check_http_port", "check_interval", "check_timeout", "check_deregister_after",
    "consul_timeout_ms", "resync_interval", "unknown_option",
])
_LOADER_DIR = tempfile.mkdtemp(prefix="settings-properties-")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_OPTIONS, _VALUES), max_size=4),
       st.dictionaries(st.sampled_from(["CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE"]),
                       _VALUES, max_size=3))
@example(options=[], environ={"CONSUL_HTTP_TOKEN_FILE": "\x00"})
@example(options=[("token_file", "a\x00b")], environ={})
def test_load_settings_raises_only_config_error_and_hides_the_token(options, environ):
    secret_mark = "Zq9secret"  # token values carry it, so a leak is easy to spot
    lines = []
    for name, value in options:
        section = "[general]" if name == "enabled" else "[consul]"
        lines.append(section + "(+)" if section in lines else section)
        if name == "token":
            value = secret_mark + value
        lines.append(f"{name} = {value.replace(';', chr(92) + ';')}")
    assume(not any(secret_mark in v for n, v in options if n != "token"))
    assume(not any(secret_mark in v for v in environ.values()))
    with open(os.path.join(_LOADER_DIR, "res_discovery_consul.conf"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    try:
        loaded, warnings = load_settings(StandInHost(config_dir=_LOADER_DIR), environ)
    except ConfigError as exc:
        messages = [str(exc)]
    else:
        assert "auto" not in (loaded.discovery_ip, loaded.service_id)
        messages = warnings + [cell for row in settings_report(loaded) for cell in row]
    assert not any(secret_mark in message for message in messages)


# -- the loader: determinism, validity of what loads, located errors ----------------------

_GOOD_VALUES = {
    "enabled": st.sampled_from(["yes", "no", "on", "off", "1", "0", "true", "false", "Yes"]),
    "host": st.sampled_from(["127.0.0.1", "::1", "[::1]", "consul.local", "localhost"]),
    "port": st.integers(1, 65535).map(str),
    "scheme": st.sampled_from(["http", "https", "HTTP"]),
    "token": st.text("0123456789abcdef-", min_size=1, max_size=36),
    "consul_timeout_ms": st.integers(1, 60000).map(str),
    "id": st.sampled_from(["asterisk", "auto", "pbx-1", "edge.a"]),
    "name": st.sampled_from(["Asterisk", "auto", "pbx"]),
    "tags": st.lists(st.sampled_from(["a", "b", "edge", "x y"]), max_size=4).map(",".join),
    "discovery_ip": st.sampled_from(["127.0.0.1", "10.0.0.1", "::1", "auto"]),
    "discovery_port": st.integers(1, 65535).map(str),
    "discovery_interface": st.just("lo"),
    "check": st.sampled_from(["yes", "no"]),
    "check_http_port": st.integers(1, 65535).map(str),
    "check_interval": st.sampled_from(["1s", "15s", "1m30s", "500ms", "2h"]),
    "check_timeout": st.sampled_from(["1s", "3s", "250ms"]),
    "check_deregister_after": st.sampled_from(["30s", "1m", "90m"]),
    "resync_interval": st.sampled_from(["1s", "30s", "5m", "100ms"]),
}
_ANY_OPTION_VALUE = st.sampled_from(sorted(_GOOD_VALUES)).flatmap(
    lambda name: st.tuples(st.just(name), _GOOD_VALUES[name] | _VALUES))


def _write_options(options, extra=""):
    lines = []
    for name, value in options:
        section = "[general]" if name == "enabled" else "[consul]"
        lines.append(section + "(+)" if section in lines else section)
        lines.append(f"{name} = {value.replace(';', chr(92) + ';')}")
    path = os.path.join(_LOADER_DIR, "res_discovery_consul.conf")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n" + extra)
    return path


def _load(host=None):
    host = host or StandInHost(config_dir=_LOADER_DIR)
    try:
        return load_settings(host, {})[0], None
    except ConfigError as exc:
        return None, str(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ANY_OPTION_VALUE, max_size=8))
def test_loading_the_same_file_twice_gives_the_same_settings(options):
    # What `module reload` relies on to do nothing for an unchanged file.
    _write_options(options)
    host = StandInHost(config_dir=_LOADER_DIR)
    first, first_error = _load(host)
    second, second_error = _load(host)
    assert first == second and first_error == second_error


@settings(max_examples=400, deadline=None)
@given(st.lists(_ANY_OPTION_VALUE, max_size=8))
def test_whatever_loads_is_valid_for_consul(options):
    _write_options(options)
    loaded, error = _load()
    if loaded is None:
        assert error
        return
    assert 1 <= loaded.port <= 65535 and 1 <= loaded.discovery_port <= 65535
    assert 1 <= loaded.check_http_port <= 65535 and 1 <= loaded.consul_timeout_ms <= 60000
    assert loaded.scheme in ("http", "https")
    for duration in (loaded.check_interval, loaded.check_timeout,
                     loaded.check_deregister_after, loaded.resync_interval):
        assert parse_go_duration(duration) > 0
    assert "/" not in loaded.service_id and loaded.service_id not in ("", "auto")
    assert loaded.discovery_ip != "auto" and loaded.name != "auto"
    assert all(" " < c < "\x7f" for c in loaded.token)
    assert all(tag and tag == tag.strip() for tag in loaded.tags)
    assert loaded.agent_url.startswith(loaded.scheme + "://")


@settings(max_examples=300, deadline=None)
@given(st.lists(_ANY_OPTION_VALUE, min_size=1, max_size=6))
def test_option_errors_name_the_file_and_line(options):
    path = _write_options(options)
    loaded, error = _load()
    if error is None:
        return
    with open(path, encoding="utf-8") as handle:
        count = len(handle.read().split("\n"))
    match = re.match(r"res_discovery_consul\.conf:(\d+): ", error)
    assert match and 1 <= int(match.group(1)) <= count, error


@settings(max_examples=300, deadline=None)
@given(st.lists(_ANY_OPTION_VALUE, max_size=4), _CONFIG_LIKE_TEXT)
def test_loader_on_options_plus_syntax_noise_raises_only_config_error(options, noise):
    _write_options(options, extra=noise)
    try:
        loaded, warnings = load_settings(StandInHost(config_dir=_LOADER_DIR), {})
    except ConfigError as exc:
        assert str(exc)
        return
    assert isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)
