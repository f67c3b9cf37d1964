"""The module's effective settings: one immutable value, made from the option table.

`Settings` has one field per row of options.ROWS (name, default and type from there) and
`sources`, which says where each value came from. loader.load_settings builds it from the
config file; tests build it directly. `settings_report` gives the rows of
`discovery show settings`, in the table's order.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

from .options import FIELDS, ROWS, Option
from .values import Duration


class _SettingsBehaviour:
    """What code asks of Settings beyond its fields; the fields come from options.ROWS."""

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

    def __post_init__(self) -> None:
        # Durations are parsed once: a plain string given by a caller becomes a Duration.
        for name, row in FIELDS.items():
            value = getattr(self, name)
            if isinstance(row.default, Duration) and not isinstance(value, Duration):
                object.__setattr__(self, name, Duration(value))


def _make_settings_class() -> type:
    fields: List[Any] = [
        (name, type(row.default), dataclasses.field(default=row.default, repr=not row.secret))
        for name, row in FIELDS.items()]
    # option name -> where its value came from: "default", "res_discovery_consul.conf:12",
    # "env CONSUL_HTTP_ADDR", "http.conf:4", ...  Left out of equality on purpose.
    fields.append(("sources", Dict[str, str], dataclasses.field(
        default_factory=dict, compare=False, hash=False, repr=False)))
    cls = dataclasses.make_dataclass("Settings", fields, bases=(_SettingsBehaviour,), frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = "The effective settings: one field per row of options.ROWS, and their sources."
    return cls


Settings = _make_settings_class()


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


def settings_report(settings) -> List[Tuple[str, str, str]]:
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
        elif name == "metadata":
            rows += [(f"metadata {key}", text, settings.sources.get(f"metadata.{key}", "default"))
                     for key, text in value]
        else:
            rows.append((row.name, shown(row, value), source))
    return rows
