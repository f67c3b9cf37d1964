"""A real Consul cluster in the fleet's namespaces: three servers (Raft, gossip) and one
client agent per host, each `consul agent` of the test bed's Consul 1.8.7.

    servers = [FleetAgent(net, ns, workdir, server=True, join=addresses) for ...]
    cluster = Cluster(servers); cluster.start()
    client = FleetAgent(net, ns, workdir, server=False, join=addresses).start()

Every agent binds gossip and RPC to its namespace's address and serves HTTP on 127.0.0.1 (what
the module on that host talks to) and on its namespace address (what the test reads).
Agents keep a data dir: a restarted agent restores the services registered through it.
"""

import base64
import json
import shutil
import signal
import time

import requests

from integration_tests.testbed import runtime
from integration_tests.testbed.consul import ConsulAgent

HTTP_PORT = 8500
DNS_PORT = 8600
DNS_TTL_S = 0          # the TTL of the proxy agent's DNS answers for services (README: the fleet)


def entry_status(entry):
    """Aggregated status of one health entry (GET /v1/health/service/<name>): passing,
    warning, critical, or maintenance."""
    if any(c["CheckID"].startswith("_service_maintenance:") for c in entry["Checks"]):
        return "maintenance"
    statuses = {c["Status"] for c in entry["Checks"]}
    for status in ("critical", "warning"):
        if status in statuses:
            return status
    return "passing"


class FleetAgent(ConsulAgent):
    """One Consul agent (server or client) inside a namespace of the fleet."""

    START_TIMEOUT = 60.0

    def __init__(self, net, ns, workdir, server, join, dns=False):
        self.dns = dns
        self.net = net
        self.ns = ns
        self.server = server
        self.join = [a for a in join if a != ns.address]
        super().__init__(workdir)
        self.data_dir = self.workdir / "data"

    @property
    def node(self):
        return self.ns.role

    def _pick_ports(self):
        # A namespace of its own: Consul's default ports, nobody else's.
        self.http_port = HTTP_PORT
        self.url = f"http://{self.ns.address}:{HTTP_PORT}"

    def _write_config(self):
        cfg = {
            "node_name": self.node,
            "datacenter": "dc1",
            "data_dir": str(self.workdir / "data"),
            "server": self.server,
            "bind_addr": self.ns.address,
            "advertise_addr": self.ns.address,
            "client_addr": f"127.0.0.1 {self.ns.address}",
            "retry_join": self.join,
            "retry_interval": "1s",
            "ports": {"grpc": -1, "dns": -1, "http": HTTP_PORT},
            "disable_update_check": True,
            "log_level": "DEBUG",
            "leave_on_terminate": not self.server,
        }
        if self.dns:
            # Consul DNS as a consumer reads it: passing instances only (a draining or busy
            # box is not a SIP target), and answers nobody may cache (TTL 0, Consul's default
            # for services, said out loud).
            cfg["ports"]["dns"] = DNS_PORT
            cfg["dns_config"] = {"only_passing": True, "service_ttl": {"*": f"{DNS_TTL_S}s"}}
        if self.server:
            # Production Raft timing (Consul's default is 5x slower, for small machines).
            cfg.update({"bootstrap_expect": 3, "performance": {"raft_multiplier": 1}})
        self.config_path.write_text(json.dumps(cfg, indent=2))

    def command(self):
        return self.net.wrap(self.ns, [self.binary, "agent", "-config-file", self.config_path])

    def launch(self):
        """Start the process without waiting for it (servers wait for each other)."""
        if self.is_running():
            return self
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%F %T')} starting {' '.join(self.command())}\n"
                      .encode())
        self.proc = runtime.spawn(self.command(), log_path=self.log_path)
        return self

    def start(self, timeout=None):
        self.launch()
        try:
            self._wait_ready(timeout or self.START_TIMEOUT)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout=10.0):
        """SIGTERM, as a service manager stops it: a client leaves the cluster, a server
        does not (leave_on_terminate)."""
        runtime.reap(self.proc, timeout=timeout, sig=signal.SIGTERM)
        self.proc = None

    def wipe_data(self):
        """Forget everything this agent knew (its services and checks included)."""
        if self.is_running():
            raise RuntimeError("stop the agent before wiping its data dir")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __repr__(self):
        kind = "server" if self.server else "client"
        return f"<FleetAgent {kind} {self.node} {self.ns.address}>"


class Cluster:
    """The three servers and what the test asks of them (whichever is alive answers)."""

    def __init__(self, servers):
        self.servers = list(servers)

    @property
    def addresses(self):
        return [s.ns.address for s in self.servers]

    def start(self, timeout=60.0):
        for server in self.servers:
            server.launch()
        for server in self.servers:
            server._wait_ready(timeout)
        self.wait_leader(timeout)
        return self

    def alive(self):
        return [s for s in self.servers if s.is_running()]

    def _get(self, path, timeout=3.0, **params):
        """GET path from the first live server that answers (below 500: a 404 is an answer)."""
        last = None
        for server in self.alive():
            try:
                r = requests.get(server.url + path, params=params, timeout=timeout)
            except requests.RequestException as exc:
                last = exc
                continue
            if r.status_code < 500:
                return r
            last = RuntimeError(f"{server.node}: {r.status_code} {r.text.strip()[:200]}")
        raise RuntimeError(f"no Consul server answered {path}: {last}")

    def leader(self):
        """The server that leads Raft now (None during an election)."""
        try:
            address = self._get("/v1/status/leader").json()
        except (RuntimeError, ValueError):
            return None
        host = (address or "").rsplit(":", 1)[0]
        for server in self.servers:
            if server.ns.address == host and server.is_running():
                return server
        return None

    def wait_leader(self, timeout=30.0, other_than=None):
        """Until a live server leads (not `other_than`); returns it."""
        def new_leader():
            leader = self.leader()
            return leader if leader is not None and leader is not other_than else None
        return runtime.wait_until(new_leader, timeout=timeout, interval=0.1,
                                  what="a Consul leader")

    def health(self, service):
        """GET /v1/health/service/<service>: what consumers read (from the servers)."""
        r = self._get(f"/v1/health/service/{service}")
        r.raise_for_status()
        return r.json()

    def service_status(self, service, service_id):
        """Aggregated status of one instance in the catalog: passing, warning, critical,
        maintenance, or None when it is not in the catalog."""
        for entry in self.health(service):
            if entry["Service"]["ID"] == service_id:
                return entry_status(entry)
        return None

    def kv(self, key):
        """(value, session) of a KV key, or (None, None) when it is absent."""
        r = self._get(f"/v1/kv/{key}")
        if r.status_code == 404:
            return None, None
        r.raise_for_status()
        entry = r.json()[0]
        return base64.b64decode(entry.get("Value") or "").decode(), entry.get("Session")

    def members(self):
        """{node: serf status} as the servers see the LAN pool."""
        r = self._get("/v1/agent/members")
        r.raise_for_status()
        names = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}
        return {m["Name"]: names.get(m["Status"], str(m["Status"])) for m in r.json()}
