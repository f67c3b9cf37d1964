"""Debian's Asterisk 22 as Debian runs it, in a fresh copy of the sid chroot (FreshSid).

    root = FreshSid().start()
    consul = NetnsConsul(root, workdir)          # Consul on its default ports, same namespace
    ast = DebianAsterisk(root, workdir).start()  # asterisk.service's command line
    ast.module_running(); ast.eid(); consul.services()

Both run in the copy's own network namespace: the packaged defaults (Consul on
127.0.0.1:8500, Asterisk's SIP and HTTP ports) clash with nothing and reach nothing outside.
"""

import json
import re
import subprocess
import sys

import pytest

from integration_tests.testbed import fixtures, paths, runtime
from integration_tests.testbed.freshroot import FreshSid

MODULE = "res_discovery_consul.so"
# Debian's asterisk.service: ExecStart (and WorkingDirectory=/var/lib/asterisk).
DEBIAN_ASTERISK = ["/usr/sbin/asterisk", "-g", "-f", "-p", "-U", "asterisk", "-G", "asterisk"]
_GET = ("import sys, urllib.request\n"
        "with urllib.request.urlopen(sys.argv[1], timeout=5) as r: sys.stdout.write(r.read().decode())")


@pytest.fixture
def fresh():
    """A started FreshSid (import this fixture into the test module)."""
    fixtures.require_asterisk("22")
    root = FreshSid().start()
    yield root
    root.stop()


class NetnsConsul:
    """A Consul dev agent on its default ports inside the copy's network namespace."""

    def __init__(self, root, workdir):
        self.root = root
        self.proc = root.spawn_host([paths.consul_binary(), "agent", "-dev",
                                     "-bind", "127.0.0.1", "-client", "127.0.0.1",
                                     "-node", "deb-test"], log_path=workdir / "consul.log")
        runtime.wait_until(lambda: self.get("/v1/status/leader").strip('"'), timeout=30,
                           what="Consul leader in the namespace")

    def get(self, path):
        res = subprocess.run(self.root.host_command([sys.executable, "-c", _GET,
                                                     "http://127.0.0.1:8500" + path]),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=20)
        if res.returncode != 0:
            raise RuntimeError(res.stdout)
        return res.stdout

    def services(self):
        return json.loads(self.get("/v1/agent/services"))


class DebianAsterisk:
    """Debian's Asterisk in the copy, started as its service unit starts it."""

    def __init__(self, root, workdir):
        self.root = root
        self.log = workdir / "asterisk.log"
        self.proc = None

    def start(self):
        self.proc = self.root.spawn(DEBIAN_ASTERISK, cwd="/var/lib/asterisk", log_path=self.log)
        runtime.wait_until(self._booted, timeout=60, interval=0.2, what="Asterisk fully booted")
        return self

    def _booted(self):
        if self.proc.poll() is not None:
            raise runtime.GiveUp(f"Asterisk exited ({self.proc.returncode}):\n"
                                 + self.log.read_text(errors="replace")[-3000:])
        return "fully booted" in self.rx("core waitfullybooted", check=False)

    def log_text(self, since=0):
        with open(self.log, "rb") as fh:
            fh.seek(since)
            return fh.read().decode("utf-8", "replace")

    def rx(self, command, check=True):
        res = self.root.run(["asterisk", "-rx", command], timeout=30, check=False)
        if check and (res.returncode != 0 or "Unable to connect" in res.stdout):
            raise RuntimeError(f"asterisk -rx {command!r}: {res.stdout}")
        return res.stdout

    def module_running(self):
        """The module is loaded and running (not declined: "Not Running")."""
        out = self.rx("module show like res_discovery_consul")
        return bool(re.search(rf"^{re.escape(MODULE)}\s.*(?<!Not )Running", out, re.M))

    def eid(self):
        return re.search(r"Entity ID:\s*(\S+)", self.rx("core show settings")).group(1)

    def uid(self):
        with open(f"/proc/{self.proc.pid}/status") as fh:
            return int(re.search(r"^Uid:\s+(\d+)", fh.read(), re.M).group(1))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.rx("core stop now", check=False)
        runtime.reap(self.proc, timeout=15)
        self.proc = None


def installed(root, package):
    """The installed version of package in the copy, or None."""
    res = root.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", package], check=False)
    return res.stdout.split()[-1] if res.stdout.startswith("install ok installed") else None


def apt_install(root, deb):
    """`apt install ./<deb>` in the copy, as an operator does; returns apt's output."""
    root.copy_in(deb, f"/tmp/{deb.name}")
    return root.run(["apt", "install", "-y", "-q", f"/tmp/{deb.name}"]).stdout
