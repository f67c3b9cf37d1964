"""Every setting of the module, declared once.

Each row says where a setting is written (section and name), its default, how its text is
parsed, its one line of documentation, and how code and operators meet it: the Settings
field, the Consul CLI environment variable it falls back to, whether it is secret, whether it
is part of the health checks (a change ends a run-time `discovery set check`) or of the
Consul client (a change needs a new client). From this table come the defaults of the
Settings fields (written out in settings.py, held to the rows by a test), the parse loop and
its unknown-option warnings, the rows and order of `discovery show settings`, and the checks
that hold the sample config and the README to it.

Facts rows are settings the module learns elsewhere (http.conf, the [metadata_<profile>] and
[kv] sections): they are shown and documented like options but not parsed from [consul].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from .values import (Duration, check_token, parse_address, parse_bool, parse_check_ttl,
                     parse_check_type, parse_duration, parse_event_name, parse_int,
                     parse_interface, parse_kv_prefix, parse_metadata_profile, parse_port,
                     parse_scheme, parse_service_id, parse_service_name, parse_session_ttl,
                     parse_sip_check, parse_sip_port, parse_sip_transport, parse_tags,
                     parse_tls_server_name)

# Groups, in the order `discovery show settings`, the sample and the README present them.
GENERAL, AGENT, TLS, SERVICE, CHECKS, LOAD, HOUSEKEEPING, EVENTS, KV, HTTP = (
    "general", "agent", "tls", "service", "checks", "load", "housekeeping", "events", "kv",
    "http.conf")


@dataclass(frozen=True)
class Option:
    name: str                      # as written in the file
    default: Any                   # the typed value code sees when the option is not set
    parse: Optional[Callable[[str], Any]]  # text -> value (None: a fact, not parsed)
    doc: str                       # one line, for the sample, the README and Asterisk's help
    group: str
    section: str = "consul"
    field: Optional[str] = None    # Settings attribute: None = name, "" = none of its own
    env: str = ""                  # Consul CLI environment variable used when not set
    secret: bool = False           # never shown, never logged
    resolved: bool = False         # its final value needs I/O or other options (resolve.py)
    empty_is_value: bool = False   # an empty value means empty, not "unset"
    defines_check: bool = False    # part of the health checks
    defines_client: bool = False   # part of the Consul client
    unset_text: str = "(none)"     # how an empty value is shown

    @property
    def attribute(self) -> str:
        return self.name if self.field is None else self.field


def _o(name, default, parse, doc, group, **more) -> Option:
    return Option(name, default, parse, doc, group, **more)


def _timeout_ms(text: str) -> int:
    return parse_int(text, 1, 60000)


def _channels(text: str) -> int:
    return parse_int(text, 0, 1000000)


def _polls(text: str) -> int:
    return parse_int(text, 0, 100)


def _weight(text: str) -> int:
    return parse_int(text, 1, 65535)


ROWS: Tuple[Option, ...] = (
    _o("enabled", True, parse_bool, "no: the module declines to load; a reload to no deregisters",
       GENERAL, section="general"),
    # -- the Consul agent
    _o("scheme", "http", parse_scheme, "http or https (https: port 8501 unless set)", AGENT,
       env="CONSUL_HTTP_ADDR", defines_client=True),
    _o("host", "127.0.0.1", parse_address, "the Consul agent's address or host name", AGENT,
       env="CONSUL_HTTP_ADDR", defines_client=True),
    _o("port", 8500, parse_port, "the agent's HTTP port", AGENT, env="CONSUL_HTTP_ADDR",
       defines_client=True),
    _o("token", "", check_token, "ACL token, sent only as X-Consul-Token, never shown", AGENT,
       env="CONSUL_HTTP_TOKEN", secret=True, resolved=True, defines_client=True,
       unset_text="(not set)"),
    _o("token_file", "", str, "file holding the token: read at load and reload, and watched "
       "(a new token is used within about a second, no reload needed)", AGENT,
       env="CONSUL_HTTP_TOKEN_FILE", resolved=True),
    _o("consul_timeout_ms", 2000, _timeout_ms,
       "timeout of each Consul call in ms (1-60000); CLI and AMI answer within it", AGENT,
       defines_client=True),
    # -- TLS to the agent
    _o("ca_file", "", str, "PEM CA bundle to verify the agent with (unset: the system's CAs)",
       TLS, env="CONSUL_CACERT", resolved=True, defines_client=True),
    _o("ca_path", "", str, "directory of PEM CA certificates, every file read", TLS,
       env="CONSUL_CAPATH", resolved=True, defines_client=True),
    _o("client_cert", "", str, "client certificate (PEM), with client_key", TLS,
       env="CONSUL_CLIENT_CERT", resolved=True, defines_client=True),
    _o("client_key", "", str, "the client certificate's key (PEM)", TLS,
       env="CONSUL_CLIENT_KEY", resolved=True, defines_client=True),
    _o("tls_verify", True, parse_bool, "no: the agent's certificate is not checked (warned)",
       TLS, env="CONSUL_HTTP_SSL_VERIFY", defines_client=True),
    _o("tls_server_name", "", parse_tls_server_name,
       "name the agent's certificate must carry, when not the host connected to", TLS,
       env="CONSUL_TLS_SERVER_NAME", defines_client=True,
       unset_text="(none: the host connected to)"),
    # -- the service
    _o("id", "asterisk", parse_service_id,
       "service ID: asterisk = this Asterisk's EID, auto = a UUID kept in astdb", SERVICE,
       field="service_id", resolved=True),
    _o("name", "Asterisk", parse_service_name, "service name; auto = the host name", SERVICE,
       resolved=True),
    _o("tags", ("asterisk",), parse_tags, "comma-separated; one Consul tag each", SERVICE,
       empty_is_value=True),
    _o("discovery_ip", "127.0.0.1", str,
       "advertised address; auto = the address of discovery_interface", SERVICE, resolved=True),
    _o("discovery_port", 5060, parse_sip_port,
       "advertised SIP port; auto = the SIP stack's (PJSIP: the first UDP transport or "
       "sip_transport; chan_sip: its bindport), read again at reload", SERVICE, resolved=True),
    _o("sip_transport", "", parse_sip_transport,
       "the pjsip.conf transport whose port discovery_port = auto takes", SERVICE,
       unset_text="(none: the first UDP transport)"),
    _o("sip_transports", (), None, "the SIP transports pjsip.conf or sip.conf declare "
       "(TaggedAddresses sip_udp, sip_tcp, sip_tls, sip_ws, sip_wss)", SERVICE,
       section="pjsip.conf"),
    _o("discovery_interface", "eth0", parse_interface, "interface for discovery_ip = auto",
       SERVICE),
    _o("metadata_profile", "", parse_metadata_profile,
       "adds [metadata_<profile>] to the service Meta; the section must exist", SERVICE,
       empty_is_value=True),
    _o("metadata", (), None, "the selected profile's group, priority, weight, max_calls, flags",
       SERVICE, section="metadata_<profile>"),
    # -- health checks
    _o("check", True, parse_bool, "register health checks (discovery set check overrides it)",
       CHECKS, defines_check=True),
    _o("check_type", "auto", parse_check_type,
       "auto (both when http.conf's server is reachable at discovery_ip, else ttl), http "
       "(Consul polls the EID endpoint), ttl (the module reports), both", CHECKS,
       defines_check=True, resolved=True),
    _o("check_scheme", "http", parse_scheme, "https: Consul polls Asterisk's TLS server",
       CHECKS, defines_check=True),
    _o("check_http_port", 8088, parse_port,
       "Asterisk's HTTP port in the check URL (unset: http.conf's bindport, https: its TLS port)",
       CHECKS, defines_check=True, resolved=True),
    _o("check_tls_server_name", "", parse_tls_server_name,
       "name Consul checks Asterisk's certificate against (Consul 1.10+)", CHECKS,
       defines_check=True, unset_text="(none: the address in the check URL)"),
    _o("check_tls_skip_verify", False, parse_bool,
       "yes: Consul does not verify Asterisk's certificate (warned)", CHECKS, defines_check=True),
    _o("check_interval", Duration("15s"), parse_duration, "how often Consul runs the check",
       CHECKS, defines_check=True),
    _o("check_timeout", Duration("3s"), parse_duration, "Consul's timeout for the check",
       CHECKS, defines_check=True),
    _o("check_ttl", Duration("30s"), parse_check_ttl,
       "TTL check: critical after this long without a report; reported every third of it",
       CHECKS, defines_check=True),
    _o("check_deregister_after", Duration("1m"), parse_duration,
       "Consul removes the service after this long critical (Consul's minimum: 1m)", CHECKS,
       defines_check=True),
    _o("check_success_before_passing", 0, _polls,
       "the EID check turns passing only after this many passing polls in a row (0: at "
       "once; Consul 1.8.1+, left out for an older agent)", CHECKS, defines_check=True),
    _o("check_failures_before_critical", 0, _polls,
       "the EID check turns critical only after this many failed polls in a row (0: at "
       "once; Consul 1.8.1+, left out for an older agent)", CHECKS, defines_check=True),
    _o("sip_check", "auto", parse_sip_check,
       "yes: healthy only with a SIP channel driver loaded and the listener on the service "
       "Port answering SIP OPTIONS; auto: yes once chan_pjsip or chan_sip is loaded; no: not "
       "asked", CHECKS, defines_check=True),
    # -- facts read from http.conf (Asterisk's HTTP server)
    _o("http_prefix", "", None, "http.conf prefix, in the check URL", HTTP, section=HTTP),
    _o("ari_scheme", "http", None, "http.conf tlsenable, sent as Meta ari_scheme", HTTP,
       section=HTTP),
    _o("ari_port", 8088, None, "http.conf bindport (or TLS port), sent as Meta ari_port", HTTP,
       section=HTTP),
    _o("check_problem", "", None, "why the EID check cannot pass, when the load can tell "
       "(http.conf's server off or not listening at discovery_ip)", HTTP, section=HTTP),
    # -- drain and load
    _o("drain_on_shutdown", True, parse_bool,
       "core stop/restart gracefully or when convenient drains first (out of the healthy set)",
       LOAD),
    _o("busy_channels", 0, _channels,
       "at this many active channels the checks say warning (0: never); passing below 90 %",
       LOAD, defines_check=True),
    _o("weight_passing", 1, _weight, "Consul Weights.Passing (DNS SRV, proxies that weigh)", LOAD),
    _o("weight_warning", 1, _weight, "Consul Weights.Warning: the weight while busy", LOAD),
    # -- housekeeping
    _o("resync_interval", Duration("30s"), parse_duration,
       "how often the agent's view is compared with ours and repaired in place", HOUSEKEEPING),
    # -- Consul events
    _o("events", False, parse_bool,
       "yes: a Consul user event after each accepted register, deregister, maintenance", EVENTS),
    _o("event_register", "asterisk-register", parse_event_name, "its name on registration",
       EVENTS),
    _o("event_deregister", "asterisk-deregister", parse_event_name,
       "its name on deregistration", EVENTS),
    _o("event_maintenance", "asterisk-maintenance", parse_event_name,
       "its name on a maintenance change", EVENTS),
    # -- Consul KV
    _o("kv_prefix", "${ID}", parse_kv_prefix, "where the [kv] keys go (a template)", KV),
    _o("kv_session_ttl", Duration("30s"), parse_session_ttl,
       "TTL of the session holding the keys (10s-24h); renewed every half of it", KV),
    _o("kv", (), None, "key = value pairs written under kv_prefix (templates, at most 64)", KV,
       section="kv"),
)

# What the parse loop reads: (section, name) -> row.
PARSED: Dict[Tuple[str, str], Option] = {(o.section, o.name): o for o in ROWS if o.parse}
BY_NAME: Dict[str, Option] = {o.name: o for o in ROWS}
# Every Settings field and its row.
FIELDS: Dict[str, Option] = {o.attribute: o for o in ROWS if o.attribute}


def option(name: str) -> Option:
    return BY_NAME[name]


def default_text(row: Option) -> str:
    """The default as an operator writes it in the file ("" when unset)."""
    value = row.default
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)
