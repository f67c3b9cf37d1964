"""A small AMI client that stays logged in, for tests that need actions and events together."""

import socket
import time


class AmiSession:
    def __init__(self, port, user, secret, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.file.readline()  # banner
        self.blocks = []  # every block read so far, in order
        self._next_id = 0
        reply = self.action("Login", Username=user, Secret=secret, Events="system")
        if reply.get("Response") != "Success":
            raise RuntimeError("AMI login failed: %r" % reply)

    def _read_block(self):
        block = {}
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("AMI connection closed")
            line = line.decode("utf-8", "replace").rstrip("\r\n")
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
            block = self._read_block()
            if block.get("ActionID") == action_id and "Response" in block:
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
        self.sock.settimeout(0.5)
        try:
            while time.monotonic() < deadline:
                try:
                    block = self._read_block()
                except socket.timeout:
                    continue
                if matches(block):
                    return block
        finally:
            self.sock.settimeout(timeout)
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
