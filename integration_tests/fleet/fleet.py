"""The whole fleet on one machine, started and stopped by the project:

                       one Linux bridge, 10.a.b.0/24, no route out
    srv1 srv2 srv3     Consul servers (.11-.13)
    proxy (.20)        Consul client + Kamailio + consul_dispatcher.py --follow
    uac (.30)          SIPp
    ast1..astN (.101-) Consul client + Asterisk with res_discovery_consul (weight 1..N)

    The stack is the profile's (profile.py, FLEET_ASTERISK): Asterisk 22 + PJSIP + sid's
    Kamailio by default, Asterisk 16 + chan_sip + bookworm's Kamailio 5.6 on demand.

    fleet = Fleet(hosts=3).start()      # every box passing in Consul and routed by Kamailio
    run = fleet.calls("steady").start(); ...; run.stop(); tally = fleet.tally(run)
    fleet.ensure_steady()               # bring back whatever a scenario took away
    fleet.stop()                        # nothing left: processes, namespaces, bridge, files
"""

import shutil
import time
from pathlib import Path

from integration_tests.testbed import build, paths, runtime

from . import profile as profiles
from .calls import CallRun, Tally
from .cluster import Cluster, FleetAgent
from .host import SERVICE, AsteriskHost
from .net import Network
from .proxy import Proxy

SERVER_NUMBERS = (11, 12, 13)
PROXY_NUMBER = 20
UAC_NUMBER = 30
FIRST_ASTERISK = 101


class Fleet:
    def __init__(self, hosts=3, weights=None, kind="test", rate=10.0, hold_ms=2000,
                 artifacts_dir=None, log=print, profile=None):
        self.profile = profile or profiles.current()
        if hosts < 2:
            raise ValueError("a fleet needs at least 2 Asterisk hosts")
        self.host_count = hosts
        self.weights = list(weights or range(1, hosts + 1))
        self.kind = kind
        self.rate = rate
        self.hold_ms = hold_ms
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir else None
        self.log = log
        self.net = None
        self.dir = None
        self.cluster = None
        self.proxy = None
        self.hosts = []
        self.uac = None

    # -- start / stop -------------------------------------------------------------------------
    def start(self, timeout=90.0):
        began = time.monotonic()
        module_so = build.build_module(self.profile.asterisk)
        self.net = Network(kind=self.kind)
        self.dir = self.net.make_dir()
        runtime.register_cleanup(("fleet", str(self.dir)), self.stop)
        self.log(f"fleet {self.net.prefix}: {self.profile.label}; subnet {self.net.subnet}, "
                 f"bridge {self.net.bridge}, files {self.dir}")
        server_ns = [self.net.add_host(f"srv{i + 1}", n) for i, n in enumerate(SERVER_NUMBERS)]
        joins = [ns.address for ns in server_ns]
        self.cluster = Cluster(FleetAgent(self.net, ns, self.dir / ns.role, True, joins)
                               for ns in server_ns)
        self.cluster.start(timeout)
        self.log(f"consul: 3 servers up, leader {self.cluster.leader().node}")

        proxy_ns = self.net.add_host("proxy", PROXY_NUMBER)
        proxy_agent = FleetAgent(self.net, proxy_ns, self.dir / "proxy" / "consul", False, joins,
                                 dns=True)
        # sid's Kamailio reads its files inside the chroot: its dir is there.
        proxy_dir = (self.net.make_dir(paths.sid_root() / "tmp")
                     if self.profile.kamailio_from == "sid" else self.dir / "proxy")
        self.proxy = Proxy(self.net, proxy_ns, proxy_dir, proxy_agent,
                           profile=self.profile).start()
        self.uac = self.net.add_host("uac", UAC_NUMBER)
        for i in range(self.host_count):
            ns = self.net.add_host(f"ast{i + 1}", FIRST_ASTERISK + i)
            agent = FleetAgent(self.net, ns, self.dir / ns.role / "consul", False, joins)
            self.hosts.append(AsteriskHost(
                ns, module_so, agent, self.proxy.address, weight=self.weights[i],
                artifacts_dir=(self.artifacts_dir / ns.role if self.artifacts_dir else None),
                profile=self.profile))
        for host in self.hosts:
            host.agent.launch()
        for host in self.hosts:
            host.start()
        self.wait_steady(timeout)
        self.log(f"fleet up in {time.monotonic() - began:.1f}s: "
                 + ", ".join(f"{h.name} {h.ns.address} weight {h.weight}" for h in self.hosts))
        return self

    def stop(self):
        runtime.unregister_cleanup(("fleet", str(self.dir)))
        for step in ([lambda: self.proxy and self.proxy.stop()]
                     + [h.cleanup for h in self.hosts]
                     + [h.agent.kill for h in self.hosts]
                     + ([self.proxy.agent.kill] if self.proxy else [])
                     + ([s.kill for s in self.cluster.servers] if self.cluster else [])):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - tear down the rest anyway
                self.log(f"fleet stop: {exc!r}")
        if self.artifacts_dir is not None and self.dir is not None and self.dir.exists():
            shutil.copytree(self.dir, self.artifacts_dir / "fleet", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("data", "kamailio_ctl"))
            if self.proxy is not None and not self.proxy.dir.is_relative_to(self.dir):
                shutil.copytree(self.proxy.dir, self.artifacts_dir / "fleet" / "proxy",
                                dirs_exist_ok=True, ignore=shutil.ignore_patterns("kamailio_ctl"))
        if self.net is not None:
            self.net.destroy()  # and self.dir
        self.hosts = []

    # -- state ---------------------------------------------------------------------------------
    def host(self, name):
        return next(h for h in self.hosts if h.name == name)

    def service_ids(self):
        return {h.service_id for h in self.hosts}

    def status(self, host):
        """The host's current registration as the servers' catalog has it."""
        return self.cluster.service_status(SERVICE, host.service_id)

    def steady(self):
        """Every server and agent up, a leader, every box passing in the catalog and routed."""
        if any(not s.is_running() for s in self.cluster.servers):
            return False
        if any(not h.is_running() or not h.agent.is_running() for h in self.hosts):
            return False
        if self.cluster.leader() is None:
            return False
        members = self.cluster.members()
        if any(members.get(n) != "alive" for n in
               [s.node for s in self.cluster.servers] + [h.agent.node for h in self.hosts]):
            return False
        if any(self.status(h) != "passing" for h in self.hosts):
            return False
        return self.proxy.routed_ids() == self.service_ids()

    def wait_steady(self, timeout=60.0):
        try:
            runtime.wait_until(self.steady, timeout=timeout, interval=0.25,
                               what="the fleet steady (all passing and routed)")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.describe()}") from None

    def ensure_steady(self, timeout=90.0):
        """Bring back what a scenario took away: servers, agents, Asterisks, maintenance."""
        for server in self.cluster.servers:
            server.launch()
        for host in self.hosts:
            if not host.agent.is_running():
                host.agent.start()
            if not host.is_running():
                host.asterisk.start()
            elif self.status(host) == "maintenance":
                host.set_maintenance(False)
            if host.is_running() and not host.sip_stack_loaded():
                host.sip_stack_back()
        self.wait_steady(timeout)

    def describe(self):
        """What the fleet looks like now (for failure messages and the live runner)."""
        lines = []
        try:
            leader = self.cluster.leader()
            lines.append(f"consul leader: {leader.node if leader else None}; members: "
                         f"{self.cluster.members()}")
        except Exception as exc:  # noqa: BLE001
            lines.append(f"consul: {exc!r}")
        for host in self.hosts:
            try:
                status = self.status(host)
            except Exception as exc:  # noqa: BLE001
                status = repr(exc)
            lines.append(f"{host.name} {host.ns.address} {host.service_id}: asterisk "
                         f"{'up' if host.is_running() else 'down'}, agent "
                         f"{'up' if host.agent.is_running() else 'down'}, catalog {status}")
        try:
            lines.append(f"kamailio destinations: {self.proxy.destinations()}")
        except Exception as exc:  # noqa: BLE001
            lines.append(f"kamailio: {exc!r}")
        lines.append("consul_dispatcher --follow log tail:\n" + self.proxy.log_tail("watch", 8))
        return "\n".join(lines)

    # -- calls ---------------------------------------------------------------------------------
    def calls(self, name, rate=None, hold_ms=None, max_seconds=300):
        return CallRun(self.net, self.uac, self.proxy.address, self.dir, name,
                       rate=rate or self.rate, hold_ms=hold_ms or self.hold_ms,
                       max_seconds=max_seconds, transports=self.profile.transports)

    def answers(self):
        return [a for h in self.hosts for a in h.answered()]

    def tally(self, run):
        return Tally(run, self.proxy.routes(), self.answers())
