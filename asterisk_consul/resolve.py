"""The settings whose final value needs more than their own line: the environment, files,
astdb, network interfaces, http.conf. Resolved in one place, after the parse loop (loader.py),
which mixes these steps in: each reads the entries the loop kept and sets values with their
sources, or raises ConfigError naming the option, the file and why.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import netinfo
from .config import ConfigError, Entry, parse_file, read_regular_file
from .consul import TLS_FILE_MAX_BYTES, ca_directory_bundle
from .options import option
from .siptransports import Transport, chan_sip_transports, pjsip_transports, port_transport, \
    published
from .values import (AUTO_PORT, InvalidValue, check_token, parse_address, parse_bool,
                     parse_check_type, parse_port, parse_service_id, parse_sip_port)

HTTP_CONFIG_FILE = "http.conf"
PJSIP_CONFIG_FILE = "pjsip.conf"
SIP_CONFIG_FILE = "sip.conf"
# The SIP channel drivers' technologies and the file each reads its transports from.
SIP_DRIVERS = (("PJSIP", PJSIP_CONFIG_FILE), ("SIP", SIP_CONFIG_FILE))
ASTDB_FAMILY = "res_discovery_consul"
ASTDB_SERVICE_ID_KEY = "service_id"
DEFAULT_HTTPS_PORT = 8501         # Consul's conventional HTTPS port
TOKEN_FILE_MAX_BYTES = 64 * 1024
_DNS_SERVICE_NAME = re.compile(r"[A-Za-z0-9-]+")   # what Consul can serve over DNS


class TokenFileProblem(Exception):
    """Why a token file gives no token; the text never names the file (it may be a token)."""


def token_of_file(path: str) -> str:
    """The whitespace-stripped token a token file holds ("" when empty), read now: at load,
    at reload, and by the registrar's watch of the file."""
    try:
        data = read_regular_file(path, TOKEN_FILE_MAX_BYTES)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "bad name"
        raise TokenFileProblem(f"cannot read the token file it names: {reason} (the name is "
                               f"not shown: it may be a token)") from None
    if len(data) > TOKEN_FILE_MAX_BYTES:
        raise TokenFileProblem(f"the token file is larger than {TOKEN_FILE_MAX_BYTES} bytes: "
                               f"not a token")
    try:
        token = data.decode("utf-8").strip()
        check_token(token)
    except UnicodeDecodeError:
        raise TokenFileProblem("the token file is not UTF-8 text") from None
    except InvalidValue as exc:
        raise TokenFileProblem(f"the token in the file {exc}") from None
    return token


class Resolution:
    """The resolve steps of the Loader (values, sources, warnings, environ, host, set())."""

    # What the Loader (loader.py) gives these steps: declared here so they can be checked.
    host: Any
    environ: Mapping[str, str]
    config_dir: str
    values: Dict[str, object]
    sources: Dict[str, str]
    warnings: List[str]
    http_enabled: bool
    https_enabled: bool
    http_bind: Optional[Entry]
    http_bindport: Optional[Entry]
    https_bind: Optional[Entry]

    if TYPE_CHECKING:
        def set(self, field_name: str, value: object, source: str) -> None: ...

        def parse(self, entry: Entry, section: str, parser: Callable[[str], object]) -> object: ...

        @staticmethod
        def error(entry: Entry, section: str, reason: str) -> ConfigError: ...

    # -- resolution of values that depend on more than their own line ------------------

    def resolve_agent_address(self, entries: Dict[str, Entry]) -> None:
        missing = [o for o in ("scheme", "host", "port") if o not in entries]
        raw = self.environ.get(option("host").env, "").strip()
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
            # A file that cannot be read is not named: a token pasted there instead of its
            # file's name would be in the log (the line of the config file says which it is).
            # One that was read is a file: `discovery show settings` names it.
            token = self.read_token_file(path, f"{file_entry.where}: [consul] token_file")
            self.set("token", token, f"{file_entry.where} (token_file {path})")
            self.set("token_file", path, file_entry.where)  # watched by the registrar
            return
        # Consul's own clients: a token file (when it holds a token) wins over the token.
        token_file = self.environ.get(option("token_file").env, "").strip()
        if token_file:
            token = self.read_token_file(token_file, "env CONSUL_HTTP_TOKEN_FILE")
            if token:
                self.set("token", token, f"env CONSUL_HTTP_TOKEN_FILE ({token_file})")
                self.set("token_file", token_file, "env CONSUL_HTTP_TOKEN_FILE")
                return
        env_token = self.environ.get(option("token").env, "").strip()
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
        """The token of a token file. Its name is a secret too (a token pasted in its place):
        no message names it."""
        try:
            token = token_of_file(path)
        except TokenFileProblem as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not token:
            self.warnings.append(f"{where}: the token file is empty: no token is sent")
        return token

    def resolve_tls(self, entries: Dict[str, Entry]) -> None:
        """TLS to the agent: the file wins per option, else Consul's environment variables.
        Every file named is checked now (readable, a regular file, PEM), so a typo refuses the
        load with the option and the file named instead of failing at the first call."""
        for name in ("tls_verify", "tls_server_name"):
            row = option(name)
            raw = self.environ.get(row.env, "").strip()
            if name in entries or not raw:
                continue
            assert row.parse is not None  # both are parsed options
            try:
                self.set(name, row.parse(raw), f"env {row.env}")
            except InvalidValue as exc:
                raise ConfigError(f"env {row.env} = '{raw}': {exc}") from None
        for name in ("ca_file", "ca_path"):
            self.resolve_tls_path(name, entries.get(name))
        cert_entry, key_entry = entries.get("client_cert"), entries.get("client_key")
        if cert_entry or key_entry:
            pair = {"client_cert": cert_entry, "client_key": key_entry}
        else:  # from the environment only as a pair: never half from each place
            pair = {"client_cert": None, "client_key": None}
        for name, entry in pair.items():
            self.resolve_tls_path(name, entry, from_env=not (cert_entry or key_entry))
        has_cert = bool(self.values.get("client_cert"))
        has_key = bool(self.values.get("client_key"))
        if has_cert != has_key:
            present, absent = ("client_cert", "client_key") if has_cert else \
                ("client_key", "client_cert")
            raise ConfigError(f"{self.sources[present]}: [consul] {present} is set but "
                              f"{absent} is not: a client certificate needs its key (and the "
                              f"key its certificate)")

    def resolve_tls_path(self, name: str, entry: Optional[Entry], from_env: bool = True) -> None:
        env_name = option(name).env
        if entry is not None:
            path = entry.value
            if not os.path.isabs(path):
                path = os.path.join(self.config_dir, path)
            where = f"{entry.where}: [consul] {name} = '{entry.value}'"
            source = entry.where if path == entry.value else f"{entry.where} ({path})"
        else:
            path = self.environ.get(env_name, "").strip() if from_env else ""
            if not path:
                return
            where, source = f"env {env_name} = '{path}' ({name})", f"env {env_name}"
        if name == "ca_path":
            self.check_ca_directory(path, where)
        else:
            self.check_pem_file(path, name, where)
        self.set(name, path, source)

    def check_pem_file(self, path: str, option: str, where: str) -> None:
        what = {"ca_file": "CA file", "client_cert": "client certificate",
                "client_key": "client key"}[option]
        data = self.read_small_file(path, TLS_FILE_MAX_BYTES, where, what, "a PEM file")
        if option == "client_key":
            if not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", data):
                raise ConfigError(f"{where}: the {what} {path} holds no PEM private key "
                                  f"('-----BEGIN ... PRIVATE KEY-----')")
            if b"ENCRYPTED" in data:
                # OpenSSL would ask its pass phrase on Asterisk's terminal, blocking the worker.
                raise ConfigError(f"{where}: the {what} {path} is encrypted (it needs a pass "
                                  f"phrase): use a key without one (openssl pkey -in KEY -out "
                                  f"PLAIN), readable by Asterisk only")
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
        import uuid  # only when an ID must be made: uuid imports platform (~0.25 MB)

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
        interface = self.values.get("discovery_interface", option("discovery_interface").default)
        try:
            address = netinfo.interface_address(str(interface))
        except netinfo.InterfaceAddressError as exc:
            raise self.error(entry, "consul", f"{exc} (discovery_interface from "
                             f"{self.sources.get('discovery_interface', 'default')})") from None
        self.set("discovery_ip", address, f"{entry.where} (auto, interface {interface})")

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
        self.http_bind = general.get("bindaddr")
        self.http_bindport = general.get("bindport") if read("bindport", parse_port)[1] else None
        prefix, prefix_entry = read("prefix", str)
        if prefix_entry:
            self.set("http_prefix", str(prefix).strip("/"), prefix_entry.where)
        bindport, bindport_entry = read("bindport", parse_port)
        tlsenable, tlsenable_entry = read("tlsenable", parse_bool)
        if tlsenable and tlsenable_entry:
            tlsport, tls_entry = read("tlsbindport", parse_port)
            if tls_entry is None:
                tlsport, tls_entry = read("tlsbindaddr", _port_of_bind_address)
            self.https_bind = general.get("tlsbindaddr")
            self.set("ari_scheme", "https", tlsenable_entry.where)
            self.https_enabled = True
            if tls_entry:
                self.set("ari_port", tlsport, tls_entry.where)
            else:
                self.set("ari_port", 8089, "default")  # Asterisk's default TLS port
        elif bindport_entry:
            self.set("ari_port", bindport, bindport_entry.where)

    # -- the SIP stack (pjsip.conf or sip.conf) ------------------------------------------

    def resolve_sip(self, entries: Dict[str, Entry]) -> None:
        """The SIP transports (for TaggedAddresses and the probe), and discovery_port = auto
        from them. What the files say is checked against the running stack by the probe."""
        transports, source = self.read_sip_transports()
        if transports:
            self.set("sip_transports", published(transports), source)
        entry = entries.get("discovery_port")
        port = int(str(self.parse(entry, "consul", parse_sip_port))) if entry else \
            int(option("discovery_port").default)
        where = entry.where if entry else "default"
        name = str(self.values.get("sip_transport", ""))
        if port == AUTO_PORT:
            chosen = port_transport(transports, name)
            if chosen is None and name:
                self.warnings.append(f"{self.sources['sip_transport']}: [consul] sip_transport = "
                                     f"{name}: {source} declares no such transport: "
                                     f"discovery_port = auto takes the first UDP one")
                chosen = port_transport(transports)
            if chosen is None:
                self.warnings.append(f"{where}: [consul] discovery_port = auto: no SIP transport "
                                     f"found in {PJSIP_CONFIG_FILE} or {SIP_CONFIG_FILE}: "
                                     f"advertising 5060")
                self.set("discovery_port", 5060, f"{where} (auto: no transport found)")
            else:
                self.set("discovery_port", chosen.port, f"{where} (auto: {chosen.kind} transport "
                                                        f"{chosen.name}, {chosen.where})")
            return
        self.set("discovery_port", port, where)
        if transports and not any(t.port == port for t in transports):
            listed = ", ".join(f"{t.kind} {t.port}" for t in transports)
            self.warnings.append(f"{where}: [consul] discovery_port = {port}: no SIP transport "
                                 f"in {source} listens on it ({listed}): consumers will send "
                                 f"calls where nothing takes them (with sip_check on, the box "
                                 f"is not healthy); discovery_port = auto takes the stack's")
        if name:
            self.warnings.append(f"{self.sources['sip_transport']}: [consul] sip_transport set, "
                                 f"but discovery_port is not auto: not used")

    def read_sip_transports(self) -> Tuple[List[Transport], str]:
        """The transports of the SIP stack that runs (the driver loaded; with none loaded yet,
        pjsip.conf, else sip.conf), and the file they come from. Its file, its rules:
        problems are warnings."""
        running = [conf for tech, conf in SIP_DRIVERS if self.host.channel_tech(tech)]
        for conf in running or [conf for _, conf in SIP_DRIVERS]:
            path = os.path.join(self.config_dir, conf)
            if not os.path.isfile(path):
                continue
            try:
                config = parse_file(path, self.config_dir)
            except ConfigError as exc:
                self.warnings.append(f"{exc} ({conf} ignored: no SIP transports known)")
                continue
            if conf == PJSIP_CONFIG_FILE:
                transports = pjsip_transports(config, *self.websocket_ports())
            else:
                transports = chan_sip_transports(config)
            if transports:
                return transports, conf
        return [], "none found"

    def websocket_ports(self) -> Tuple[Optional[int], Optional[int]]:
        """Where PJSIP's ws and wss transports listen: Asterisk's HTTP and TLS servers."""
        ws = None
        if self.http_enabled:
            bind = self.http_bind
            try:
                ws = _port_of_bind_address(bind.value.strip()) if bind is not None else None
            except InvalidValue:
                ws = None
            if ws is None:
                ws = parse_port(self.http_bindport.value) if self.http_bindport else 8088
        wss = int(str(self.values.get("ari_port", 8089))) if self.https_enabled else None
        return ws, wss

    def resolve_check_port(self, entries: Dict[str, Entry]) -> None:
        """check_http_port, unless set, follows http.conf: its bindport, or with check_scheme =
        https Asterisk's TLS port (tlsbindport, tlsbindaddr's port, else 8089)."""
        entry = entries.get("check_http_port")
        if entry is not None:
            self.set("check_http_port", self.parse(entry, "consul", parse_port), entry.where)
            return
        if self.values.get("check_scheme") != "https":
            # Asterisk: a port in bindaddr wins over bindport.
            bind = self.http_bind
            try:
                port = _port_of_bind_address(bind.value.strip()) if bind is not None else None
            except InvalidValue:
                port = None
            if bind is not None and port is not None:
                self.set("check_http_port", port, f"{bind.where} (http.conf bindaddr's port)")
            elif self.http_bindport is not None:
                self.set("check_http_port", parse_port(self.http_bindport.value),
                         f"{self.http_bindport.where} (http.conf bindport)")
            return
        if self.https_enabled:
            self.set("check_http_port", self.values.get("ari_port", 8089),
                     f"{self.sources.get('ari_port', 'default')} (Asterisk's TLS port)")
        else:
            self.set("check_http_port", 8089, "default (Asterisk's TLS port)")


    def resolve_check_type(self, entries: Dict[str, Entry]) -> None:
        """check_type = auto (the default): both checks when Asterisk's HTTP server can answer
        the agent at discovery_ip, else the TTL check alone, which needs no HTTP server. With
        an EID check, why it cannot pass (when the load can tell) goes to check_problem."""
        entry = entries.get("check_type")
        kind = str(self.parse(entry, "consul", parse_check_type)) if entry else "auto"
        problem = self.eid_check_problem()
        where = entry.where if entry else "default"
        if kind == "auto":
            if problem:
                self.set("check_type", "ttl", f"{where} (auto: ttl, the EID check could not "
                                              f"pass: {problem})")
            else:
                self.set("check_type", "both", f"{where} (auto: http.conf's server answers at "
                                               f"discovery_ip)")
            return
        self.set("check_type", kind, where)
        if kind != "ttl" and problem:
            self.set("check_problem", problem, "load")

    def eid_check_problem(self) -> str:
        """Why Consul's poll of discovery_ip:check_http_port cannot reach Asterisk's HTTP
        server, as far as http.conf tells; "" when nothing says so."""
        https = self.values.get("check_scheme") == "https"
        if not self.http_enabled:
            return (f"Asterisk's HTTP server is not enabled in {HTTP_CONFIG_FILE} ([general] "
                    f"enabled = yes)")
        if https and not self.https_enabled:
            return (f"{HTTP_CONFIG_FILE} does not enable Asterisk's TLS server ([general] "
                    f"tlsenable = yes)")
        bind, key = ((self.https_bind, "tlsbindaddr") if https and self.https_bind is not None
                     else (self.http_bind, "bindaddr"))
        if bind is None or not bind.value.strip():
            if https:
                return ""  # nothing said of where the TLS server listens
            return (f"{HTTP_CONFIG_FILE} sets no [general] bindaddr: Asterisk's HTTP server "
                    f"listens nowhere")
        address = _address_of_bind_address(bind.value.strip())
        ip = str(self.values.get("discovery_ip", option("discovery_ip").default))
        if address is None or _listens_at(address, ip):
            return ""
        return (f"{bind.where}: {key} = {bind.value.strip()}: Asterisk's HTTP server does not "
                f"listen at discovery_ip {ip}, where the agent polls it "
                f"({self.sources.get('discovery_ip', 'default')})")


def _address_of_bind_address(text: str):
    """The address of an Asterisk bind address ('0.0.0.0', '[::]:8089', '10.0.0.1:8088') as an
    ip_address, or None when it is not a literal address (a host name: nothing is said)."""
    import ipaddress

    match = re.fullmatch(r"\[([^\]]*)\](?::[0-9]+)?|([^:\[\]]*)(?::[0-9]+)?|([0-9A-Fa-f:.]+)", text)
    if not match:
        return None
    raw = next(g for g in match.groups() if g is not None)
    try:
        return ipaddress.ip_address(raw.split("%")[0])
    except ValueError:
        return None


def _listens_at(bind, ip_text: str) -> bool:
    """Whether a server bound to `bind` answers at `ip_text` (an address or a host name: a
    host name is given the benefit of the doubt)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(ip_text.strip("[]").split("%")[0])
    except ValueError:
        return True
    if bind.is_unspecified:
        # 0.0.0.0 takes IPv4; :: takes IPv6 and, dual-stack (Linux's default), IPv4 too.
        return bind.version == 6 or ip.version == 4
    return bind == ip


def _port_of_bind_address(text: str) -> int:
    """The port in an Asterisk bind address ('0.0.0.0:8089', '[::]:8089')."""
    match = re.fullmatch(r"(?:\[[^\]]*\]|[^:\[\]]*):([0-9]+)", text)
    if not match:
        raise InvalidValue("has no port")
    return parse_port(match.group(1))
