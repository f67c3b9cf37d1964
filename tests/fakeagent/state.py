"""What every part of the fake agent shares: one lock, the Condition blocking queries wait
on, the index counter and the node this agent is."""

from __future__ import annotations

import threading
import uuid


class Core:
    def __init__(self, node_name: str, acl: bool):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified on every write
        self.index = 1
        self.acl = acl  # with ACLs on, 1.8.7 answers some unknown IDs differently
        self.stopping = False  # set while the agent stops: blocking queries return
        self.catalog_sync = True
        self.node = {"ID": str(uuid.uuid4()), "Name": node_name, "Address": "127.0.0.1"}

    def touch(self) -> int:
        """A write happened: the next index, and blocking queries look again."""
        with self.lock:
            self.index += 1
            self.changed.notify_all()
            return self.index
