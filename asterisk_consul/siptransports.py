"""The SIP transports Asterisk's configuration declares, and what follows from them: the port
`discovery_port = auto` takes, the TaggedAddresses consumers pick a transport from, and the
listener the SIP probe asks. Pure functions over parsed .conf files (config.py); the files are
read by resolve.py, and the probe checks that the running stack matches.

    transports = pjsip_transports(config, ws_port=8088, wss_port=None)
    transports = chan_sip_transports(config)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .config import Config
from .sip_probe import Target

KINDS = ("udp", "tcp", "tls", "ws", "wss")
PROBED_KINDS = ("udp", "tcp")  # a plain OPTIONS can ask these (TLS would need a handshake)
_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
# Shape of the Settings field: (kind, bind address, port) per transport, in file order.
Published = Tuple[Tuple[str, str, int], ...]


@dataclass(frozen=True)
class Transport:
    kind: str     # one of KINDS
    address: str  # where it binds ("0.0.0.0", "::", "10.0.0.5")
    port: int
    name: str     # the pjsip.conf section, or "sip.conf"
    where: str    # file:line that declares it


def _split_bind(text: str) -> Tuple[str, Optional[int]]:
    """'0.0.0.0', '0.0.0.0:5060', '[::]:5060', '::' -> (address, port or None)."""
    text = text.strip()
    match = re.fullmatch(r"\[([^\]]*)\](?::([0-9]{1,5}))?", text)
    if match:
        return match.group(1), int(match.group(2)) if match.group(2) else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port) if port.isdigit() else None
    return text, None


def pjsip_transports(config: Config, ws_port: Optional[int],
                     wss_port: Optional[int]) -> List[Transport]:
    """Each type=transport section of pjsip.conf (templates skipped). WebSocket transports
    ride Asterisk's HTTP server: their ports are its ports (None: that server is off)."""
    found = []
    for section in config:
        kind_entry = section.get("type")
        if section.is_template or kind_entry is None or kind_entry.value.lower() != "transport":
            continue
        kind = (section.value("protocol") or "udp").strip().lower()
        if kind not in KINDS:
            continue
        bind = section.get("bind")
        address, port = _split_bind(bind.value) if bind is not None and bind.value else \
            ("0.0.0.0", None)
        if kind in ("ws", "wss"):
            port = ws_port if kind == "ws" else wss_port
            if port is None:
                continue
        found.append(Transport(kind, address or "0.0.0.0", port or _DEFAULT_PORTS[kind],
                               section.name, (bind or kind_entry).where))
    return found


def chan_sip_transports(config: Config) -> List[Transport]:
    """chan_sip's listeners from sip.conf [general]: UDP always, TCP and TLS when enabled."""
    general = config.section("general")
    if general is None:
        return [Transport("udp", "0.0.0.0", 5060, "sip.conf", "default")]

    def enabled(key: str) -> bool:
        return (general.value(key) or "no").strip().lower() in ("yes", "true", "on", "1")

    bindport_text = (general.value("bindport") or "").strip()
    bindport = int(bindport_text) if bindport_text.isdigit() else 5060
    found = []
    for kind, key, default_port, on in (
            ("udp", "udpbindaddr", bindport, True),
            ("tcp", "tcpbindaddr", 5060, enabled("tcpenable")),
            ("tls", "tlsbindaddr", 5061, enabled("tlsenable"))):
        if not on:
            continue
        entry = general.get(key) or (general.get("bindaddr") if kind == "udp" else None)
        address, port = _split_bind(entry.value) if entry is not None and entry.value else \
            ("0.0.0.0", None)
        where = entry.where if entry is not None else "sip.conf (default)"
        found.append(Transport(kind, address or "0.0.0.0", port or default_port, "sip.conf",
                               where))
    return found


def port_transport(transports: List[Transport], name: str = "") -> Optional[Transport]:
    """The transport `discovery_port = auto` takes: the one named, else the first UDP one,
    else the first of any kind."""
    if name:
        return next((t for t in transports if t.name.lower() == name.lower()), None)
    return next((t for t in transports if t.kind == "udp"), transports[0] if transports else None)


def published(transports: List[Transport]) -> Published:
    return tuple((t.kind, t.address, t.port) for t in transports)


def _wildcard(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def tagged_addresses(transports: Published, port: int, discovery_ip: str) -> Dict[str, Dict]:
    """sip_<kind> -> {"Address", "Port"}: one per kind, the one on `port` first; a transport
    bound to every address is reached at discovery_ip."""
    tagged: Dict[str, Dict] = {}
    for kind, address, transport_port in sorted(transports, key=lambda t: t[2] != port):
        key = f"sip_{kind}"
        if key not in tagged:
            tagged[key] = {"Address": discovery_ip if _wildcard(address) else address,
                           "Port": transport_port}
    return tagged


def probe_target(transports: Published, port: int) -> Optional[Target]:
    """The listener the probe asks: what listens on the service Port (UDP unless only TCP
    does), at loopback when it binds every address. None: only TLS or WebSocket listens
    there. With no transport known, UDP at 127.0.0.1."""
    if not transports:
        return Target("udp", "127.0.0.1", port)
    on_port = [t for t in transports if t[2] == port and t[0] in PROBED_KINDS]
    if not on_port:
        if any(t[2] == port for t in transports):
            return None
        return Target("udp", "127.0.0.1", port)  # nothing declared there: ask anyway
    kind, address, _ = min(on_port, key=lambda t: PROBED_KINDS.index(t[0]))
    if _wildcard(address):
        address = "::1" if ":" in address else "127.0.0.1"
    return Target(kind, address, port)
