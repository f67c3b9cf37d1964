"""The fleet's private network: one Linux bridge and one network namespace per host.

    net = Network(kind="test")          # picks a free private /24, names unique to this run
    ns = net.add_host("ast1", 101)      # namespace acfXXXXXX-ast1, eth0 = 10.a.b.101/24
    net.wrap(ns, ["consul", "agent", ...]) -> ["ip", "netns", "exec", ns.name, "consul", ...]
    net.destroy()                       # kills what runs inside, deletes namespaces and bridge

No default route anywhere, no NAT, no forwarding: a namespace reaches only the other
namespaces of this run. The host side of the bridge gets .1 so the test process can reach
the hosts' own addresses (their Consul HTTP API, Asterisk's HTTP server).

Other runs may share the machine: names carry a random run id (bridge and veths stay within
15 characters), the subnet is reserved by a lock file held for the run's life, and every run
records what it made in /run/asterisk-consul-fleet/<prefix>.json, so a later run (or
`make fleet-stop`) removes what a run killed by SIGKILL left behind (its owner pid is gone).
"""

import fcntl
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from integration_tests.testbed import runtime

STATE_DIR = Path("/run/asterisk-consul-fleet")
NAME_PREFIX = "acf"
# 10.200.0.0 - 10.249.255.0: the /24s a fleet may take (unless the machine uses one).
SUBNET_FIRST_OCTETS = range(200, 250)


class NetworkError(Exception):
    pass


def ip(*args, check=True):
    """Run `ip ARGS`; returns stdout. NetworkError naming the command if it fails."""
    proc = subprocess.run(["ip", *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Namespace:
    name: str       # network namespace
    role: str       # ast1, srv2, proxy ...
    address: str    # its eth0 IPv4 address
    veth: str       # the host-side end, in the bridge


def _networks_in_use():
    """Every IPv4 network the machine has an address or a route in (all tables)."""
    found = []
    for args in (("-j", "-4", "addr"), ("-j", "-4", "route", "show", "table", "all")):
        try:
            data = json.loads(ip(*args) or "[]")
        except (NetworkError, ValueError):
            continue
        for item in data:
            for text in [a.get("local", "") + "/" + str(a.get("prefixlen", 32))
                         for a in item.get("addr_info", [])] + [item.get("dst", "")]:
                try:
                    if text and text not in ("default", "/32"):
                        found.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    pass
    return found


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Network:
    """One run's bridge, namespaces and subnet; also the record of them on disk."""

    def __init__(self, kind="test"):
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        sweep_abandoned()
        self.kind = kind
        self.run_id = secrets.token_hex(3)
        self.prefix = f"{NAME_PREFIX}{self.run_id}"       # 9 characters
        self.bridge = f"{self.prefix}br"                   # 11
        self.hosts = {}
        self.dirs = []
        self._lock_fh = None
        self.subnet = self._reserve_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.state_path = STATE_DIR / f"{self.prefix}.json"
        self._save()
        runtime.register_cleanup(("fleet-net", self.prefix), self.destroy)
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def _reserve_subnet(self):
        used = _networks_in_use()
        rng = random.Random()
        for _ in range(200):
            net = ipaddress.ip_network(
                f"10.{rng.choice(SUBNET_FIRST_OCTETS)}.{rng.randrange(256)}.0/24")
            if any(net.overlaps(u) for u in used):
                continue
            fh = open(STATE_DIR / f"subnet-{net.network_address}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            self._lock_fh = fh
            return net
        raise NetworkError("no free private /24 found for the fleet")

    def _save(self):
        state = {"owner": os.getpid(), "kind": self.kind, "prefix": self.prefix,
                 "bridge": self.bridge, "subnet": str(self.subnet),
                 "namespaces": [h.name for h in self.hosts.values()],
                 "veths": [h.veth for h in self.hosts.values()],
                 "dirs": [str(d) for d in self.dirs],
                 "cache": os.environ.get("ASTERISK_CONSUL_CACHE", "")}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    def make_dir(self, base="/tmp"):
        """A short private directory for the run's files (removed with the network), in base
        (the sid chroot's /tmp for what runs inside the chroot)."""
        Path(base).mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=self.prefix + "-", dir=str(base)))
        self.dirs.append(path)
        self._save()
        return path

    def address(self, host_number):
        return str(self.subnet.network_address + host_number)

    def add_host(self, role, host_number):
        """A namespace with lo up and eth0 = .host_number/24 in the bridge. No routes but
        the subnet's own."""
        if role in self.hosts:
            return self.hosts[role]
        ns = Namespace(name=f"{self.prefix}-{role}", role=role,
                       address=self.address(host_number),
                       veth=f"{self.prefix}v{host_number}")
        self.hosts[role] = ns
        self._save()  # recorded before it exists: a crash from here on is swept
        ip("netns", "add", ns.name)
        ip("link", "add", ns.veth, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        ip("link", "set", ns.veth, "master", self.bridge, "up")
        ip("-n", ns.name, "link", "set", "lo", "up")
        ip("-n", ns.name, "addr", "add", f"{ns.address}/24", "dev", "eth0")
        ip("-n", ns.name, "link", "set", "eth0", "up")
        return ns

    @staticmethod
    def wrap(ns, argv):
        """argv run inside ns (same pid: `ip netns exec` execs it)."""
        return ["ip", "netns", "exec", ns.name, *[str(a) for a in argv]]

    def destroy(self):
        runtime.unregister_cleanup(("fleet-net", self.prefix))
        destroy_recorded(self.state_path)
        if self._lock_fh is not None:
            Path(self._lock_fh.name).unlink(missing_ok=True)
            self._lock_fh.close()
            self._lock_fh = None


def _kill_inside(namespace):
    """SIGKILL every process still running in one of our namespaces."""
    pids = ip("netns", "pids", namespace, check=False).split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = ip("netns", "pids", namespace, check=False).split()
        time.sleep(0.05)


def destroy_recorded(state_path):
    """Remove what a state file records: processes in its namespaces, the namespaces, veths,
    the bridge; then the file."""
    try:
        state = json.loads(Path(state_path).read_text())
    except (OSError, ValueError):
        return
    existing = set(ip("netns", "list", check=False).split())
    for namespace in state.get("namespaces", []):
        if namespace in existing:
            _kill_inside(namespace)
            ip("netns", "del", namespace, check=False)
    for link in state.get("veths", []) + [state.get("bridge", "")]:
        if link and ip("link", "show", link, check=False):
            ip("link", "del", link, check=False)
    for directory in state.get("dirs", []):
        if Path(directory).name.startswith(state.get("prefix", "?") + "-"):
            shutil.rmtree(directory, ignore_errors=True)
    _release_subnet_lock(state.get("subnet"))
    Path(state_path).unlink(missing_ok=True)


def _release_subnet_lock(subnet):
    """Remove a dead run's subnet lock file (a live run holds its lock: left alone)."""
    if not subnet:
        return
    path = STATE_DIR / f"subnet-{ipaddress.ip_network(subnet).network_address}.lock"
    try:
        with open(path, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
    except (OSError, BlockingIOError):
        pass


def sweep_abandoned():
    """Remove the leftovers of runs whose owner process is gone."""
    if not STATE_DIR.exists():
        return
    for path in STATE_DIR.glob(f"{NAME_PREFIX}*.json"):
        try:
            owner = int(json.loads(path.read_text()).get("owner", 0))
        except (OSError, ValueError):
            continue
        if owner and not _pid_alive(owner):
            destroy_recorded(path)


def recorded_runs():
    """[(state path, state)] of every run recorded on this machine."""
    out = []
    if STATE_DIR.exists():
        for path in sorted(STATE_DIR.glob(f"{NAME_PREFIX}*.json")):
            try:
                out.append((path, json.loads(path.read_text())))
            except (OSError, ValueError):
                continue
    return out
