"""The module's effective settings: one immutable value built from the config file.

The loader (below the dataclasses) reads res_discovery_consul.conf through config.py,
applies defaults and fallbacks, validates, and records where each value came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from . import netinfo
from .config import Config, ConfigError, Entry, Section, parse_file, read_regular_file


@dataclass(frozen=True)
class Settings:
    enabled: bool = True

    # Consul agent
    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = 8500
    token: str = field(default="", repr=False)  # secret: only ever sent as X-Consul-Token
    consul_timeout_ms: int = 2000

    # TLS to the agent (used when scheme is https). Paths are absolute once loaded.
    ca_file: str = ""            # PEM bundle of the CAs to trust ("": the system's)
    ca_path: str = ""            # directory of PEM CA certificates
    client_cert: str = ""        # PEM client certificate, sent when the agent asks for one
    client_key: str = ""         # its private key (path only: never read into the settings)
    tls_verify: bool = True      # False: the agent's certificate is not checked at all
    tls_server_name: str = ""    # name the certificate must carry ("": the host connected to)

    # The service (ids and names resolved: no 'auto' or 'asterisk' left here)
    service_id: str = "asterisk"
    name: str = "Asterisk"
    tags: Tuple[str, ...] = ("asterisk",)
    discovery_ip: str = "127.0.0.1"
    discovery_port: int = 5060
    discovery_interface: str = "eth0"
    metadata_profile: str = ""
    metadata: Tuple[Tuple[str, str], ...] = ()  # from [metadata_<profile>], in file order

    # The health checks: the HTTP EID check Consul polls, and/or a TTL check we report to
    check: bool = False
    check_type: str = "http"     # http, ttl or both
    check_http_port: int = 8088  # https: Asterisk's TLS port from http.conf unless set
    check_scheme: str = "http"   # https: Consul polls Asterisk's TLS server (http.conf tlsenable)
    check_tls_server_name: str = ""    # name Consul checks Asterisk's certificate against
    check_tls_skip_verify: bool = False
    check_interval: str = "15s"
    check_timeout: str = "3s"
    check_ttl: str = "30s"       # TTL check: critical if not reported within this
    check_deregister_after: str = "30s"

    # Facts read from http.conf (Asterisk's HTTP server)
    http_prefix: str = ""
    ari_port: int = 8088
    ari_scheme: str = "http"

    # Housekeeping
    resync_interval: str = "30s"

    # Consul KV: keys written under kv_prefix, held by a session (Behavior delete). Values and
    # the prefix are templates (${ID}, ${EID}, ...) rendered with the registration's facts.
    kv: Tuple[Tuple[str, str], ...] = ()  # from [kv], in file order
    kv_prefix: str = "${ID}"
    kv_session_ttl: str = "30s"

    # Consul user events fired after a change Consul accepted (PUT /v1/event/fire/<name>)
    events: bool = False
    event_register: str = "asterisk-register"
    event_deregister: str = "asterisk-deregister"
    event_maintenance: str = "asterisk-maintenance"

    # option name -> where its value came from: "default", "res_discovery_consul.conf:12",
    # "env CONSUL_HTTP_ADDR", "http.conf:4", ...  Compared out of equality on purpose.
    sources: Dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def agent_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def timeout_s(self) -> float:
        return self.consul_timeout_ms / 1000.0

    @property
    def uses_tls(self) -> bool:
        return self.scheme == "https"

    @property
    def http_check(self) -> bool:
        return self.check_type in ("http", "both")

    @property
    def ttl_check(self) -> bool:
        return self.check_type in ("ttl", "both")

    def check_key(self) -> Tuple[object, ...]:
        """The options behind the health checks: `discovery set check` lasts until they change."""
        return (self.check, self.check_type, self.check_http_port, self.check_scheme,
                self.check_tls_server_name, self.check_tls_skip_verify, self.check_interval,
                self.check_timeout, self.check_ttl, self.check_deregister_after)

    def transport_key(self) -> Tuple[object, ...]:
        """Everything a Consul client is built from: a change needs a new client."""
        return (self.agent_url, self.token, self.consul_timeout_ms, self.ca_file, self.ca_path,
                self.client_cert, self.client_key, self.tls_verify, self.tls_server_name)


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------

CONFIG_FILE = "res_discovery_consul.conf"
HTTP_CONFIG_FILE = "http.conf"
ASTDB_FAMILY = "res_discovery_consul"
ASTDB_SERVICE_ID_KEY = "service_id"

METADATA_SECTION_PREFIX = "metadata_"
METADATA_KEYS = ("group", "priority", "weight", "max_calls", "flags")
METADATA_VALUE_MAX = 512          # Consul rejects longer Meta values
CONSUL_MIN_DEREGISTER_NS = 60 * 10**9
DEFAULT_HTTPS_PORT = 8501         # Consul's conventional HTTPS port
TOKEN_FILE_MAX_BYTES = 64 * 1024
TLS_FILE_MAX_BYTES = 1024 * 1024  # a PEM bundle of every public CA is about 220 kB
CA_PATH_MAX_FILES = 1000
# Consul CLI / consul-template conventions: option -> environment variable.
_TLS_ENV = {"ca_file": "CONSUL_CACERT", "ca_path": "CONSUL_CAPATH",
            "client_cert": "CONSUL_CLIENT_CERT", "client_key": "CONSUL_CLIENT_KEY",
            "tls_verify": "CONSUL_HTTP_SSL_VERIFY", "tls_server_name": "CONSUL_TLS_SERVER_NAME"}
TLS_OPTIONS = ("ca_file", "ca_path", "client_cert", "client_key", "tls_verify", "tls_server_name")
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
CHECK_TYPES = ("http", "ttl", "both")
KV_SECTION = "kv"
KV_PLACEHOLDERS = ("ID", "NAME", "EID", "ADDRESS", "PORT", "VERSION")
_KV_PLACEHOLDER = re.compile(r"\$\$|\$\{([^}]*)\}|\$")
KV_MAX_KEY_CHARS = 512
KV_MAX_VALUE_BYTES = 512 * 1024   # Consul's limit for one value
KV_MAX_KEYS = 64
SESSION_TTL_MIN_NS = 10 * 10**9   # Consul's bounds for a session TTL
SESSION_TTL_MAX_NS = 86400 * 10**9

_TRUE_WORDS = {"yes", "true", "y", "t", "1", "on"}      # Asterisk's ast_true()
_FALSE_WORDS = {"no", "false", "n", "f", "0", "off"}    # Asterisk's ast_false()

_DURATION_UNITS_NS = {
    "ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3,
    "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
}
_DURATION_HINT = "a duration with a unit, like 10s, 1m30s, 500ms or 1h"
_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_DNS_SERVICE_NAME = re.compile(r"[A-Za-z0-9-]+")   # what Consul can serve over DNS
_INT64_MAX = (1 << 63) - 1


class InvalidValue(ValueError):
    """A value that does not fit its option; the loader adds file, line and option."""


# -- value parsers (pure; also used by tests and other modules) ----------------------------

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


def parse_duration(text: str) -> str:
    """A positive Go duration, returned as written (Consul takes the string)."""
    if re.fullmatch(r"[-+]?[0-9.]+", text):
        raise InvalidValue(f"has no unit: must be {_DURATION_HINT}")
    nanoseconds = parse_go_duration(text)
    if nanoseconds <= 0:
        raise InvalidValue(f"must be more than zero: {_DURATION_HINT}")
    return text


def parse_tags(text: str) -> Tuple[str, ...]:
    tags: List[str] = []
    for item in text.split(","):
        tag = item.strip()
        if tag and tag not in tags:
            tags.append(tag)
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
    if "/" in text or _has_control(text):
        raise InvalidValue("must not contain '/' or control characters (Consul uses it in URLs)")
    return text


def parse_service_name(text: str) -> str:
    if _has_control(text) or "/" in text:
        raise InvalidValue("must not contain '/' or control characters")
    return text


def parse_interface(text: str) -> str:
    try:
        netinfo.check_interface_name(text)
    except netinfo.InterfaceAddressError as exc:
        raise InvalidValue(str(exc)) from None
    return text


def parse_metadata_profile(text: str) -> str:
    if _has_control(text) or any(c.isspace() or c in "[]" for c in text):
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
        raise InvalidValue("must be http (Consul polls the EID endpoint), ttl (the module "
                           "reports to Consul) or both")
    return kind


def parse_check_ttl(text: str) -> str:
    parse_duration(text)
    if parse_go_duration(text) < 10**9:
        raise InvalidValue("must be at least 1s (the module reports every third of it)")
    return text


def parse_session_ttl(text: str) -> str:
    parse_duration(text)
    if not SESSION_TTL_MIN_NS <= parse_go_duration(text) <= SESSION_TTL_MAX_NS:
        raise InvalidValue("must be from 10s to 24h (Consul's bounds for a session TTL)")
    return text


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
    if text.startswith("/") or _has_control(text):
        raise InvalidValue("must not start with '/' or contain control characters")
    return text.rstrip("/")


def check_kv_key(key: str) -> None:
    """A key of [kv]: one path below kv_prefix."""
    if len(key) > KV_MAX_KEY_CHARS or _has_control(key) or any(c.isspace() for c in key):
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
    if any(c.isspace() or _is_control(c) for c in text):
        raise InvalidValue("contains whitespace or control characters (value not shown)")
    if not all(" " < c < "\x7f" for c in text):
        raise InvalidValue("contains characters other than printable ASCII (value not shown)")
    return text


def _is_control(ch: str) -> bool:
    return ord(ch) < 0x20 or ord(ch) == 0x7F


def _has_control(text: str) -> bool:
    return any(_is_control(c) for c in text)


# Each option of [consul]: (Settings field, parser of its text).
_CONSUL_OPTIONS: Dict[str, Tuple[str, Callable[[str], object]]] = {
    "scheme": ("scheme", parse_scheme),
    "host": ("host", parse_address),
    "port": ("port", parse_port),
    "token": ("token", check_token),
    "token_file": ("token", str),
    "consul_timeout_ms": ("consul_timeout_ms", lambda t: parse_int(t, 1, 60000)),
    "id": ("service_id", parse_service_id),
    "name": ("name", parse_service_name),
    "tags": ("tags", parse_tags),
    "discovery_ip": ("discovery_ip", str),       # resolved after the loop ('auto')
    "discovery_port": ("discovery_port", parse_port),
    "discovery_interface": ("discovery_interface", parse_interface),
    "metadata_profile": ("metadata_profile", parse_metadata_profile),
    "check": ("check", parse_bool),
    "check_type": ("check_type", parse_check_type),
    "check_http_port": ("check_http_port", parse_port),
    "check_scheme": ("check_scheme", parse_scheme),
    "check_tls_server_name": ("check_tls_server_name", parse_tls_server_name),
    "check_tls_skip_verify": ("check_tls_skip_verify", parse_bool),
    "check_interval": ("check_interval", parse_duration),
    "check_timeout": ("check_timeout", parse_duration),
    "check_ttl": ("check_ttl", parse_check_ttl),
    "check_deregister_after": ("check_deregister_after", parse_duration),
    "resync_interval": ("resync_interval", parse_duration),
    "ca_file": ("ca_file", str),                 # paths: checked by resolve_tls
    "ca_path": ("ca_path", str),
    "client_cert": ("client_cert", str),
    "client_key": ("client_key", str),
    "tls_verify": ("tls_verify", parse_bool),
    "tls_server_name": ("tls_server_name", parse_tls_server_name),
    "events": ("events", parse_bool),
    "event_register": ("event_register", parse_event_name),
    "event_deregister": ("event_deregister", parse_event_name),
    "event_maintenance": ("event_maintenance", parse_event_name),
    "kv_prefix": ("kv_prefix", parse_kv_prefix),
    "kv_session_ttl": ("kv_session_ttl", parse_session_ttl),
}
# Options whose final value depends on more than their own line: set by the resolve_* steps.
_RESOLVED_LATER = {"token", "token_file", "id", "name", "discovery_ip", "ca_file", "ca_path",
                   "client_cert", "client_key"}
_SECRET_OPTIONS = {"token"}
# An empty value means "not set" (default or fallback) except where empty means something.
_EMPTY_IS_A_VALUE = {"tags", "metadata_profile"}


def load_settings(host, environ: Optional[Mapping[str, str]] = None) -> Tuple[Settings, List[str]]:
    """Read res_discovery_consul.conf and http.conf from host.config_dir().

    Returns the settings and the warnings to log. Raises ConfigError for anything that
    would make the module register something wrong.
    """
    loader = _Loader(host, os.environ if environ is None else environ)
    return loader.load()


class _Loader:
    def __init__(self, host, environ: Mapping[str, str]):
        self.host = host
        self.environ = environ
        self.config_dir = host.config_dir()
        self.values: Dict[str, object] = {}
        self.sources: Dict[str, str] = {}
        self.warnings: List[str] = []
        self.http_enabled = False   # Asterisk's HTTP server is off unless http.conf enables it
        self.https_enabled = False  # and its TLS server unless tlsenable = yes

    # -- top level ---------------------------------------------------------------------

    def load(self) -> Tuple[Settings, List[str]]:
        path = os.path.join(self.config_dir, CONFIG_FILE)
        if not os.path.exists(path):
            raise ConfigError(f"not found: looked for {path}", CONFIG_FILE)
        config = parse_file(path, self.config_dir)
        if config.is_empty():
            self.warnings.append(f"{CONFIG_FILE}: the file has no settings: using all defaults")

        self.warn_unknown_sections(config)
        general = config.section("general")
        consul = config.section("consul")
        if general is not None:
            self.read_general(general)
        if self.values.get("enabled") is False:
            # A disabled module declines to load: nothing else is checked or looked up.
            return self.build(), self.warnings

        entries = self.read_consul(consul) if consul is not None else {}
        self.resolve_agent_address(entries)
        self.resolve_token(entries)
        self.resolve_tls(entries)
        self.resolve_service_id(entries)
        self.resolve_name(entries)
        self.resolve_discovery_ip(entries)
        self.read_metadata(config, entries)
        self.read_kv(config)
        self.read_http_conf()
        self.resolve_check_port(entries)
        self.cross_checks(entries)
        return self.build(), self.warnings

    def build(self) -> Settings:
        sources = {name: "default" for name in Settings.__dataclass_fields__ if name != "sources"}
        sources.update(self.sources)
        return Settings(**self.values, sources=sources)  # type: ignore[arg-type]

    def set(self, field_name: str, value: object, source: str) -> None:
        self.values[field_name] = value
        self.sources[field_name] = source

    # -- sections ----------------------------------------------------------------------

    def warn_unknown_sections(self, config: Config) -> None:
        for section in config:
            name = section.name.lower()
            if name in ("general", "consul", KV_SECTION) or \
                    name.startswith(METADATA_SECTION_PREFIX):
                continue
            self.warnings.append(f"{section.where}: unknown section [{section.name}] (ignored)")

    def warn_duplicates(self, section: Section, key: str) -> None:
        own = [e for e in section.own_entries() if e.key.lower() == key.lower()]
        if len(own) > 1:
            earlier = ", ".join(e.where for e in own[:-1])
            self.warnings.append(f"{own[-1].where}: [{section.name}] {own[-1].key} is set more "
                                 f"than once: this line wins over {earlier}")

    def read_general(self, general: Section) -> None:
        for key in general.keys():
            entry = general.get(key)
            assert entry is not None
            if key.lower() != "enabled":
                self.warnings.append(f"{entry.where}: [general] unknown option '{key}' (ignored)")
                continue
            self.warn_duplicates(general, key)
            if entry.value:
                self.set("enabled", self.parse(entry, "general", parse_bool), entry.where)

    def read_consul(self, consul: Section) -> Dict[str, Entry]:
        """Parse every known option; returns option -> the entry that set it."""
        entries: Dict[str, Entry] = {}
        for key in consul.keys():
            entry = consul.get(key)
            assert entry is not None
            option = key.lower()
            if option not in _CONSUL_OPTIONS:
                self.warnings.append(f"{entry.where}: [consul] unknown option '{key}' (ignored)")
                continue
            self.warn_duplicates(consul, key)
            if not entry.value and option not in _EMPTY_IS_A_VALUE:
                continue  # empty: as if not set
            field_name, parser = _CONSUL_OPTIONS[option]
            value = self.parse(entry, "consul", parser)
            entries[option] = entry
            if option not in _RESOLVED_LATER:
                self.set(field_name, value, entry.where)
        return entries

    def parse(self, entry: Entry, section: str, parser: Callable[[str], object]) -> object:
        try:
            return parser(entry.value)
        except InvalidValue as exc:
            raise self.error(entry, section, str(exc)) from None

    @staticmethod
    def error(entry: Entry, section: str, reason: str) -> ConfigError:
        if entry.key.lower() in _SECRET_OPTIONS:
            return ConfigError(f"[{section}] {entry.key}: {reason}", entry.file, entry.line)
        return ConfigError(f"[{section}] {entry.key} = '{entry.value}': {reason}",
                           entry.file, entry.line)

    # -- resolution of values that depend on more than their own line ------------------

    def resolve_agent_address(self, entries: Dict[str, Entry]) -> None:
        missing = [o for o in ("scheme", "host", "port") if o not in entries]
        raw = self.environ.get("CONSUL_HTTP_ADDR", "").strip()
        if missing and raw:
            scheme, host, port = self.parse_consul_http_addr(raw)
            source = "env CONSUL_HTTP_ADDR"
            if "scheme" in missing and scheme:
                self.set("scheme", scheme, source)
            if "host" in missing:
                self.set("host", host, source)
            if "port" in missing and port:
                self.set("port", port, source)
        ssl = self.environ.get("CONSUL_HTTP_SSL", "").strip()
        if ssl and "scheme" not in self.values:
            # Consul's CLI: CONSUL_HTTP_SSL=true means https when the address names no scheme.
            try:
                https = parse_bool(ssl)
            except InvalidValue as exc:
                raise ConfigError(f"env CONSUL_HTTP_SSL = '{ssl}': {exc}") from None
            self.set("scheme", "https" if https else "http", "env CONSUL_HTTP_SSL")
        if "port" not in self.values and self.values.get("scheme") == "https":
            self.set("port", DEFAULT_HTTPS_PORT, "default")

    @staticmethod
    def parse_consul_http_addr(raw: str) -> Tuple[Optional[str], str, Optional[int]]:
        def bad(reason: str) -> ConfigError:
            return ConfigError(f"env CONSUL_HTTP_ADDR = '{raw}': {reason}")

        scheme: Optional[str] = None
        rest = raw
        if "://" in rest:
            scheme, rest = rest.split("://", 1)
            scheme = scheme.lower()
            if scheme not in ("http", "https"):
                raise bad("only http:// and https:// addresses are supported")
        rest = rest.rstrip("/")
        port_text: Optional[str] = None
        if rest.startswith("["):
            host, bracket, after = rest[1:].partition("]")
            if not bracket or (after and not after.startswith(":")):
                raise bad("expected host:port, http://host:port or https://host:port")
            port_text = after[1:] if after else None
        elif rest.count(":") == 1:
            host, port_text = rest.split(":")
        else:
            host = rest  # a host alone, or a bare IPv6 address
        try:
            host = parse_address(host)
            port = parse_port(port_text) if port_text is not None else None
        except InvalidValue as exc:
            raise bad(f"expected host:port, http://host:port or https://host:port ({exc})") from None
        if port is None and scheme == "https":
            port = DEFAULT_HTTPS_PORT
        return scheme, host, port

    def resolve_token(self, entries: Dict[str, Entry]) -> None:
        token_entry, file_entry = entries.get("token"), entries.get("token_file")
        if token_entry and file_entry:
            raise ConfigError(f"[consul] token and token_file are both set (line "
                              f"{token_entry.line} and line {file_entry.line}): keep one",
                              file_entry.file, file_entry.line)
        if token_entry:
            self.set("token", token_entry.value, token_entry.where)
            return
        if file_entry:
            path = file_entry.value
            if not os.path.isabs(path):
                path = os.path.join(self.config_dir, path)
            token = self.read_token_file(
                path, f"{file_entry.where}: [consul] token_file = '{file_entry.value}'")
            self.set("token", token, f"{file_entry.where} (token_file {path})")
            return
        # Consul's own clients: a token file (when it holds a token) wins over the token.
        token_file = self.environ.get("CONSUL_HTTP_TOKEN_FILE", "").strip()
        if token_file:
            token = self.read_token_file(token_file, f"env CONSUL_HTTP_TOKEN_FILE = '{token_file}'")
            if token:
                self.set("token", token, f"env CONSUL_HTTP_TOKEN_FILE ({token_file})")
                return
        env_token = self.environ.get("CONSUL_HTTP_TOKEN", "").strip()
        if env_token:
            try:
                check_token(env_token)
            except InvalidValue as exc:
                raise ConfigError(f"env CONSUL_HTTP_TOKEN: {exc}") from None
            self.set("token", env_token, "env CONSUL_HTTP_TOKEN")

    @staticmethod
    def read_small_file(path: str, limit: int, where: str, what: str, expected: str) -> bytes:
        """The bytes of a regular file of at most `limit` bytes (token, certificate, key), or a
        ConfigError naming where it was configured, the file and why."""
        try:
            data = read_regular_file(path, limit)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"{where}: cannot read the {what} {path}: {reason}") from None
        if len(data) > limit:
            raise ConfigError(f"{where}: the {what} {path} is larger than {limit} bytes: not {expected}")
        return data

    def read_token_file(self, path: str, where: str) -> str:
        data = self.read_small_file(path, TOKEN_FILE_MAX_BYTES, where, "token file", "a token")
        try:
            token = data.decode("utf-8").strip()
            check_token(token)
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: the token file {path} is not UTF-8 text") from None
        except InvalidValue as exc:
            raise ConfigError(f"{where}: the token in {path} {exc}") from None
        if not token:
            self.warnings.append(f"{where}: the token file {path} is empty: no token is sent")
        return token

    def resolve_tls(self, entries: Dict[str, Entry]) -> None:
        """TLS to the agent: the file wins per option, else Consul's environment variables.
        Every file named is checked now (readable, a regular file, PEM), so a typo refuses the
        load with the option and the file named instead of failing at the first call."""
        for option in ("tls_verify", "tls_server_name"):
            env_name = _TLS_ENV[option]
            raw = self.environ.get(env_name, "").strip()
            if option in entries or not raw:
                continue
            parser = parse_bool if option == "tls_verify" else parse_tls_server_name
            try:
                self.set(option, parser(raw), f"env {env_name}")
            except InvalidValue as exc:
                raise ConfigError(f"env {env_name} = '{raw}': {exc}") from None
        for option in ("ca_file", "ca_path"):
            self.resolve_tls_path(option, entries.get(option))
        cert_entry, key_entry = entries.get("client_cert"), entries.get("client_key")
        if cert_entry or key_entry:
            pair = {"client_cert": cert_entry, "client_key": key_entry}
        else:  # from the environment only as a pair: never half from each place
            pair = {"client_cert": None, "client_key": None}
        for option, entry in pair.items():
            self.resolve_tls_path(option, entry, from_env=not (cert_entry or key_entry))
        has_cert = bool(self.values.get("client_cert"))
        has_key = bool(self.values.get("client_key"))
        if has_cert != has_key:
            present, absent = ("client_cert", "client_key") if has_cert else \
                ("client_key", "client_cert")
            raise ConfigError(f"{self.sources[present]}: [consul] {present} is set but "
                              f"{absent} is not: a client certificate needs its key (and the "
                              f"key its certificate)")

    def resolve_tls_path(self, option: str, entry: Optional[Entry], from_env: bool = True) -> None:
        env_name = _TLS_ENV[option]
        if entry is not None:
            path = entry.value
            if not os.path.isabs(path):
                path = os.path.join(self.config_dir, path)
            where = f"{entry.where}: [consul] {option} = '{entry.value}'"
            source = entry.where if path == entry.value else f"{entry.where} ({path})"
        else:
            path = self.environ.get(env_name, "").strip() if from_env else ""
            if not path:
                return
            where, source = f"env {env_name} = '{path}' ({option})", f"env {env_name}"
        if option == "ca_path":
            self.check_ca_directory(path, where)
        else:
            self.check_pem_file(path, option, where)
        self.set(option, path, source)

    def check_pem_file(self, path: str, option: str, where: str) -> None:
        what = {"ca_file": "CA file", "client_cert": "client certificate",
                "client_key": "client key"}[option]
        data = self.read_small_file(path, TLS_FILE_MAX_BYTES, where, what, "a PEM file")
        if option == "client_key":
            if not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", data):
                raise ConfigError(f"{where}: the {what} {path} holds no PEM private key "
                                  f"('-----BEGIN ... PRIVATE KEY-----')")
        elif b"-----BEGIN CERTIFICATE-----" not in data:
            raise ConfigError(f"{where}: the {what} {path} holds no PEM certificate "
                              f"('-----BEGIN CERTIFICATE-----')")

    def check_ca_directory(self, path: str, where: str) -> None:
        try:
            mode = os.stat(path).st_mode
            if not stat.S_ISDIR(mode):
                raise ConfigError(f"{where}: {path} is not a directory (ca_path names a "
                                  f"directory of CA certificates; use ca_file for one file)")
            names = sorted(os.listdir(path))
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"{where}: cannot read the CA directory {path}: {reason}") from None
        if not ca_directory_bundle(path, names):
            raise ConfigError(f"{where}: the CA directory {path} holds no readable PEM "
                              f"certificate")

    def resolve_service_id(self, entries: Dict[str, Entry]) -> None:
        entry = entries.get("id")
        written = entry.value if entry else "asterisk"
        source = entry.where if entry else "default"
        if written == "asterisk":
            eid = self.host.eid()
            if not eid:
                raise ConfigError(f"{source}: [consul] id = 'asterisk': Asterisk gave no entity ID")
            self.set("service_id", eid, source)
        elif written == "auto":
            self.set("service_id", *self.persistent_service_id())
        else:
            self.set("service_id", written, source)

    def persistent_service_id(self) -> Tuple[str, str]:
        """id = auto: one UUID per Asterisk, kept in astdb so a restart keeps the service."""
        stored = (self.host.db_get(ASTDB_FAMILY, ASTDB_SERVICE_ID_KEY) or "").strip()
        if stored:
            try:
                return parse_service_id(stored), "astdb"
            except InvalidValue:
                self.warnings.append(f"astdb {ASTDB_FAMILY}/{ASTDB_SERVICE_ID_KEY} holds an "
                                     f"unusable service ID: making a new one")
        new_id = str(uuid.uuid4())
        if not self.host.db_put(ASTDB_FAMILY, ASTDB_SERVICE_ID_KEY, new_id):
            self.warnings.append(f"could not save the service ID in astdb ({ASTDB_FAMILY}/"
                                 f"{ASTDB_SERVICE_ID_KEY}): a restart will register a new ID")
        return new_id, "generated (saved to astdb)"

    def resolve_name(self, entries: Dict[str, Entry]) -> None:
        entry = entries.get("name")
        if entry is None:
            return
        if entry.value == "auto":
            name = socket.gethostname()
            self.set("name", name, f"{entry.where} (auto, host name)")
        else:
            name = entry.value
            self.set("name", name, entry.where)
        if not _DNS_SERVICE_NAME.fullmatch(name):
            self.warnings.append(f"{entry.where}: [consul] name '{name}' has characters other "
                                 f"than letters, digits and '-': Consul will not serve it over DNS")

    def resolve_discovery_ip(self, entries: Dict[str, Entry]) -> None:
        entry = entries.get("discovery_ip")
        if entry is None:
            return
        if entry.value != "auto":
            self.set("discovery_ip", self.parse(entry, "consul", parse_address), entry.where)
            return
        interface = self.values.get("discovery_interface", Settings.discovery_interface)
        try:
            address = netinfo.interface_address(str(interface))
        except netinfo.InterfaceAddressError as exc:
            raise self.error(entry, "consul", f"{exc} (discovery_interface from "
                             f"{self.sources.get('discovery_interface', 'default')})") from None
        self.set("discovery_ip", address, f"{entry.where} (auto, interface {interface})")

    def read_metadata(self, config: Config, entries: Dict[str, Entry]) -> None:
        entry = entries.get("metadata_profile")
        if entry is None or not entry.value:
            return
        section_name = METADATA_SECTION_PREFIX + entry.value
        section = config.section(section_name)
        if section is None:
            raise self.error(entry, "consul", f"there is no section [{section_name}]")
        metadata: List[Tuple[str, str]] = []
        for key in section.keys():
            item = section.get(key)
            assert item is not None
            if key.lower() not in METADATA_KEYS:
                self.warnings.append(f"{item.where}: [{section.name}] unknown option '{key}' "
                                     f"(ignored; known: {', '.join(METADATA_KEYS)})")
                continue
            self.warn_duplicates(section, key)
            if not item.value:
                continue
            if len(item.value) > METADATA_VALUE_MAX or _has_control(item.value):
                raise self.error(item, section.name, f"must be at most {METADATA_VALUE_MAX} "
                                 f"characters without control characters (Consul's limit)")
            metadata.append((key.lower(), item.value))
            self.sources[f"metadata.{key.lower()}"] = item.where
        self.set("metadata", tuple(metadata), section.where)

    def read_kv(self, config: Config) -> None:
        """[kv]: key = value pairs written to Consul's KV store under kv_prefix."""
        section = config.section(KV_SECTION)
        if section is None:
            return
        pairs: List[Tuple[str, str]] = []
        for key in section.keys():
            item = section.get(key)
            assert item is not None
            self.warn_duplicates(section, key)
            try:
                check_kv_key(item.key)
            except InvalidValue as exc:
                raise self.error(item, section.name, str(exc)) from None
            problem = kv_template_problem(item.value)
            if problem is None and len(item.value.encode("utf-8")) > KV_MAX_VALUE_BYTES:
                problem = f"is longer than Consul's limit of {KV_MAX_VALUE_BYTES} bytes"
            if problem:
                raise self.error(item, section.name, problem)
            # Consul keys are case-sensitive: the line that counts gives the spelling too.
            pairs.append((item.key, item.value))
            self.sources[f"kv.{item.key}"] = item.where
        if len(pairs) > KV_MAX_KEYS:
            raise ConfigError(f"[{section.name}] has {len(pairs)} keys: at most {KV_MAX_KEYS}",
                              section.file, section.line)
        self.set("kv", tuple(pairs), section.where)

    # -- http.conf ---------------------------------------------------------------------

    def read_http_conf(self) -> None:
        """Where Asterisk's HTTP server listens. Its file, its rules: problems are warnings."""
        path = os.path.join(self.config_dir, HTTP_CONFIG_FILE)
        if not os.path.isfile(path):
            return
        try:
            general = parse_file(path, self.config_dir).section("general")
        except ConfigError as exc:
            self.warnings.append(f"{exc} (http.conf ignored: ARI port and scheme are defaults)")
            return
        if general is None:
            return

        def read(key: str, parser: Callable[[str], object]) -> Tuple[object, Optional[Entry]]:
            entry = general.get(key)
            if entry is None or not entry.value:
                return None, None
            try:
                return parser(entry.value), entry
            except InvalidValue as exc:
                self.warnings.append(f"{entry.where}: [general] {key} = '{entry.value}': "
                                     f"{exc} (ignored, as Asterisk does)")
                return None, None

        enabled, _ = read("enabled", parse_bool)
        self.http_enabled = bool(enabled)
        self.https_enabled = False
        prefix, prefix_entry = read("prefix", str)
        if prefix_entry:
            self.set("http_prefix", str(prefix).strip("/"), prefix_entry.where)
        bindport, bindport_entry = read("bindport", parse_port)
        tlsenable, tlsenable_entry = read("tlsenable", parse_bool)
        if tlsenable and tlsenable_entry:
            tlsport, tls_entry = read("tlsbindport", parse_port)
            if tls_entry is None:
                tlsport, tls_entry = read("tlsbindaddr", _port_of_bind_address)
            self.set("ari_scheme", "https", tlsenable_entry.where)
            self.https_enabled = True
            if tls_entry:
                self.set("ari_port", tlsport, tls_entry.where)
            else:
                self.set("ari_port", 8089, "default")  # Asterisk's default TLS port
        elif bindport_entry:
            self.set("ari_port", bindport, bindport_entry.where)

    def resolve_check_port(self, entries: Dict[str, Entry]) -> None:
        """check_scheme = https without check_http_port: Consul polls Asterisk's TLS port."""
        if self.values.get("check_scheme") != "https" or "check_http_port" in entries:
            return
        if self.https_enabled:
            self.set("check_http_port", self.values.get("ari_port", 8089),
                     f"{self.sources.get('ari_port', 'default')} (Asterisk's TLS port)")
        else:
            self.set("check_http_port", 8089, "default (Asterisk's TLS port)")

    # -- checks across options ---------------------------------------------------------

    def check_tls_use(self, entries: Dict[str, Entry]) -> None:
        self.warnings += _tls_use_warnings(self.values, self.sources, entries)

    def cross_checks(self, entries: Dict[str, Entry]) -> None:
        self.check_tls_use(entries)
        after = str(self.values.get("check_deregister_after", Settings.check_deregister_after))
        if self.values.get("check") and parse_go_duration(after) < CONSUL_MIN_DEREGISTER_NS:
            where = entries["check_deregister_after"].where if "check_deregister_after" in entries \
                else CONFIG_FILE + " (default)"
            self.warnings.append(f"{where}: [consul] check_deregister_after = '{after}' is below "
                                 f"Consul's minimum: Consul will use 1m")
        http_check = self.values.get("check_type", Settings.check_type) != "ttl"
        if self.values.get("check") and http_check and not self.http_enabled:
            where = entries["check"].where
            self.warnings.append(f"{where}: [consul] check = yes, but Asterisk's HTTP server is not "
                                 f"enabled in {HTTP_CONFIG_FILE} ([general] enabled = yes): "
                                 f"the EID check will fail")
        elif (self.values.get("check") and http_check and self.http_enabled
              and self.values.get("check_scheme") == "https" and not self.https_enabled):
            where = entries["check_scheme"].where
            self.warnings.append(f"{where}: [consul] check_scheme = https, but {HTTP_CONFIG_FILE} "
                                 f"does not enable Asterisk's TLS server ([general] tlsenable = "
                                 f"yes): the EID check will fail")
        https_only = [o for o in ("check_tls_server_name", "check_tls_skip_verify") if o in entries]
        if https_only and self.values.get("check_scheme", "http") != "https":
            where = entries[https_only[0]].where
            self.warnings.append(f"{where}: [consul] {', '.join(https_only)} set, but "
                                 f"check_scheme is http: not used")
        if self.values.get("check_tls_skip_verify") and self.values.get("check_scheme") == "https":
            self.warnings.append(f"{entries['check_tls_skip_verify'].where}: [consul] "
                                 f"check_tls_skip_verify = yes: Consul does not verify Asterisk's "
                                 f"certificate for the EID check")


def ca_directory_bundle(path: str, names: Optional[List[str]] = None) -> str:
    """The PEM certificates of the regular files in directory `path`, as one bundle.

    As Consul's own clients read CONSUL_CAPATH: every file, no OpenSSL hash links needed.
    Files that are not regular (FIFOs, devices), unreadable or without a certificate are
    skipped; at most CA_PATH_MAX_FILES files are read.
    """
    if names is None:
        try:
            names = sorted(os.listdir(path))
        except OSError:
            return ""
    pems: List[str] = []
    for name in names[:CA_PATH_MAX_FILES]:
        try:
            data = read_regular_file(os.path.join(path, name), TLS_FILE_MAX_BYTES)
        except (OSError, ValueError):
            continue
        if len(data) > TLS_FILE_MAX_BYTES:
            continue
        text = data.decode("ascii", "replace")
        pems += re.findall(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?"
                           r"-----END CERTIFICATE-----", text)
    return "\n".join(pems) + ("\n" if pems else "")


def _tls_use_warnings(values: Mapping[str, object], sources: Mapping[str, str],
                      entries: Mapping[str, Entry]) -> List[str]:
    warnings: List[str] = []
    https = values.get("scheme") == "https"
    if not https:
        unused = [o for o in TLS_OPTIONS if o in entries]
        if unused:
            where = entries[unused[0]].where
            warnings.append(f"{where}: [consul] {', '.join(unused)} set, but scheme is http: "
                            f"TLS options are not used (set scheme = https, or an https:// "
                            f"CONSUL_HTTP_ADDR)")
        return warnings
    if values.get("tls_verify") is False:
        warnings.append(f"{sources.get('tls_verify', 'default')}: tls_verify = no: the Consul "
                        f"agent's TLS certificate is NOT verified; anyone able to intercept "
                        f"the connection can pose as the agent (and read the ACL token)")
    return warnings


def _port_of_bind_address(text: str) -> int:
    """The port in an Asterisk bind address ('0.0.0.0:8089', '[::]:8089')."""
    match = re.fullmatch(r"(?:\[[^\]]*\]|[^:\[\]]*):([0-9]+)", text)
    if not match:
        raise InvalidValue("has no port")
    return parse_port(match.group(1))


# ---------------------------------------------------------------------------------------
# Report for 'discovery show settings'
# ---------------------------------------------------------------------------------------

# (shown option name, Settings field), grouped as an operator reads them.
_REPORT_ROWS: Tuple[Tuple[str, str], ...] = (
    ("enabled", "enabled"),
    ("scheme", "scheme"),
    ("host", "host"),
    ("port", "port"),
    ("token", "token"),
    ("consul_timeout_ms", "consul_timeout_ms"),
    ("ca_file", "ca_file"),
    ("ca_path", "ca_path"),
    ("client_cert", "client_cert"),
    ("client_key", "client_key"),
    ("tls_verify", "tls_verify"),
    ("tls_server_name", "tls_server_name"),
    ("id", "service_id"),
    ("name", "name"),
    ("tags", "tags"),
    ("discovery_ip", "discovery_ip"),
    ("discovery_port", "discovery_port"),
    ("discovery_interface", "discovery_interface"),
    ("metadata_profile", "metadata_profile"),
    ("check", "check"),
    ("check_type", "check_type"),
    ("check_scheme", "check_scheme"),
    ("check_http_port", "check_http_port"),
    ("check_tls_server_name", "check_tls_server_name"),
    ("check_tls_skip_verify", "check_tls_skip_verify"),
    ("check_interval", "check_interval"),
    ("check_timeout", "check_timeout"),
    ("check_ttl", "check_ttl"),
    ("check_deregister_after", "check_deregister_after"),
    ("http_prefix", "http_prefix"),
    ("ari_scheme", "ari_scheme"),
    ("ari_port", "ari_port"),
    ("resync_interval", "resync_interval"),
    ("events", "events"),
    ("event_register", "event_register"),
    ("event_deregister", "event_deregister"),
    ("event_maintenance", "event_maintenance"),
    ("kv_prefix", "kv_prefix"),
    ("kv_session_ttl", "kv_session_ttl"),
    ("kv", "kv"),
)


def settings_report(settings: Settings) -> List[Tuple[str, str, str]]:
    """(option, shown value, source) rows; the token's value is never shown."""
    rows: List[Tuple[str, str, str]] = []
    for option, field_name in _REPORT_ROWS:
        source = settings.sources.get(field_name, "default")
        if field_name == "kv":
            rows += [(f"kv {key}", value, settings.sources.get(f"kv.{key}", "default"))
                     for key, value in settings.kv]
            if not settings.kv:
                rows.append(("kv", "(none: no [kv] section)", source))
            continue
        rows.append((option, _shown(field_name, getattr(settings, field_name)), source))
        if field_name == "metadata_profile":
            for key, value in settings.metadata:
                rows.append((f"metadata {key}", value,
                             settings.sources.get(f"metadata.{key}", "default")))
    return rows


def _shown(field_name: str, value: object) -> str:
    if field_name == "token":
        return f"(set, {len(str(value))} chars)" if value else "(not set)"
    if field_name == "tls_server_name" and not value:
        return "(none: the host connected to)"
    if field_name == "check_tls_server_name" and not value:
        return "(none: the address in the check URL)"

    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ", ".join(value) if value else "(none)"
    if value == "":
        return "(none)"
    return str(value)
