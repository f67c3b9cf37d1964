"""The module's effective settings: one immutable value, its fields written out.

`Settings` declares one typed field per Settings attribute of the option table
(options.ROWS), in the table's order, and `sources`, which says where each value came from.
loader.load_settings builds it from the config file; tests build it directly.
`settings_report` gives the rows of `discovery show settings`, in the table's order.

How the table and the fields are held together: the table stays the one place an option is
declared (its name, default, parser, doc, flags); the class adds only what a reader and a
type checker need to follow `settings.busy_channels`: its name and type. Each field's
default is read from its row (`_default("busy_channels")`), never written a second time.
tests/test_settings_declaration.py fails when the fields and the rows disagree in names,
order or types, or when a field carries a default of its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

from .options import FIELDS, ROWS, Option
from .values import Duration

Pairs = Tuple[Tuple[str, str], ...]


def _default(attribute: str) -> Any:
    """The field for a row of the table: the row's default; a secret is left out of repr. The
    row rides along in the field's metadata for the test that holds the two together."""
    row = FIELDS[attribute]
    return dataclasses.field(default=row.default, repr=not row.secret, metadata={"row": row})


@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings: one field per Settings attribute of options.ROWS, and their
    sources. Compared and hashed on the values alone."""

    enabled: bool = _default("enabled")
    # the Consul agent
    scheme: str = _default("scheme")
    host: str = _default("host")
    port: int = _default("port")
    token: str = _default("token")
    token_file: str = _default("token_file")
    consul_timeout_ms: int = _default("consul_timeout_ms")
    # TLS to the agent
    ca_file: str = _default("ca_file")
    ca_path: str = _default("ca_path")
    client_cert: str = _default("client_cert")
    client_key: str = _default("client_key")
    tls_verify: bool = _default("tls_verify")
    tls_server_name: str = _default("tls_server_name")
    # the service
    service_id: str = _default("service_id")
    name: str = _default("name")
    tags: Tuple[str, ...] = _default("tags")
    discovery_ip: str = _default("discovery_ip")
    discovery_port: int = _default("discovery_port")
    sip_transport: str = _default("sip_transport")
    sip_transports: Tuple[Tuple[str, str, int], ...] = _default("sip_transports")
    discovery_interface: str = _default("discovery_interface")
    metadata_profile: str = _default("metadata_profile")
    metadata: Pairs = _default("metadata")
    # health checks
    check: bool = _default("check")
    check_type: str = _default("check_type")
    check_scheme: str = _default("check_scheme")
    check_http_port: int = _default("check_http_port")
    check_tls_server_name: str = _default("check_tls_server_name")
    check_tls_skip_verify: bool = _default("check_tls_skip_verify")
    check_interval: Duration = _default("check_interval")
    check_timeout: Duration = _default("check_timeout")
    check_ttl: Duration = _default("check_ttl")
    check_deregister_after: Duration = _default("check_deregister_after")
    check_success_before_passing: int = _default("check_success_before_passing")
    check_failures_before_critical: int = _default("check_failures_before_critical")
    sip_check: str = _default("sip_check")
    # facts read from http.conf
    http_prefix: str = _default("http_prefix")
    ari_scheme: str = _default("ari_scheme")
    ari_port: int = _default("ari_port")
    check_problem: str = _default("check_problem")
    # drain and load
    drain_on_shutdown: bool = _default("drain_on_shutdown")
    busy_channels: int = _default("busy_channels")
    weight_passing: int = _default("weight_passing")
    weight_warning: int = _default("weight_warning")
    # housekeeping
    resync_interval: Duration = _default("resync_interval")
    # Consul events
    events: bool = _default("events")
    event_register: str = _default("event_register")
    event_deregister: str = _default("event_deregister")
    event_maintenance: str = _default("event_maintenance")
    # Consul KV
    kv_prefix: str = _default("kv_prefix")
    kv_session_ttl: Duration = _default("kv_session_ttl")
    kv: Pairs = _default("kv")
    # option name -> where its value came from: "default", "res_discovery_consul.conf:12",
    # "env CONSUL_HTTP_ADDR", "http.conf:4", ...  Left out of equality on purpose.
    sources: Dict[str, str] = dataclasses.field(
        default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        # Durations are parsed once: a plain string given by a caller becomes a Duration.
        for name, row in FIELDS.items():
            value = getattr(self, name)
            if isinstance(row.default, Duration) and not isinstance(value, Duration):
                object.__setattr__(self, name, Duration(value))

    @property
    def agent_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def timeout_s(self) -> float:
        return self.consul_timeout_ms / 1000.0

    @property
    def http_check(self) -> bool:
        # "auto" is resolved at load (resolve.py); a Settings made without the loader treats
        # it as "both".
        return self.check_type in ("http", "both", "auto")

    @property
    def ttl_check(self) -> bool:
        return self.check_type in ("ttl", "both", "auto")

    def check_key(self) -> Tuple[object, ...]:
        """The options behind the health checks: `discovery set check` lasts until they change."""
        return tuple(getattr(self, o.attribute) for o in ROWS if o.defines_check)

    def transport_key(self) -> Tuple[object, ...]:
        """Everything a Consul client is built from: a change needs a new client."""
        return tuple(getattr(self, o.attribute) for o in ROWS if o.defines_client)


# ---------------------------------------------------------------------------------------
# Report for 'discovery show settings'
# ---------------------------------------------------------------------------------------

def shown(row: Option, value: object) -> str:
    """An option's value as operators read it; a secret's value is never shown."""
    if row.secret:
        return f"(set, {len(str(value))} chars)" if value else row.unset_text
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ", ".join(value) if value else "(none)"
    if value == "":
        return row.unset_text
    return str(value)


def settings_report(settings: Settings) -> List[Tuple[str, str, str]]:
    """(option, shown value, source) rows, in the table's order."""
    rows: List[Tuple[str, str, str]] = []
    for name, row in FIELDS.items():
        source = settings.sources.get(name, "default")
        value = getattr(settings, name)
        if name == "kv":
            rows += [(f"kv {key}", text, settings.sources.get(f"kv.{key}", "default"))
                     for key, text in value]
            if not value:
                rows.append(("kv", "(none: no [kv] section)", source))
        elif name == "sip_transports":
            rows += [(f"sip_transport {kind}", f"{address}:{port}", source)
                     for kind, address, port in value]
            if not value:
                rows.append((name, "(none found)", source))
        elif name == "metadata":
            rows += [(f"metadata {key}", text, settings.sources.get(f"metadata.{key}", "default"))
                     for key, text in value]
        else:
            rows.append((row.name, shown(row, value), source))
    return rows
