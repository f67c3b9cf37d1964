"""Reading res_discovery_consul.conf into Settings.

The parse loop goes over the option table (options.py): every known option is parsed once
into its typed value, unknown options and sections are warned about, and each value keeps
the file and line it came from. Values that need I/O are resolved afterwards (resolve.py);
checks across options come last. A value that cannot be used raises ConfigError naming the
file, line, option and value (never a secret's value).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .config import Config, ConfigError, Entry, Section, parse_file
from .options import FIELDS, PARSED, option
from .registration import event_payload, event_too_large
from .resolve import HTTP_CONFIG_FILE, Resolution
from .settings import Settings
from .values import InvalidValue, check_kv_key, has_control, kv_template_problem

CONFIG_FILE = "res_discovery_consul.conf"
METADATA_SECTION_PREFIX = "metadata_"
METADATA_KEYS = ("group", "priority", "weight", "max_calls", "flags")
METADATA_VALUE_MAX = 512          # Consul rejects longer Meta values
CONSUL_MIN_DEREGISTER_NS = 60 * 10**9
KV_SECTION = "kv"
KV_MAX_VALUE_BYTES = 512 * 1024   # Consul's limit for one value
KV_MAX_KEYS = 64
TLS_OPTIONS = ("ca_file", "ca_path", "client_cert", "client_key", "tls_verify", "tls_server_name")


# Options of the original C module (sboily/asterisk-consul-module) that this one has no use
# for: named as such at load instead of "unknown option" (docs/migrating.md).
ORIGINAL_ONLY = {
    "debug": "the module logs through Asterisk's logger (its debug lines at Asterisk's debug "
             "level)",
    "register_url": "the module registers through the agent's API (/v1/agent/service/register "
                    "at host:port)",
    "deregister_url": "the module deregisters through the agent's API "
                      "(/v1/agent/service/deregister at host:port)",
}


def load_settings(host, environ: Optional[Mapping[str, str]] = None) -> Tuple[Settings, List[str]]:
    """Read res_discovery_consul.conf and http.conf from host.config_dir().

    Returns the settings and the warnings to log. Raises ConfigError for anything that
    would make the module register something wrong.
    """
    loader = Loader(host, os.environ if environ is None else environ)
    return loader.load()


class Loader(Resolution):
    def __init__(self, host, environ: Mapping[str, str]):
        self.host = host
        self.environ = environ
        self.config_dir = host.config_dir()
        self.values: Dict[str, object] = {}
        self.sources: Dict[str, str] = {}
        self.warnings: List[str] = []
        self.http_enabled = False   # Asterisk's HTTP server is off unless http.conf enables it
        self.https_enabled = False  # and its TLS server unless tlsenable = yes
        self.http_bind: Optional[Entry] = None       # http.conf bindaddr
        self.http_bindport: Optional[Entry] = None   # http.conf bindport
        self.https_bind: Optional[Entry] = None      # http.conf tlsbindaddr

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
            self.read_section(general)
        if self.values.get("enabled") is False:
            # A disabled module declines to load: nothing else is checked or looked up.
            return self.build(), self.warnings

        entries = self.read_section(consul) if consul is not None else {}
        self.resolve_agent_address(entries)
        self.resolve_token(entries)
        self.resolve_tls(entries)
        self.resolve_service_id(entries)
        self.resolve_name(entries)
        self.resolve_discovery_ip(entries)
        self.read_metadata(config, entries)
        self.read_kv(config)
        self.read_http_conf()
        self.resolve_sip(entries)
        self.resolve_check_port(entries)
        self.resolve_check_type(entries)
        self.cross_checks(entries)
        return self.build(), self.warnings

    def build(self) -> Settings:
        sources = {name: "default" for name in FIELDS}
        sources.update(self.sources)
        return Settings(**self.values, sources=sources)  # type: ignore[arg-type]

    def set(self, field_name: str, value: object, source: str) -> None:
        self.values[field_name] = value
        self.sources[field_name] = source

    def read_section(self, section: Section) -> Dict[str, Entry]:
        """Parse every option of the table in this section; returns option -> the entry that
        set it. Values resolved later (resolve.py) are only parsed (checked) here."""
        entries: Dict[str, Entry] = {}
        where = section.name.lower()
        for key in section.keys():
            entry = section.get(key)
            assert entry is not None
            row = PARSED.get((where, key.lower()))
            if row is None and key.lower() in ORIGINAL_ONLY:
                self.warnings.append(f"{entry.where}: [{where}] {key}: an option of the original "
                                     f"C module, not used by this one (ignored): "
                                     f"{ORIGINAL_ONLY[key.lower()]}")
                continue
            if row is None:
                self.warnings.append(f"{entry.where}: [{where}] unknown option '{key}' (ignored)")
                continue
            self.warn_duplicates(section, key)
            if not entry.value and not row.empty_is_value:
                continue  # empty: as if not set
            assert row.parse is not None  # PARSED holds only parsed rows
            value = self.parse(entry, where, row.parse)
            entries[row.name] = entry
            if not row.resolved:
                self.set(row.attribute, value, entry.where)
        return entries

    def warn_unknown_sections(self, config: Config) -> None:
        for section in config:
            name = section.name.lower()
            if name in ("general", "consul", KV_SECTION) or \
                    name.startswith(METADATA_SECTION_PREFIX):
                continue
            self.warnings.append(f"{section.where}: unknown section [{section.name}] (ignored)")

    def warn_duplicates(self, section: Section, key: str) -> None:
        own = section.own_all(key)
        if len(own) > 1:
            earlier = ", ".join(e.where for e in own[:-1])
            self.warnings.append(f"{own[-1].where}: [{section.name}] {own[-1].key} is set more "
                                 f"than once: this line wins over {earlier}")

    def parse(self, entry: Entry, section: str, parser: Callable[[str], object]) -> object:
        try:
            return parser(entry.value)
        except InvalidValue as exc:
            raise self.error(entry, section, str(exc)) from None

    @staticmethod
    def error(entry: Entry, section: str, reason: str) -> ConfigError:
        row = PARSED.get((section, entry.key.lower()))
        if row is not None and row.secret:
            return ConfigError(f"[{section}] {entry.key}: {reason}", entry.file, entry.line)
        return ConfigError(f"[{section}] {entry.key} = '{entry.value}': {reason}",
                           entry.file, entry.line)

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
            if len(item.value) > METADATA_VALUE_MAX or has_control(item.value):
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
        keys = section.keys()
        if len(keys) > KV_MAX_KEYS:  # before any work on them
            raise ConfigError(f"[{section.name}] has {len(keys)} keys: at most {KV_MAX_KEYS}",
                              section.file, section.line)
        pairs: List[Tuple[str, str]] = []
        for key in keys:
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
        self.set("kv", tuple(pairs), section.where)

    # -- checks across options ---------------------------------------------------------

    def check_tls_use(self, entries: Dict[str, Entry]) -> None:
        self.warnings += _tls_use_warnings(self.values, self.sources, entries)

    def value(self, name: str) -> Any:
        """An option's value so far: as set, else its default (Any: each option its own type)."""
        return self.values[name] if name in self.values else option(name).default

    def check_event_size(self, entries: Dict[str, Entry]) -> None:
        """The Consul user events must fit in Consul's limit: said at load, with the line."""
        if not self.value("events"):
            return
        payload = event_payload(str(self.values.get("service_id", "")), str(self.value("name")),
                                self.host.eid(),
                                str(self.value("discovery_ip")), int(self.value("discovery_port")),
                                self.host.version(), True)
        for event in ("event_register", "event_deregister", "event_maintenance"):
            problem = event_too_large(str(self.value(event)), payload)
            if problem:
                where = entries["events"].where if "events" in entries else CONFIG_FILE
                self.warnings.append(f"{where}: [consul] events = yes, but the event "
                                     f"{self.value(event)} cannot be sent: {problem}")

    def cross_checks(self, entries: Dict[str, Entry]) -> None:
        self.check_tls_use(entries)
        self.check_event_size(entries)
        after = self.value("check_deregister_after")
        if self.value("check") and after.ns < CONSUL_MIN_DEREGISTER_NS:
            where = entries["check_deregister_after"].where if "check_deregister_after" in entries \
                else CONFIG_FILE + " (default)"
            self.warnings.append(f"{where}: [consul] check_deregister_after = '{after}' is below "
                                 f"Consul's minimum: Consul will use 1m")
        problem = self.values.get("check_problem")
        if self.values.get("check", option("check").default) and problem:
            if not self.http_enabled:
                where = entries["check"].where if "check" in entries else \
                    entries["check_type"].where
                self.warnings.append(f"{where}: [consul] check = yes, but Asterisk's HTTP server "
                                     f"is not enabled in {HTTP_CONFIG_FILE} ([general] enabled = "
                                     f"yes): the EID check will fail")
            elif self.values.get("check_scheme") == "https" and not self.https_enabled:
                where = entries["check_scheme"].where
                self.warnings.append(f"{where}: [consul] check_scheme = https, but "
                                     f"{HTTP_CONFIG_FILE} does not enable Asterisk's TLS server "
                                     f"([general] tlsenable = yes): the EID check will fail")
            else:
                where = entries["check_type"].where
                self.warnings.append(f"{where}: [consul] check_type = "
                                     f"{self.values['check_type']}: the EID check will fail: "
                                     f"{problem}")
        https_only = [o for o in ("check_tls_server_name", "check_tls_skip_verify") if o in entries]
        if https_only and self.values.get("check_scheme", "http") != "https":
            where = entries[https_only[0]].where
            self.warnings.append(f"{where}: [consul] {', '.join(https_only)} set, but "
                                 f"check_scheme is http: not used")
        if self.values.get("check_tls_skip_verify") and self.values.get("check_scheme") == "https":
            self.warnings.append(f"{entries['check_tls_skip_verify'].where}: [consul] "
                                 f"check_tls_skip_verify = yes: Consul does not verify Asterisk's "
                                 f"certificate for the EID check")



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
