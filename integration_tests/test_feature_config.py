"""Configuration: what declines the load (and says why), what only warns, and
`discovery show settings` naming every option and where its value came from."""

import re

import pytest

from integration_tests import discovery as d


def test_enabled_no_declines_the_load(asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, general={"enabled": "no"})
    log = d.load_declined(ast)
    assert re.search(r"disabled \(\[general\] enabled = no", log), log
    assert consul_agent.services() == {}


def test_a_bad_value_declines_with_its_place_and_a_fixed_file_loads(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, port="abc")
    log = d.load_declined(ast)
    where = "res_discovery_consul.conf:%d" % d.conf_line(ast, "port")
    assert re.search(r"ERROR.*%s: \[consul\] port = 'abc': must be a whole number" % where,
                     log), log
    assert consul_agent.services() == {}

    d.write_conf(ast, consul_agent)
    d.load(ast)
    d.wait_service(consul_agent, ast.eid)


@pytest.mark.parametrize("options, message", [
    ({"metadata_profile": "nope"},
     r"metadata_profile = 'nope': there is no section \[metadata_nope\]"),
    ({"discovery_ip": "auto", "discovery_interface": "nosuch0"},
     r"discovery_ip = 'auto': interface 'nosuch0' does not exist"),
    ({"check_interval": "15"}, r"check_interval = '15': has no unit"),
    ({"token": "a", "token_file": "consul.token"}, r"token and token_file are both set"),
    ({"token": "s3cr3t with-space"}, r"\[consul\] token: contains whitespace"),
], ids=["missing-profile", "missing-interface", "duration-without-unit", "token-and-file",
        "bad-token"])
def test_config_problems_decline_the_load_saying_why(asterisk_factory, ast_version, module_so,
                                                     refusing_peer, options, message):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, refusing_peer, **options)
    log = d.load_declined(ast)
    assert re.search(r"ERROR.*res_discovery_consul\.conf:\d+: .*" + message, log), log
    assert "s3cr3t" not in ast.log_text()  # a token is never echoed, even when refused


def test_unknown_option_and_short_deregister_after_only_warn(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, check_deregister_after="30s", colour="blue")
    since = ast.log_offset()
    d.load(ast)
    log = ast.log_text(since)
    assert re.search(r"WARNING.*res_discovery_consul\.conf:%d: \[consul\] unknown option "
                     r"'colour'" % d.conf_line(ast, "colour"), log), log
    assert re.search(r"WARNING.*res_discovery_consul\.conf:%d: \[consul\] check_deregister_after"
                     r" = '30s' is below Consul's minimum: Consul will use 1m"
                     % d.conf_line(ast, "check_deregister_after"), log), log
    d.wait_service(consul_agent, ast.eid)


def test_show_settings_shows_every_option_and_its_source(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    (ast.etc_dir / "consul.token").write_text("secret-token-value\n")
    options = d.write_conf(
        ast, consul_agent, general={"enabled": "yes"}, scheme="http", token_file="consul.token",
        id="settings-1", name="pbx", tags="a,b", discovery_port=5070, discovery_interface="lo",
        metadata_profile="p", check_interval="2s", check_timeout="1500ms",
        extra_sections={"metadata_p": {"group": "g1", "priority": 5, "weight": 10,
                                       "max_calls": 99, "flags": 7}})
    d.load(ast)
    text = ast.rx("discovery show settings")
    shown = {"tags": "a, b", "token_file": None, "token": r"\(set, 18 chars\)",
             "check": "yes", "enabled": "yes"}
    conf = (ast.etc_dir / d.CONF).read_text().splitlines()
    for number, line in enumerate(conf, 1):
        option, sep, value = line.partition(" = ")
        if not sep or option == "token_file":
            continue
        value = shown.get(option, re.escape(value))
        row = "metadata %s" % option if option in ("group", "priority", "weight", "max_calls",
                                                   "flags") else option
        assert re.search(r"^\s+%s\s+%s\s+res_discovery_consul\.conf:%d\b" % (row, value, number),
                         text, re.M), (row, text)
    assert re.search(r"^\s+token\s+.*res_discovery_consul\.conf:%d \(token_file "
                     % d.conf_line(ast, "token_file"), text, re.M), text
    # Options left out name their default; http.conf facts name http.conf.
    assert re.search(r"^\s+ari_port\s+%d\s+http\.conf:\d+" % ast.http_port, text, re.M), text
    assert re.search(r"^\s+http_prefix\s+\(none\)\s+default\s*$", text, re.M), text
    assert "secret-token-value" not in text
    assert set(options) - {"token_file"} <= set(re.findall(r"^\s+(\w+)\s", text, re.M))
