"""A small AMI client that stays logged in, for tests that need actions and events together."""

import select
import socket
import time


class AmiSession:
    def __init__(self, port, user, secret, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self._buffer = b""
        self._read_line(timeout)  # banner
        self.blocks = []  # every block read so far, in order
        self._next_id = 0
        reply = self.action("Login", Username=user, Secret=secret, Events="system")
        if reply.get("Response") != "Success":
            raise RuntimeError("AMI login failed: %r" % reply)

    def _read_line(self, timeout):
        """One line, or None when nothing complete arrives within timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("AMI connection closed")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    def _read_block(self, timeout):
        """The next block, or None if none is complete within timeout (partial lines are kept)."""
        deadline = time.monotonic() + timeout
        block = {}
        while True:
            line = self._read_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                if block:  # finish a block that has started
                    deadline = time.monotonic() + self.timeout
                    continue
                return None
            if not line:
                if block:
                    self.blocks.append(block)
                    return block
                continue
            key, _, value = line.partition(":")
            block[key.strip()] = value.strip()

    def action(self, name, timeout=10.0, **fields):
        self._next_id += 1
        action_id = "t%d" % self._next_id
        lines = ["Action: %s" % name, "ActionID: %s" % action_id]
        lines += ["%s: %s" % (k, v) for k, v in fields.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            block = self._read_block(max(0.0, deadline - time.monotonic()))
            if block and block.get("ActionID") == action_id and "Response" in block:
                return block
        raise TimeoutError("no response to %s" % name)

    def wait_event(self, name, timeout=10.0, **match):
        """The first event called name (already read or arriving) whose headers match."""
        def matches(b):
            return b.get("Event") == name and all(b.get(k) == v for k, v in match.items())

        for block in self.blocks:
            if matches(block):
                return block
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            block = self._read_block(max(0.0, deadline - time.monotonic()))
            if block and matches(block):
                return block
        raise TimeoutError("no %s event with %r; saw %r" % (name, match, [b.get("Event") for b in self.blocks]))

    def events(self, name):
        return [b for b in self.blocks if b.get("Event") == name]

    def close(self):
        try:
            self.sock.sendall(b"Action: Logoff\r\n\r\n")
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
