"""One Asterisk host of the fleet: its namespace, its Consul client agent, and Asterisk
with res_discovery_consul, answering SIP from the proxy: Asterisk 22 (the sid chroot entered
inside the namespace) with PJSIP, or Asterisk 16 with chan_sip (profile.py).

    host = AsteriskHost(ns, module_so, agent, proxy_address, weight=2, profile=profile)
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

from . import profile as profiles

SERVICE = "Asterisk"
SIP_PORT = 5060
# The dialplan's modules, and the wrong-box guard's (contrib/kamailio/wrong-box-guard.conf):
# GoSub, CHANNEL(); the module last.
_DIALPLAN = ["pbx_config.so", "app_verbose.so", "func_strings.so", "app_stack.so",
             "func_channel.so", "res_discovery_consul.so"]
# chan_sip (16) and what it needs for an answered call.
CHAN_SIP_MODULES = ["res_sorcery_config.so", "res_pjproject.so", "res_rtp_asterisk.so",
                    "chan_sip.so", *_DIALPLAN]
# PJSIP (22): what chan_pjsip needs when nothing is autoloaded, the endpoint identified by
# the proxy's address, SDP/RTP for an answered call, PJSIP_HEADER() for the guard.
PJSIP_MODULES = ["res_sorcery_config.so", "res_sorcery_memory.so", "res_sorcery_astdb.so",
                 "res_pjproject.so", "res_pjsip.so", "res_pjsip_session.so",
                 "res_pjsip_pubsub.so", "res_pjsip_endpoint_identifier_ip.so",
                 "res_rtp_asterisk.so", "res_pjsip_sdp_rtp.so", "res_pjsip_header_funcs.so",
                 "chan_pjsip.so", *_DIALPLAN]
MODULES = CHAN_SIP_MODULES  # the 16 profile's (kept for callers of the first fleet)
SIP_DRIVER = {"pjsip": "chan_pjsip.so", "chan_sip": "chan_sip.so"}
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


def module_conf(options, weight, kv_prefix="fleet", sip_check=False):
    lines = ["[general]", "enabled = yes", "", "[consul]",
             "host = 127.0.0.1", "port = 8500", "id = asterisk", f"name = {SERVICE}",
             "tags = asterisk, fleet", "discovery_ip = auto", "discovery_interface = eth0",
             f"discovery_port = {SIP_PORT}", "metadata_profile = fleet", "check = yes",
             "check_type = http", "consul_timeout_ms = 1000",
             f"kv_prefix = {kv_prefix}/${{ID}}"]
    if sip_check:
        # SIP-aware health (issue 21): a box whose SIP stack is gone leaves rotation.
        lines.append("sip_check = yes")
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


def pjsip_conf(address, proxy_address):
    """PJSIP on this host's address, UDP and TCP; one endpoint, the proxy, identified by its
    address, its calls into [fleet]; anything else is not identified and refused."""
    return "\n".join([
        "[transport-udp]", "type = transport", "protocol = udp", f"bind = {address}:{SIP_PORT}",
        "",
        "[transport-tcp]", "type = transport", "protocol = tcp", f"bind = {address}:{SIP_PORT}",
        "",
        "[proxy]", "type = endpoint", "context = fleet", "disallow = all", "allow = ulaw",
        "direct_media = no", "",
        "[proxy-by-address]", "type = identify", "endpoint = proxy",
        f"match = {proxy_address}", ""])


# A call routed as another registration (an INVITE retransmitted to an address a new box
# took over) is refused with 503 by the operator's guard, contrib/kamailio/wrong-box-guard.conf,
# so the proxy fails it over (a hangup handler logs it as refused); any other is answered,
# logged (routed as what, answered by whom) and held until the caller hangs up (at most a
# minute).
GUARD = (Path(__file__).resolve().parents[2] / "contrib/kamailio/wrong-box-guard.conf").read_text()
# How the dialplan reads a header of the INVITE, per SIP stack.
_HEADER = {"chan_sip": "SIP_HEADER({})", "pjsip": "PJSIP_HEADER(read,{})"}
_FLEET_CONTEXT = """
[fleet]
exten => _X.,1,Set(ROUTED_AS=${X_CONSUL_SERVICE})
 same => n,Set(LOGGED=callid=${CALL_ID} service=${ROUTED_AS} eid=${ENTITYID})
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


def extensions(sip_stack):
    header = _HEADER[sip_stack]
    return GUARD + _FLEET_CONTEXT.replace(
        "${X_CONSUL_SERVICE}", "${%s}" % header.format("X-Consul-Service")).replace(
        "${CALL_ID}", "${%s}" % header.format("Call-ID"))


EXTENSIONS = extensions("chan_sip")


class AsteriskHost:
    def __init__(self, ns, module_so, agent, proxy_address, weight=1, options=None,
                 artifacts_dir=None, profile=None):
        self.profile = profile or profiles.current()
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
        pjsip = self.profile.sip_stack == "pjsip"
        ast = AsteriskInstance(
            self.profile.asterisk, modules=PJSIP_MODULES if pjsip else CHAN_SIP_MODULES,
            netns=self.ns.name, bind_address=self.ns.address,
            eid=eid or random_eid(), asterisk_conf_options={"verbose": "1", "debug": "0"},
            artifacts_dir=(self.artifacts_dir / f"asterisk-{number}"
                           if self.artifacts_dir else None))
        ast.install_module(self.module_so)
        if pjsip:
            ast.write_config("pjsip.conf", pjsip_conf(self.ns.address, self.proxy_address))
        else:
            ast.write_config("sip.conf", sip_conf(self.ns.address, self.proxy_address))
        ast.write_config("extensions.conf", extensions(self.profile.sip_stack))
        ast.write_config("res_discovery_consul.conf", self._module_conf(ast))
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

    def _module_conf(self, ast):
        return module_conf(dict(self.options, check_http_port=ast.http_port), self.weight,
                           sip_check=self.profile.sip_check)

    def set_options(self, **options):
        """New module options, applied by `module reload`."""
        self.options.update(options)
        self.asterisk.write_config("res_discovery_consul.conf", self._module_conf(self.asterisk))
        return self.asterisk.rx("module reload res_discovery_consul.so")

    @property
    def sip_driver(self):
        return SIP_DRIVER[self.profile.sip_stack]

    def sip_stack_away(self):
        """`module unload` of the SIP channel driver: the box takes no call."""
        return self.asterisk.rx(f"module unload {self.sip_driver}")

    def sip_stack_back(self):
        return self.asterisk.rx(f"module load {self.sip_driver}")

    def sip_stack_loaded(self):
        driver = self.sip_driver
        return driver in self.asterisk.rx(f"module show like {driver[:-3]}").split()

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
