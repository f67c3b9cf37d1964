"""SIP readiness on Asterisk 16 and 22 (PJSIP on both, chan_sip on 16) against a real Consul
1.8.7 agent: a box whose SIP stack takes no calls leaves the healthy set with the reason, and
comes back; discovery_port = auto and the TaggedAddresses follow pjsip.conf; Consul DNS SRV
answers the SIP port with the weights and leaves out a draining or SIP-dead box."""

import socket
import time

import pytest

from integration_tests import discovery as d
from integration_tests.dnsquery import srv
from integration_tests.testbed import runtime

PJSIP_MODULES = ["res_sorcery_config.so", "res_sorcery_memory.so", "res_sorcery_astdb.so",
                 "res_pjproject.so", "res_pjsip.so", "res_pjsip_session.so",
                 "res_pjsip_pubsub.so", "chan_pjsip.so"]
# Healthy-set bounds: one check interval (1 s here) plus about a second of probing, with the
# agent's own sync on top.
OUT_WITHIN_S = 4.0


def pjsip_conf(udp_port, tcp_port=None, address="127.0.0.1"):
    text = ("[transport-udp]\ntype = transport\nprotocol = udp\nbind = %s:%d\n\n"
            % (address, udp_port))
    if tcp_port:
        text += ("[transport-tcp]\ntype = transport\nprotocol = tcp\nbind = %s:%d\n\n"
                 % (address, tcp_port))
    return text


def sip_asterisk(asterisk_factory, version, module_so, consul, pjsip=None, sip=None,
                 modules=PJSIP_MODULES, **options):
    """An Asterisk with a SIP stack and the module loaded with these options (EID check and
    TTL check, 1 s each)."""
    configs = {}
    if pjsip is not None:
        configs["pjsip.conf"] = pjsip
    if sip is not None:
        configs["sip.conf"] = sip
    ast = asterisk_factory(version, install=[module_so], modules=list(modules),
                           extra_configs=configs)
    merged = dict(check_type="both", check_ttl="3s", discovery_port="auto")
    merged.update(options)
    d.write_conf(ast, consul, **merged)
    d.load(ast)
    return ast


def passing_ids(consul, name="Asterisk"):
    r = consul.get("/v1/health/service/%s" % name, params={"passing": "1"})
    r.raise_for_status()
    return {entry["Service"]["ID"] for entry in r.json()}


def timed(condition, what, timeout=15.0):
    """Seconds until condition() holds."""
    begun = time.monotonic()
    d.wait_until(condition, timeout=timeout, interval=0.05, what=what)
    return time.monotonic() - begun


def test_a_transport_whose_port_is_taken_at_start_is_critical_then_passing_after_restart(
        asterisk_factory, ast_version, module_so, consul_agent):
    port = runtime.free_port(udp=True)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", port))  # takes the port first and never answers
    try:
        ast = sip_asterisk(asterisk_factory, ast_version, module_so, consul_agent,
                           pjsip=pjsip_conf(port))
        reason = "SIP: no answer on udp 127.0.0.1:%d within 500 ms" % port

        d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=10)

        def both_say_it():
            # The agent's own view: Consul syncs output-only changes to the catalog lazily.
            ours = [c for c in consul_agent.checks().values() if c["ServiceID"] == ast.eid]
            return len(ours) == 2 and all(reason in c["Output"] for c in ours)
        d.wait_until(both_say_it, timeout=10, interval=0.1, what="both checks with the reason")
        assert ast.eid not in passing_ids(consul_agent)
        assert "SIP:" in ast.rx("discovery show status") and reason in ast.rx(
            "discovery show status")
    finally:
        squatter.close()
    ast.stop()
    ast.start()
    d.load(ast)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing", timeout=10)
    status = ast.rx("discovery show status")
    assert "SIP" in status and "PASSING since" in status and "round trip" in status, status


def test_unloading_chan_pjsip_leaves_the_healthy_set_and_loading_it_comes_back(
        asterisk_factory, ast_version, module_so, consul_agent):
    port = runtime.free_port(udp=True)
    ast = sip_asterisk(asterisk_factory, ast_version, module_so, consul_agent,
                       pjsip=pjsip_conf(port))
    d.wait_until(lambda: ast.eid in passing_ids(consul_agent), timeout=10, interval=0.1,
                 what="the box passing")
    ast.rx("module unload chan_pjsip.so")
    out_s = timed(lambda: ast.eid not in passing_ids(consul_agent), "out of the healthy set")
    ttl = consul_agent.checks()["check-asterisk-ttl-%s" % ast.eid]
    assert "SIP: no SIP channel driver loaded" in ttl["Output"]
    ast.rx("module load chan_pjsip.so")
    back_s = timed(lambda: ast.eid in passing_ids(consul_agent), "back in the healthy set")
    print("Asterisk %s: out after %.2f s, back after %.2f s" % (ast_version, out_s, back_s))
    assert out_s < OUT_WITHIN_S and back_s < OUT_WITHIN_S


def test_discovery_port_auto_and_tagged_addresses_follow_pjsip_conf(
        asterisk_factory, ast_version, module_so, consul_agent):
    udp, tcp = runtime.free_port(udp=True), runtime.free_port()
    ast = sip_asterisk(asterisk_factory, ast_version, module_so, consul_agent,
                       pjsip=pjsip_conf(udp, tcp))
    service = d.wait_service(consul_agent, ast.eid, Port=udp)
    tagged = service["TaggedAddresses"]
    assert tagged["sip_udp"] == {"Address": "127.0.0.1", "Port": udp}
    assert tagged["sip_tcp"] == {"Address": "127.0.0.1", "Port": tcp}
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing", timeout=10)
    # Consul's own lan/wan addresses do not count as drift: no re-registration follows.
    since = ast.log_offset()
    time.sleep(2.5)  # two resyncs (resync_interval 1s): what must NOT happen has to get its chance
    assert "drifted" not in ast.log_text(since)
    # Re-read at reload: the UDP transport moves, the service follows.
    moved = runtime.free_port(udp=True)
    ast.write_config("pjsip.conf", pjsip_conf(moved, tcp))
    ast.rx("module reload res_discovery_consul.so")
    d.wait_service(consul_agent, ast.eid, Port=moved)


def test_sip_check_no_keeps_a_box_without_sip_passing(asterisk_factory, ast_version, module_so,
                                                      consul_agent):
    port = runtime.free_port(udp=True)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", port))
    try:
        ast = sip_asterisk(asterisk_factory, ast_version, module_so, consul_agent,
                           pjsip=pjsip_conf(port), sip_check="no")
        d.wait_health(consul_agent, "Asterisk", ast.eid, "passing", timeout=10)
        ast.rx("module unload chan_pjsip.so")
        d.wait_health(consul_agent, "Asterisk", ast.eid, "passing", timeout=10)
        assert "not checked (sip_check = no)" in ast.rx("discovery show status")
    finally:
        squatter.close()


# chan_sip is gone from Asterisk 21 on: this one runs on 16 only.
@pytest.mark.parametrize("ast_version", ["16"], ids=["ast16"], indirect=True)
def test_chan_sip_on_16_gives_the_port_and_its_unload_leaves_the_healthy_set(
        asterisk_factory, ast_version, module_so, consul_agent):
    port = runtime.free_port(udp=True)
    ast = sip_asterisk(asterisk_factory, ast_version, module_so, consul_agent,
                       sip="[general]\nudpbindaddr = 127.0.0.1\nbindport = %d\n" % port,
                       modules=["chan_sip.so"])
    d.wait_service(consul_agent, ast.eid, Port=port)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing", timeout=10)
    ast.rx("module unload chan_sip.so")
    checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=OUT_WITHIN_S)
    assert any("no SIP channel driver loaded" in c["Output"] for c in checks)


def test_consul_dns_srv_answers_the_sip_port_with_weights_and_leaves_out_unhealthy_boxes(
        asterisk_factory, ast_version, module_so, consul_agent):
    port = runtime.free_port(udp=True)
    ast = sip_asterisk(asterisk_factory, ast_version, module_so, consul_agent,
                       pjsip=pjsip_conf(port), weight_passing=7)
    name = "Asterisk.service.consul"

    def answers():
        return srv(consul_agent.dns_port, name)
    d.wait_until(lambda: answers(), timeout=10, interval=0.1, what="an SRV answer")
    [(_, srv_port, _, weight)] = answers()
    assert (srv_port, weight) == (port, 7)
    ast.rx("discovery set drain on dns test")
    d.wait_until(lambda: answers() == [], timeout=OUT_WITHIN_S, interval=0.1,
                 what="the draining box out of the SRV answer")
    ast.rx("discovery set drain off")
    d.wait_until(lambda: answers(), timeout=OUT_WITHIN_S, interval=0.1, what="back in SRV")
    ast.rx("module unload chan_pjsip.so")
    d.wait_until(lambda: answers() == [], timeout=OUT_WITHIN_S, interval=0.1,
                 what="the SIP-dead box out of the SRV answer")
    ast.rx("discovery set maintenance on dns test")
    ast.rx("module load chan_pjsip.so")
    time.sleep(2.0)  # a SIP-alive box in maintenance must stay out: give it the time to come back
    assert answers() == []
