"""A tiny DNS client for the tests: one SRV query over UDP to a Consul agent's DNS port, the
answers as (target, port, priority, weight). No dig needed; loopback, or a fleet
namespace's address."""

from __future__ import annotations

import os
import socket
import struct
from typing import List, Tuple

SRV = 33


def _name(labels: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in labels.rstrip(".").split(".")) + b"\0"


def _read_name(data: bytes, at: int) -> Tuple[str, int]:
    """A possibly compressed name at `at`; returns it and the offset after it."""
    labels, end = [], None
    while True:
        length = data[at]
        if length & 0xC0 == 0xC0:  # a pointer: the rest of the name is elsewhere
            end = at + 2 if end is None else end
            at = struct.unpack("!H", data[at:at + 2])[0] & 0x3FFF
            continue
        if length == 0:
            return ".".join(labels), (at + 1 if end is None else end)
        labels.append(data[at + 1:at + 1 + length].decode())
        at += 1 + length


def srv(port: int, name: str, timeout: float = 2.0,
        host: str = "127.0.0.1") -> List[Tuple[str, int, int, int]]:
    query_id = struct.unpack("!H", os.urandom(2))[0]
    query = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + _name(name) + \
        struct.pack("!HH", SRV, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, (host, port))
        data = sock.recv(65535)
    answer_id, _, questions, answers = struct.unpack("!HHHH", data[:8])
    assert answer_id == query_id
    at = 12
    for _ in range(questions):
        at = _read_name(data, at)[1] + 4
    found = []
    for _ in range(answers):
        at = _read_name(data, at)[1]
        kind, _, _, length = struct.unpack("!HHIH", data[at:at + 10])
        at += 10
        if kind == SRV:
            priority, weight, target_port = struct.unpack("!HHH", data[at:at + 6])
            found.append((_read_name(data, at + 6)[0], target_port, priority, weight))
        at += length
    return found
