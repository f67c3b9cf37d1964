"""The SIP OPTIONS probe against tiny SIP responders on loopback (UDP and TCP), a port where
nothing listens, one that never answers, and a socket the test scripts: no Asterisk."""

from __future__ import annotations

import re
import socket
import threading

import pytest

from asterisk_consul.sip_probe import (ALIVE, DEAD, OVERLOADED, Target, options_request, probe,
                                       status_of)


def _answer(request: bytes, code: str, call_id=None) -> bytes:
    head = request.decode()
    via = re.search(r"^Via: .*$", head, re.M).group(0)
    call = call_id or re.search(r"^Call-ID: (.*)$", head, re.M).group(1).strip()
    return (f"SIP/2.0 {code}\r\n{via}\r\nCall-ID: {call}\r\nCSeq: 1 OPTIONS\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


class UdpResponder:
    """Answers each request with the answers `script` makes of it (none: silence)."""

    def __init__(self, script):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script):
        try:
            while True:
                data, peer = self.sock.recvfrom(65536)
                self.requests.append(data)
                for reply in script(data):
                    self.sock.sendto(reply, peer)
        except OSError:
            pass

    def close(self):
        self.sock.close()


@pytest.fixture
def udp():
    made = []

    def start(script):
        made.append(UdpResponder(script))
        return made[-1]
    yield start
    for responder in made:
        responder.close()


def test_an_answered_options_is_alive_with_its_status_and_round_trip(udp):
    responder = udp(lambda req: [_answer(req, "200 OK")])
    result = probe(Target("udp", "127.0.0.1", responder.port), 1.0)
    assert result.outcome == ALIVE and result.rtt_s is not None and result.rtt_s < 1.0
    assert result.reason.startswith(f"SIP: 200 OK from udp 127.0.0.1:{responder.port} in ")


def test_any_final_answer_counts_as_alive_but_503_is_overloaded(udp):
    unauthorized = udp(lambda req: [_answer(req, "401 Unauthorized")])
    overloaded = udp(lambda req: [_answer(req, "503 Service Unavailable")])
    assert probe(Target("udp", "127.0.0.1", unauthorized.port), 1.0).outcome == ALIVE
    busy = probe(Target("udp", "127.0.0.1", overloaded.port), 1.0)
    assert busy.outcome == OVERLOADED
    assert busy.reason == (f"SIP: udp 127.0.0.1:{overloaded.port} answers 503 Service "
                           f"Unavailable (overloaded)")


def test_provisional_and_stale_answers_are_skipped_until_the_final_one(udp):
    responder = udp(lambda req: [_answer(req, "100 Trying"),
                                 _answer(req, "503 Service Unavailable", call_id="old@x"),
                                 _answer(req, "200 OK")])
    result = probe(Target("udp", "127.0.0.1", responder.port), 1.0)
    assert result.outcome == ALIVE and "200 OK" in result.reason


def test_silence_is_dead_after_the_deadline_with_the_reason_the_checks_show(udp):
    responder = udp(lambda req: [])
    result = probe(Target("udp", "127.0.0.1", responder.port), 0.2)
    assert result.outcome == DEAD and result.rtt_s is None
    assert result.reason == f"SIP: no answer on udp 127.0.0.1:{responder.port} within 200 ms"
    assert len(responder.requests) == 1


def test_a_port_nothing_listens_on_is_refused_at_once():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # free again: the kernel answers ICMP port unreachable
    result = probe(Target("udp", "127.0.0.1", port), 5.0)
    assert result.outcome == DEAD and result.reason == f"SIP: refused on udp 127.0.0.1:{port}"


def test_tcp_reads_the_answer_head_across_segments():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            reply = _answer(request, "200 OK")
            conn.sendall(reply[:10])
            conn.sendall(reply[10:])
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = probe(Target("tcp", "127.0.0.1", port), 1.0)
    finally:
        thread.join(2)
        server.close()
    assert result.outcome == ALIVE and result.reason.startswith(f"SIP: 200 OK from tcp 127.0.0.1:{port}")


def test_a_host_name_is_never_looked_up():
    result = probe(Target("udp", "localhost", 5060), 0.2)
    assert result.outcome == DEAD and "cannot probe" in result.reason


class ScriptedSocket:
    """A socket whose recv() gives the scripted answers (bytes) or raises them."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = b""
        self.closed = False

    def settimeout(self, seconds):
        pass

    def connect(self, address):
        pass

    def getsockname(self):
        return ("127.0.0.1", 40000)

    def sendall(self, data):
        self.sent += data

    def recv(self, size):
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer(self.sent) if callable(answer) else answer

    def close(self):
        self.closed = True


def test_the_deadline_is_total_not_per_answer():
    """Answers that keep coming but are never final cannot stretch the probe."""
    now = [0.0]

    def clock():
        now[0] += 0.15  # each look at the clock: 150 ms passed
        return now[0]
    garbage = [b"not SIP at all"] * 50
    sock = ScriptedSocket(garbage)
    result = probe(Target("udp", "127.0.0.1", 5060), 0.5, make_socket=lambda f, k: sock,
                   clock=clock)
    assert result.outcome == DEAD and "within 500 ms" in result.reason
    assert len(garbage) - len(sock.answers) <= 3 and sock.closed


def test_each_probe_has_a_fresh_call_id_and_branch():
    sent = []

    def make(family, kind):
        sock = ScriptedSocket([lambda request: _answer(request, "200 OK")])
        sent.append(sock)
        return sock
    for _ in range(2):
        assert probe(Target("udp", "127.0.0.1", 5060), 0.5, make_socket=make).outcome == ALIVE
    ids = [re.search(rb"Call-ID: (\S+)", s.sent).group(1) for s in sent]
    branches = [re.search(rb"branch=(\S+?);", s.sent).group(1) for s in sent]
    assert ids[0] != ids[1] and branches[0] != branches[1]
    assert all(b.startswith(b"z9hG4bK") for b in branches)


def test_the_request_is_a_well_formed_options_to_the_listener_itself():
    request = options_request(Target("tcp", "::1", 5070), ("::1", 40000), "c@x", "b1", "t1")
    head = request.decode()
    assert head.startswith("OPTIONS sip:[::1]:5070;transport=tcp SIP/2.0\r\n")
    assert "Via: SIP/2.0/TCP [::1]:40000;branch=z9hG4bKb1;rport\r\n" in head
    assert head.endswith("Content-Length: 0\r\n\r\n")


def test_status_of_reads_only_sip_responses():
    assert status_of(b"SIP/2.0 404 Not Found\r\ni: abc\r\n\r\n") == (404, "Not Found", "abc")
    assert status_of(b"OPTIONS sip:x SIP/2.0\r\n\r\n") is None
    assert status_of(b"HTTP/1.1 200 OK\r\n\r\n") is None
