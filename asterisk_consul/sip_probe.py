"""One SIP OPTIONS request to a listener on this box, and what its answer says.

    result = probe(Target("udp", "127.0.0.1", 5060), timeout_s=0.5)

Any final response means the SIP stack behind the listener takes requests (a 401 or 404 too:
it parsed ours and answered); a 503 is Asterisk's sign of overload; no answer within the
deadline, or an ICMP refusal, means nothing takes calls there. Literal addresses only (never
a DNS lookup); the whole exchange stays within one deadline. The socket and the clock are
injectable so tests can drive every path. No other I/O.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

ALIVE, OVERLOADED, DEAD = "alive", "overloaded", "dead"
_MAX_ANSWER = 65536  # a SIP message over UDP fits; over TCP we read only the head
_STATUS_LINE = re.compile(rb"SIP/2\.0 ([1-6][0-9][0-9]) ?([^\r\n]*)")
_CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
USER = "res_discovery_consul"  # the From user: Asterisk's log lines name the prober


@dataclass(frozen=True)
class Target:
    transport: str  # "udp" or "tcp"
    host: str       # a literal IPv4 or IPv6 address
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport} {host}:{self.port}"


@dataclass(frozen=True)
class ProbeResult:
    outcome: str            # ALIVE, OVERLOADED or DEAD
    reason: str             # one line for the checks' output and the status
    rtt_s: Optional[float]  # round trip of an answered probe
    target: Target


def _dead(target: Target, what: str, after: str = "") -> ProbeResult:
    return ProbeResult(DEAD, f"SIP: {what} on {target}{after}", None, target)


def _answered(target: Target, code: int, reason: str, rtt_s: float) -> ProbeResult:
    said = f"{code} {reason}".strip()
    if code == 503:
        return ProbeResult(OVERLOADED, f"SIP: {target} answers {said} (overloaded)", rtt_s,
                           target)
    return ProbeResult(ALIVE, f"SIP: {said} from {target} in {_ms(rtt_s)}", rtt_s, target)


def _ms(seconds: Optional[float]) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.1f} ms"


def options_request(target: Target, local: Tuple[str, int], call_id: str, branch: str,
                    tag: str) -> bytes:
    """An out-of-dialog OPTIONS to the listener itself (no user: the server, not an endpoint)."""
    def hostport(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    via_transport = target.transport.upper()
    here = hostport(*local)
    there = hostport(target.host, target.port)
    transport_param = ";transport=tcp" if target.transport == "tcp" else ""
    lines = [
        f"OPTIONS sip:{there}{transport_param} SIP/2.0",
        f"Via: SIP/2.0/{via_transport} {here};branch=z9hG4bK{branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{USER}@{here}>;tag={tag}",
        f"To: <sip:{there}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:{USER}@{here}{transport_param}>",
        "Accept: application/sdp",
        "User-Agent: res_discovery_consul",
        "Content-Length: 0",
        "", "",
    ]
    return "\r\n".join(lines).encode("ascii")


def status_of(answer: bytes) -> Optional[Tuple[int, str, str]]:
    """(code, reason, Call-ID) of a SIP response, or None when it is not one."""
    match = _STATUS_LINE.match(answer)
    if match is None:
        return None
    call = _CALL_ID.search(answer)
    call_id = call.group(1).strip().decode("ascii", "replace") if call else ""
    return int(match.group(1)), match.group(2).decode("ascii", "replace").strip(), call_id


def _numeric(target: Target) -> Tuple[int, tuple]:
    """The address family and sockaddr of a literal address (AI_NUMERICHOST: no DNS)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        target.host, target.port, 0, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)[0]
    return family, sockaddr


SocketFactory = Callable[[int, int], socket.socket]


def probe(target: Target, timeout_s: float, *, make_socket: SocketFactory = socket.socket,
          clock: Callable[[], float] = time.monotonic,
          token: Callable[[int], bytes] = os.urandom) -> ProbeResult:
    """One OPTIONS and its final answer, all within `timeout_s`."""
    start = clock()
    deadline = start + timeout_s
    call_id = token(12).hex() + "@res_discovery_consul"
    branch, tag = token(8).hex(), token(4).hex()
    no_answer = _dead(target, "no answer", f" within {timeout_s * 1000:.0f} ms")
    try:
        family, sockaddr = _numeric(target)
    except (OSError, UnicodeError) as exc:
        return _dead(target, f"cannot probe ({exc})")
    kind = socket.SOCK_STREAM if target.transport == "tcp" else socket.SOCK_DGRAM
    try:
        sock = make_socket(family, kind)
    except OSError as exc:
        return _dead(target, f"no socket ({exc.strerror or exc})")
    try:
        sock.settimeout(max(deadline - clock(), 0.001))
        # connect() on UDP too: an ICMP port unreachable then comes back as a refusal.
        sock.connect(sockaddr)
        local = sock.getsockname()[:2]
        sock.sendall(options_request(target, local, call_id, branch, tag))
        buffered = b""
        while True:
            left = deadline - clock()
            if left <= 0:
                return no_answer
            sock.settimeout(left)
            data = sock.recv(_MAX_ANSWER)
            if kind == socket.SOCK_STREAM:
                if not data:
                    return _dead(target, "connection closed without an answer")
                buffered += data
                if b"\r\n\r\n" not in buffered:
                    continue  # the head is not complete yet
                data, buffered = buffered.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", b""
            answer = status_of(data)
            if answer is None or answer[2] != call_id or answer[0] < 200:
                continue  # a provisional answer, or one to an earlier probe: wait on
            return _answered(target, answer[0], answer[1], clock() - start)
    except socket.timeout:
        return no_answer
    except ConnectionRefusedError:
        return _dead(target, "refused")
    except OSError as exc:
        return _dead(target, f"failure ({exc.strerror or exc})")
    finally:
        sock.close()
