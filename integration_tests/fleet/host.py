"""One Asterisk host of the fleet: its namespace, its Consul client agent, and Asterisk 16
with res_discovery_consul, answering SIP (chan_sip) from the proxy.

    host = AsteriskHost(fleet_net, ns, workdir, module_so, agent, proxy_address, weight=2)
    host.start()                     # agent + Asterisk; the module registers the box
    host.set_maintenance(True)       # `discovery set maintenance on`
    host.replace_asterisk()          # a new Asterisk (another EID) on this address
    host.answered()                  # [Answer(...)] from every Asterisk this host ran

The module is configured as a real deployment would: the agent on 127.0.0.1:8500,
discovery_ip = auto from eth0, the EID check against Asterisk's HTTP server on that address.
"""

import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from integration_tests.testbed.asterisk import AsteriskInstance, random_eid

SERVICE = "Asterisk"
SIP_PORT = 5060
# chan_sip and what it needs for an answered call; the module last.
MODULES = ["res_sorcery_config.so", "res_pjproject.so", "res_rtp_asterisk.so", "chan_sip.so",
           "pbx_config.so", "app_verbose.so", "func_strings.so", "res_discovery_consul.so",
           # the wrong-box guard (contrib/kamailio/wrong-box-guard.conf): GoSub, CHANNEL()
           "app_stack.so", "func_channel.so"]
# What the module is told (check every second: detection bounds are in seconds).
MODULE_OPTIONS = {"check_interval": "1s", "check_timeout": "1s",
                  "check_deregister_after": "1m", "resync_interval": "5s"}
KV_KEY = "sip_uri"

_CALL = re.compile(r"^\[(\S+ \S+)\] NOTICE.*FLEET-(CALL|REFUSED) callid=(\S+) service=(\S*) "
                   r"eid=(\S+)", re.M)


@dataclass(frozen=True)
class Answer:
    """A call an Asterisk of this host answered, or refused as meant for another box."""
    time: float        # epoch seconds (Asterisk's log clock)
    call_id: str
    service: str       # X-Consul-Service: the registration Kamailio routed it as
    eid: str           # the Asterisk that received it
    refused: bool = False

    @property
    def wrong_box(self):
        return self.service.lower() != self.eid.lower()


def _epoch(stamp):
    date, clock = stamp.split(" ")
    whole, _, frac = clock.partition(".")
    return time.mktime(time.strptime(f"{date} {whole}", "%Y-%m-%d %H:%M:%S")) + \
        float("0." + (frac or "0"))


def module_conf(options, weight, kv_prefix="fleet"):
    lines = ["[general]", "enabled = yes", "", "[consul]",
             "host = 127.0.0.1", "port = 8500", "id = asterisk", f"name = {SERVICE}",
             "tags = asterisk, fleet", "discovery_ip = auto", "discovery_interface = eth0",
             f"discovery_port = {SIP_PORT}", "metadata_profile = fleet", "check = yes",
             "check_type = http", "consul_timeout_ms = 1000",
             f"kv_prefix = {kv_prefix}/${{ID}}"]
    lines += [f"{k} = {v}" for k, v in options.items()]
    lines += ["", "[metadata_fleet]", f"weight = {weight}", "",
              "[kv]", f"{KV_KEY} = sip:${{ADDRESS}}:${{PORT}}", ""]
    return "\n".join(lines)


def sip_conf(address, proxy_address):
    """chan_sip on this host's address; calls only from the proxy, into [fleet]."""
    return "\n".join([
        "[general]", f"udpbindaddr = {address}:{SIP_PORT}", "context = nowhere",
        "allowguest = no", "alwaysauthreject = yes", "",
        "[proxy]", "type = peer", f"host = {proxy_address}", "insecure = port,invite",
        "context = fleet", "disallow = all", "allow = ulaw", ""])


# A call routed as another registration (an INVITE retransmitted to an address a new box
# took over) is refused with 503 by the operator's guard, contrib/kamailio/wrong-box-guard.conf,
# so the proxy fails it over (a hangup handler logs it as refused); any other is answered,
# logged (routed as what, answered by whom) and held until the caller hangs up (at most a
# minute).
GUARD = (Path(__file__).resolve().parents[2] / "contrib/kamailio/wrong-box-guard.conf").read_text()
EXTENSIONS = GUARD + """
[fleet]
exten => _X.,1,Set(ROUTED_AS=${SIP_HEADER(X-Consul-Service)})
 same => n,Set(LOGGED=callid=${SIP_HEADER(Call-ID)} service=${ROUTED_AS} eid=${ENTITYID})
 same => n,Set(CHANNEL(hangup_handler_push)=fleet-refused,s,1)
 same => n,GoSub(consul-wrong-box-guard,s,1)
 same => n,Set(CHANNEL(hangup_handler_pop)=)
 same => n,Answer()
 same => n,Log(NOTICE,FLEET-CALL ${LOGGED})
 same => n,Wait(60)
 same => n,Hangup()

[fleet-refused]
exten => s,1,Log(NOTICE,FLEET-REFUSED ${LOGGED})
 same => n,Return()
"""


class AsteriskHost:
    def __init__(self, ns, module_so, agent, proxy_address, weight=1, options=None,
                 artifacts_dir=None):
        self.ns = ns
        self.module_so = module_so
        self.agent = agent
        self.proxy_address = proxy_address
        self.weight = weight
        self.options = dict(MODULE_OPTIONS, **(options or {}))
        self.artifacts_dir = artifacts_dir
        self.instances = []        # every Asterisk this host ran, the current one last
        self.asterisk = None

    @property
    def name(self):
        return self.ns.role

    @property
    def service_id(self):
        """The Consul service ID: this Asterisk's EID (id = asterisk)."""
        return self.asterisk.eid

    def _new_asterisk(self, eid=None):
        number = len(self.instances)
        ast = AsteriskInstance(
            "16", modules=MODULES, netns=self.ns.name, bind_address=self.ns.address,
            eid=eid or random_eid(), asterisk_conf_options={"verbose": "1", "debug": "0"},
            artifacts_dir=(self.artifacts_dir / f"asterisk-{number}"
                           if self.artifacts_dir else None))
        ast.install_module(self.module_so)
        ast.write_config("sip.conf", sip_conf(self.ns.address, self.proxy_address))
        ast.write_config("extensions.conf", EXTENSIONS)
        ast.write_config("res_discovery_consul.conf",
                         module_conf(dict(self.options, check_http_port=ast.http_port),
                                     self.weight))
        self.instances.append(ast)
        self.asterisk = ast
        return ast

    def start(self):
        if not self.agent.is_running():
            self.agent.start()
        if self.asterisk is None:
            self._new_asterisk()
        self.asterisk.start()
        return self

    def restart_asterisk(self):
        """`core stop now` and start again: same EID, same config (no drain)."""
        self.asterisk.stop()
        self.asterisk.start()

    def kill_asterisk(self):
        self.asterisk.kill(signal.SIGKILL)

    def replace_asterisk(self):
        """A new Asterisk with another EID takes this host's address (the old one is dead)."""
        if self.asterisk is not None and self.asterisk.is_running():
            raise RuntimeError("the old Asterisk still runs")
        self._new_asterisk()
        self.asterisk.start()
        return self.asterisk

    def is_running(self):
        return self.asterisk is not None and self.asterisk.is_running()

    def set_maintenance(self, on, reason="fleet test"):
        out = self.asterisk.rx(f"discovery set maintenance {'on' if on else 'off'} {reason}")
        return out

    def set_drain(self, on, reason="fleet test"):
        return self.asterisk.rx(f"discovery set drain {'on' if on else 'off'} {reason}")

    def restart_gracefully(self):
        """`core restart gracefully`, returning at once: Asterisk takes no new call, waits for
        its calls to end and starts again in place (same EID, same config). The module drains
        first (drain_on_shutdown), so consumers stop sending calls before Asterisk refuses them."""
        # The command returns only when Asterisk goes down: it runs beside the caller.
        threading.Thread(target=self.asterisk._rx_raw, args=("core restart gracefully", 120),
                         daemon=True).start()

    def set_options(self, **options):
        """New module options, applied by `module reload`."""
        self.options.update(options)
        self.asterisk.write_config("res_discovery_consul.conf", module_conf(
            dict(self.options, check_http_port=self.asterisk.http_port), self.weight))
        return self.asterisk.rx("module reload res_discovery_consul.so")

    def reload_module(self):
        """`module unload` + `module load`: deregisters and registers again."""
        self.asterisk.rx("module unload res_discovery_consul.so")
        return self.asterisk.rx("module load res_discovery_consul.so")

    def answered(self):
        out = []
        for ast in self.instances:
            for m in _CALL.finditer(ast.log_text()):
                out.append(Answer(_epoch(m.group(1)), m.group(3), m.group(4), m.group(5),
                                  refused=m.group(2) == "REFUSED"))
        return out

    def cleanup(self):
        for ast in self.instances:
            try:
                ast.cleanup()
            except Exception:  # noqa: BLE001 - keep cleaning the others
                ast.kill()
        self.asterisk = None

    def __repr__(self):
        return f"<AsteriskHost {self.name} {self.ns.address} weight={self.weight}>"
