"""Typed values of the config file: each parser takes an option's text and returns the value
code uses, or raises InvalidValue saying what the option must be (the loader adds file, line
and option). Pure: no I/O, no Asterisk.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Dict, Mapping, Optional, Tuple

from . import netinfo

_TRUE_WORDS = {"yes", "true", "y", "t", "1", "on"}      # Asterisk's ast_true()
_FALSE_WORDS = {"no", "false", "n", "f", "0", "off"}    # Asterisk's ast_false()

_DURATION_UNITS_NS = {
    "ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3,
    "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
}
_DURATION_HINT = "a duration with a unit, like 10s, 1m30s, 500ms or 1h"
_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_INT64_MAX = (1 << 63) - 1
CHECK_TYPES = ("auto", "http", "ttl", "both")
KV_PLACEHOLDERS = ("ID", "NAME", "EID", "ADDRESS", "PORT", "VERSION")
_KV_PLACEHOLDER = re.compile(r"\$\$|\$\{([^}]*)\}|\$")
KV_MAX_KEY_CHARS = 512
SESSION_TTL_MIN_NS = 10 * 10**9   # Consul's bounds for a session TTL
SESSION_TTL_MAX_NS = 86400 * 10**9


class InvalidValue(ValueError):
    """A value that does not fit its option; the loader adds file, line and option."""


class Duration(str):
    """A Go duration as the operator wrote it (Consul is sent exactly that), parsed once:
    .ns and .seconds are for code. Compares and prints as its text."""

    __slots__ = ("ns",)
    ns: int   # nanoseconds

    def __new__(cls, text: str) -> "Duration":
        if isinstance(text, Duration):
            return text
        value = super().__new__(cls, text)
        value.ns = parse_go_duration(text)
        return value

    @property
    def seconds(self) -> float:
        return self.ns / 1e9



# -- parsers ------------------------------------------------------------------------------

def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise InvalidValue("must be yes or no (also accepted: true/false, on/off, 1/0)")


def parse_int(text: str, low: int, high: int) -> int:
    # Length first: int() refuses strings of thousands of digits with a bare ValueError.
    if not re.fullmatch(r"[0-9]{1,18}", text.lstrip("0") or "0"):
        raise InvalidValue(f"must be a whole number from {low} to {high}")
    number = int(text.lstrip("0") or "0")
    if not low <= number <= high:
        raise InvalidValue(f"must be a whole number from {low} to {high}")
    return number


def parse_port(text: str) -> int:
    return parse_int(text, 1, 65535)


def parse_go_duration(text: str) -> int:
    """Nanoseconds in a Go duration string, accepting exactly what Go's time.ParseDuration does.

    Consul parses Interval, Timeout, ... with Go, so anything else would be refused there.
    """
    invalid = InvalidValue(f"must be {_DURATION_HINT}")
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total = 0
    while rest:
        if not (rest[0] == "." or "0" <= rest[0] <= "9"):
            raise invalid
        digits = _leading_digits(rest)
        whole_text, rest = rest[:digits], rest[digits:]
        fraction_text = ""
        if rest[:1] == ".":
            rest = rest[1:]
            digits = _leading_digits(rest)
            fraction_text, rest = rest[:digits], rest[digits:]
        if not whole_text and not fraction_text:
            raise invalid  # no digits at all, e.g. ".s"
        unit_end = 0
        while unit_end < len(rest) and not (rest[unit_end] == "." or "0" <= rest[unit_end] <= "9"):
            unit_end += 1
        if unit_end == 0:
            raise InvalidValue(f"has a number without a unit: must be {_DURATION_HINT}")
        unit_name, rest = rest[:unit_end], rest[unit_end:]
        unit = _DURATION_UNITS_NS.get(unit_name)
        if unit is None:
            raise InvalidValue(f"has an unknown unit '{unit_name}': must be {_DURATION_HINT}")
        # 20 digits already exceed int64; checking the length keeps int() away from huge strings.
        whole = int(whole_text.lstrip("0") or "0") if len(whole_text.lstrip("0")) <= 20 else 1 << 64
        if whole > (1 << 63) // unit:
            raise InvalidValue("is too long a duration (Go durations stop at about 292 years)")
        value = whole * unit
        if fraction_text:
            value += _fraction_ns(fraction_text, unit)
            if value > 1 << 63:
                raise InvalidValue("is too long a duration (Go durations stop at about 292 years)")
        total += value
        if total > 1 << 63:
            raise InvalidValue("is too long a duration (Go durations stop at about 292 years)")
    if negative:
        return -total
    if total > _INT64_MAX:
        raise InvalidValue("is too long a duration (Go durations stop at about 292 years)")
    return total


def _leading_digits(text: str) -> int:
    count = 0
    while count < len(text) and "0" <= text[count] <= "9":
        count += 1
    return count


def _fraction_ns(digits: str, unit: int) -> int:
    # As Go: accumulate digits until the next one would overflow int64, then
    # multiply in float64 and truncate (so results match Consul to the nanosecond).
    fraction, scale = 0, 1.0
    overflow = False
    for ch in digits:
        if overflow:
            continue
        if fraction > _INT64_MAX // 10:
            overflow = True
            continue
        candidate = fraction * 10 + int(ch)
        if candidate > 1 << 63:
            overflow = True
            continue
        fraction = candidate
        scale *= 10
    return int(float(fraction) * (float(unit) / scale))


def parse_duration(text: str) -> Duration:
    """A positive Go duration, kept as written (Consul takes the string)."""
    if re.fullmatch(r"[-+]?[0-9.]+", text):
        raise InvalidValue(f"has no unit: must be {_DURATION_HINT}")
    duration = Duration(text)
    if duration.ns <= 0:
        raise InvalidValue(f"must be more than zero: {_DURATION_HINT}")
    return duration




def parse_tags(text: str) -> Tuple[str, ...]:
    """Comma-separated tags, blanks dropped, each once (first spelling and order kept); in
    linear time, however long the line."""
    tags: Dict[str, None] = {}
    for item in text.split(","):
        tag = item.strip()
        if tag:
            tags.setdefault(tag, None)
    return tuple(tags)


def is_host_name(text: str) -> bool:
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
        return False
    return not labels[-1].isdigit()  # '10.0.0' is a broken IPv4 address, not a name


def parse_address(text: str) -> str:
    """An IPv4/IPv6 address or a host name; '[::1]' is accepted and unbracketed."""
    bracketed = text.startswith("[") and text.endswith("]")
    try:
        return str(ipaddress.ip_address(text[1:-1] if bracketed else text))
    except ValueError:
        pass
    if not bracketed and is_host_name(text):
        return text
    raise InvalidValue("must be an IPv4 or IPv6 address or a host name")


def parse_scheme(text: str) -> str:
    scheme = text.lower()
    if scheme not in ("http", "https"):
        raise InvalidValue("must be http or https")
    return scheme


def parse_service_id(text: str) -> str:
    if "/" in text or "\\" in text or has_control(text):
        raise InvalidValue("must not contain '/', '\\' or control characters (Consul uses it "
                           "in URLs and in filters)")
    if text in (".", ".."):
        raise InvalidValue("must not be '.' or '..' (in a URL path they name another path: "
                           "the service could never be deregistered)")
    return text


def parse_service_name(text: str) -> str:
    if has_control(text) or "/" in text:
        raise InvalidValue("must not contain '/' or control characters")
    if text in (".", ".."):
        raise InvalidValue("must not be '.' or '..' (in a URL path they name another path)")
    return text


def parse_interface(text: str) -> str:
    try:
        netinfo.check_interface_name(text)
    except netinfo.InterfaceAddressError as exc:
        raise InvalidValue(str(exc)) from None
    return text


def parse_metadata_profile(text: str) -> str:
    if has_control(text) or any(c.isspace() or c in "[]" for c in text):
        raise InvalidValue("must be a section name suffix without spaces or brackets")
    return text


def parse_tls_server_name(text: str) -> str:
    """The name the agent's certificate must carry: a DNS name or an IP address."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if is_host_name(text):
        return text.rstrip(".")
    raise InvalidValue("must be a host name (as in the agent's certificate) or an IP address")


def parse_event_name(text: str) -> str:
    """A Consul user event name: Consul reserves names starting with '_'."""
    if text.startswith("_"):
        raise InvalidValue("must not start with '_' (Consul reserves those event names)")
    if not _EVENT_NAME.fullmatch(text):
        raise InvalidValue("must be 1 to 128 letters, digits, '-', '_', '.' or ':'")
    return text


def parse_check_type(text: str) -> str:
    kind = text.lower()
    if kind not in CHECK_TYPES:
        raise InvalidValue("must be auto (both when Asterisk's HTTP server can answer the "
                           "agent, else ttl), http (Consul polls the EID endpoint), ttl (the "
                           "module reports to Consul) or both")
    return kind


AUTO_PORT = 0  # discovery_port = auto, until resolve.py reads the SIP stack's port
SIP_CHECK_MODES = ("auto", "yes", "no")


def parse_sip_port(text: str) -> int:
    """A port, or auto (AUTO_PORT): the SIP stack's own."""
    if text.strip().lower() == "auto":
        return AUTO_PORT
    try:
        return parse_port(text)
    except InvalidValue:
        raise InvalidValue("must be a whole number from 1 to 65535, or auto (the SIP stack's "
                           "port)") from None


def parse_sip_check(text: str) -> str:
    """auto, yes or no (the usual spellings of yes and no too)."""
    word = text.strip().lower()
    if word == "auto":
        return word
    try:
        return "yes" if parse_bool(word) else "no"
    except InvalidValue:
        raise InvalidValue("must be auto (on when a SIP channel driver is loaded), yes or no") \
            from None


def parse_sip_transport(text: str) -> str:
    """A pjsip.conf section name."""
    name = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise InvalidValue("must be the name of a pjsip.conf transport section "
                           "(letters, digits, '_', '.', '-')")
    return name


def parse_check_ttl(text: str) -> Duration:
    duration = parse_duration(text)
    if duration.ns < 10**9:
        raise InvalidValue("must be at least 1s (the module reports every third of it)")
    return duration


def parse_session_ttl(text: str) -> Duration:
    duration = parse_duration(text)
    if not SESSION_TTL_MIN_NS <= duration.ns <= SESSION_TTL_MAX_NS:
        raise InvalidValue("must be from 10s to 24h (Consul's bounds for a session TTL)")
    return duration


def kv_template_problem(text: str) -> Optional[str]:
    """Why a [kv] value or kv_prefix is not a valid template, or None.

    ${ID} ${NAME} ${EID} ${ADDRESS} ${PORT} ${VERSION} are replaced; $$ is a '$'."""
    for match in _KV_PLACEHOLDER.finditer(text):
        if match.group(0) == "$$":
            continue
        name = match.group(1)
        if name is None:
            return "has a '$' that starts no ${NAME} placeholder (write $$ for a '$')"
        if name not in KV_PLACEHOLDERS:
            return (f"has an unknown placeholder ${{{name}}} (known: "
                    f"{', '.join('${%s}' % n for n in KV_PLACEHOLDERS)})")
    return None


def render_kv_template(text: str, values: Mapping[str, str]) -> str:
    """The template with its placeholders replaced (validated at load: unknown ones stay)."""
    def replace(match: "re.Match[str]") -> str:
        if match.group(0) == "$$" or match.group(1) is None:
            return "$"
        return values.get(match.group(1), match.group(0))
    return _KV_PLACEHOLDER.sub(replace, text)


def parse_kv_prefix(text: str) -> str:
    problem = kv_template_problem(text)
    if problem:
        raise InvalidValue(problem)
    if text.startswith("/") or has_control(text):
        raise InvalidValue("must not start with '/' or contain control characters")
    return text.rstrip("/")


def check_kv_key(key: str) -> None:
    """A key of [kv]: one path below kv_prefix."""
    if len(key) > KV_MAX_KEY_CHARS or has_control(key) or any(c.isspace() for c in key):
        raise InvalidValue(f"key must be at most {KV_MAX_KEY_CHARS} characters without spaces "
                           f"or control characters")
    if key.startswith("/") or key.endswith("/") or "//" in key or \
            any(part in (".", "..") for part in key.split("/")):
        raise InvalidValue("key must be a relative path below kv_prefix (no leading or "
                           "trailing '/', no '.' or '..' parts)")
    if "$" in key:
        raise InvalidValue("key must not contain '$' (only values and kv_prefix are templates)")


def check_token(text: str) -> str:
    """Tokens go into an HTTP header: refuse anything that could break it. Never echoes it.

    Consul's tokens are UUIDs; anything but printable ASCII would fail later in the HTTP
    library, whose error messages may quote part of the value.
    """
    if any(c.isspace() or is_control(c) for c in text):
        raise InvalidValue("contains whitespace or control characters (value not shown)")
    if not all(" " < c < "\x7f" for c in text):
        raise InvalidValue("contains characters other than printable ASCII (value not shown)")
    return text


def is_control(ch: str) -> bool:
    return ord(ch) < 0x20 or ord(ch) == 0x7F


def has_control(text: str) -> bool:
    return any(is_control(c) for c in text)
