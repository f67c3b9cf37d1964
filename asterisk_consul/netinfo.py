"""The address of a network interface, for discovery_ip = auto (Linux).

IPv4 comes from the SIOCGIFADDR ioctl (the interface's primary address, as the original
module used); an interface without IPv4 falls back to its first global IPv6 address
listed in /proc/net/if_inet6.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Optional

SIOCGIFADDR = 0x8915        # <linux/sockios.h>
IFNAMSIZ = 16               # names are at most 15 bytes plus NUL
IF_INET6_PATH = "/proc/net/if_inet6"

_SCOPE_GLOBAL = 0x00
# IFA_F_* flags that make an address unusable for others to reach us.
_IFA_F_DADFAILED = 0x08
_IFA_F_TENTATIVE = 0x40


class InterfaceAddressError(Exception):
    """The interface has no usable address; the message says which interface and why."""


def interface_address(name: str, if_inet6_path: str = IF_INET6_PATH) -> str:
    """IPv4 address of interface `name`, else its first global IPv6 address."""
    check_interface_name(name)
    try:
        socket.if_nametoindex(name)
    except OSError:
        raise InterfaceAddressError(f"interface '{name}' does not exist") from None
    address = ipv4_address(name)
    if address:
        return address
    address = global_ipv6_address(name, if_inet6_path)
    if address:
        return address
    raise InterfaceAddressError(
        f"interface '{name}' has no IPv4 address and no global IPv6 address")


def check_interface_name(name: str) -> None:
    if not name:
        raise InterfaceAddressError("no interface name given")
    if len(name.encode("utf-8", "surrogateescape")) >= IFNAMSIZ:
        raise InterfaceAddressError(
            f"interface name '{name}' is longer than {IFNAMSIZ - 1} characters")
    if "/" in name or "\0" in name or any(c.isspace() for c in name):
        raise InterfaceAddressError(f"'{name}' is not a valid interface name")


def ipv4_address(name: str) -> Optional[str]:
    """The interface's IPv4 address, or None when it has none (or it is not Linux)."""
    try:
        import fcntl  # not on every platform; imported here so the module always loads
    except ImportError:
        return None
    request = struct.pack("256s", name.encode("utf-8", "surrogateescape")[:IFNAMSIZ - 1])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
    except OSError as exc:
        if exc.errno in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENXIO, errno.EAFNOSUPPORT):
            return None  # no IPv4 on this interface (or in this kernel)
        raise InterfaceAddressError(
            f"cannot read the IPv4 address of interface '{name}': {exc.strerror or exc}") from None
    # struct ifreq: 16 bytes of name, then struct sockaddr_in (family, port, address).
    return socket.inet_ntoa(reply[20:24])


def global_ipv6_address(name: str, if_inet6_path: str = IF_INET6_PATH) -> Optional[str]:
    """First usable global-scope IPv6 address of the interface, from /proc/net/if_inet6."""
    try:
        with open(if_inet6_path, encoding="ascii", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        return None  # no IPv6 in this kernel
    for line in lines:
        # "<32 hex digits> <ifindex> <prefix len> <scope> <flags> <name>", all hex
        fields = line.split()
        if len(fields) != 6 or fields[5] != name:
            continue
        try:
            scope, flags = int(fields[3], 16), int(fields[4], 16)
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        except ValueError:
            continue
        if scope != _SCOPE_GLOBAL or flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
            continue
        return str(address)
    return None
