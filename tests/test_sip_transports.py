"""SIP transports from pjsip.conf and sip.conf, discovery_port = auto at load, the
TaggedAddresses and the probe's target that follow from them: files in a temp dir, no
Asterisk."""

from __future__ import annotations

import pytest

from asterisk_consul.config import parse_file
from asterisk_consul.loader import load_settings
from asterisk_consul.sip_probe import Target
from asterisk_consul.siptransports import (chan_sip_transports, pjsip_transports, probe_target,
                                           published, tagged_addresses)
from tests.standin import StandInHost

PJSIP = """
[transport-defaults](!)
type = transport
[transport-udp](transport-defaults)
protocol = udp
bind = 0.0.0.0:5070
[transport-tcp]
type = transport
protocol = tcp
bind = 10.0.0.5:5071
[transport-tls]
type = transport
protocol = tls
bind = [::]
[transport-ws]
type = transport
protocol = ws
[alice]
type = endpoint
"""

SIP = """
[general]
udpbindaddr = 0.0.0.0
bindport = 5062
tcpenable = yes
tcpbindaddr = 127.0.0.1:5063
tlsenable = no
tlsbindaddr = 0.0.0.0:5064
"""


def parsed(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return parse_file(str(tmp_path / name), str(tmp_path))


def test_pjsip_transports_in_file_order_templates_and_endpoints_skipped(tmp_path):
    transports = pjsip_transports(parsed(tmp_path, "pjsip.conf", PJSIP), ws_port=8088,
                                  wss_port=None)
    assert [(t.name, t.kind, t.address, t.port) for t in transports] == [
        ("transport-udp", "udp", "0.0.0.0", 5070),
        ("transport-tcp", "tcp", "10.0.0.5", 5071),
        ("transport-tls", "tls", "::", 5061),      # TLS's default port
        ("transport-ws", "ws", "0.0.0.0", 8088),   # rides Asterisk's HTTP server
    ]


def test_a_websocket_transport_without_its_http_server_is_not_published(tmp_path):
    transports = pjsip_transports(parsed(tmp_path, "pjsip.conf", PJSIP), ws_port=None,
                                  wss_port=None)
    assert "ws" not in [t.kind for t in transports]


def test_chan_sip_udp_from_bindport_and_tcp_only_when_enabled(tmp_path):
    transports = chan_sip_transports(parsed(tmp_path, "sip.conf", SIP))
    assert [(t.kind, t.address, t.port) for t in transports] == [
        ("udp", "0.0.0.0", 5062), ("tcp", "127.0.0.1", 5063)]


def test_tagged_addresses_one_per_kind_wildcards_at_discovery_ip():
    transports = (("udp", "0.0.0.0", 5070), ("udp", "0.0.0.0", 5080), ("tcp", "10.0.0.5", 5071))
    assert tagged_addresses(transports, 5080, "192.0.2.7") == {
        "sip_udp": {"Address": "192.0.2.7", "Port": 5080},  # the one on the service Port
        "sip_tcp": {"Address": "10.0.0.5", "Port": 5071},
    }


@pytest.mark.parametrize("transports, port, target", [
    ((), 5060, Target("udp", "127.0.0.1", 5060)),
    ((("udp", "0.0.0.0", 5070),), 5070, Target("udp", "127.0.0.1", 5070)),
    ((("tcp", "0.0.0.0", 5070), ("udp", "0.0.0.0", 5070)), 5070, Target("udp", "127.0.0.1", 5070)),
    ((("tcp", "10.0.0.5", 5071),), 5071, Target("tcp", "10.0.0.5", 5071)),
    ((("udp", "::", 5060),), 5060, Target("udp", "::1", 5060)),
    ((("tls", "0.0.0.0", 5061),), 5061, None),
])
def test_the_probe_asks_what_listens_on_the_service_port(transports, port, target):
    assert probe_target(transports, port) == target


def load(tmp_path, consul_lines, pjsip=None, sip=None, techs=()):
    (tmp_path / "res_discovery_consul.conf").write_text(
        "[general]\n[consul]\n" + "\n".join(consul_lines) + "\n")
    if pjsip is not None:
        (tmp_path / "pjsip.conf").write_text(pjsip)
    if sip is not None:
        (tmp_path / "sip.conf").write_text(sip)
    host = StandInHost(config_dir=str(tmp_path))
    host.techs = set(techs)
    return load_settings(host, {})


def test_discovery_port_auto_takes_the_first_udp_transport_and_publishes_all(tmp_path):
    settings, warnings = load(tmp_path, ["discovery_port = auto"], pjsip=PJSIP, sip=SIP,
                              techs=("PJSIP",))
    assert settings.discovery_port == 5070
    assert "auto: udp transport transport-udp, pjsip.conf:" in settings.sources["discovery_port"]
    assert [t[0] for t in settings.sip_transports] == ["udp", "tcp", "tls"]  # no http.conf: no ws
    assert not [w for w in warnings if "discovery_port" in w]


def test_sip_transport_names_the_one_auto_takes(tmp_path):
    settings, _ = load(tmp_path, ["discovery_port = auto", "sip_transport = transport-tcp"],
                       pjsip=PJSIP)
    assert settings.discovery_port == 5071


def test_only_chan_sip_loaded_reads_sip_conf(tmp_path):
    settings, _ = load(tmp_path, ["discovery_port = auto"], pjsip=PJSIP, sip=SIP, techs=("SIP",))
    assert settings.discovery_port == 5062 and settings.sources["sip_transports"] == "sip.conf"


def test_a_port_no_transport_listens_on_is_warned_about_at_load(tmp_path):
    settings, warnings = load(tmp_path, ["discovery_port = 5999"], pjsip=PJSIP)
    assert settings.discovery_port == 5999
    [warning] = [w for w in warnings if "discovery_port = 5999" in w]
    assert "no SIP transport in pjsip.conf listens on it (udp 5070, tcp 5071, tls 5061)" in warning


def test_auto_without_any_transport_advertises_5060_with_a_warning(tmp_path):
    settings, warnings = load(tmp_path, ["discovery_port = auto"])
    assert settings.discovery_port == 5060 and settings.sip_transports == ()
    assert any("no SIP transport found" in w for w in warnings)


def test_published_keeps_kind_address_and_port(tmp_path):
    transports = pjsip_transports(parsed(tmp_path, "pjsip.conf", PJSIP), None, None)
    assert published(transports)[0] == ("udp", "0.0.0.0", 5070)
