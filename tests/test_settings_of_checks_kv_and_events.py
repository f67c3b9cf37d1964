"""Settings and pure helpers of the checks, KV and events: check_type / check_ttl, the HTTPS
EID check options, CONSUL_HTTP_SSL, [kv] with kv_prefix / kv_session_ttl, the check and KV
definitions built from them, and how `discovery show settings` reports them."""

import dataclasses

import pytest

from asterisk_consul.config import ConfigError
from asterisk_consul.kv import kv_entries, kv_prefix, session_name
from asterisk_consul.registration import (CHECK_NAME, TTL_CHECK_NAME, HostFacts,
                                          check_definitions, check_drift, service_definition,
                                          standalone_check, ttl_check_definition, ttl_check_id)
from asterisk_consul.loader import KV_MAX_KEYS
from asterisk_consul.settings import Settings, settings_report
from asterisk_consul.values import kv_template_problem, render_kv_template
from tests.test_settings import CONF, consul, error_of, host, load  # noqa: F401 (fixture)
from tests.test_settings import confdir  # noqa: F401 - fixture

FACTS = HostFacts(eid="02:42:ac:11:00:02", version="22.1.0")
HTTP_ON = "[general]\nenabled = yes\nbindaddr = 127.0.0.1\n"
KNOWN = "(known: ${ID}, ${NAME}, ${EID}, ${ADDRESS}, ${PORT}, ${VERSION})"


def kv_error_of(host, confdir, *kv_lines, consul_lines=()):
    """The ConfigError text of a load whose [kv] holds kv_lines (its first line is line 3 when
    consul_lines is empty)."""
    text = "[consul]\n" + "".join(f"{line}\n" for line in consul_lines) + "[kv]\n"
    text += "".join(f"{line}\n" for line in kv_lines)
    with pytest.raises(ConfigError) as info:
        load(host, confdir, text)
    return str(info.value)


def definition(**overrides):
    base = dict(service_id="pbx-1", name="Asterisk", discovery_ip="192.0.2.10",
                discovery_port=5060, check=True, check_type="http")
    base.update(overrides)
    return Settings(**base)


# -- check_type and check_ttl --------------------------------------------------------------

def test_new_options_default_as_documented(host, confdir):
    settings, warnings = consul(host, confdir)
    assert (settings.check, settings.check_type, settings.check_ttl, settings.check_scheme) == \
        (True, "ttl", "30s", "http")  # auto: no HTTP server here
    assert (settings.check_tls_server_name, settings.check_tls_skip_verify) == ("", False)
    assert (settings.kv, settings.kv_prefix, settings.kv_session_ttl) == ((), "${ID}", "30s")
    assert settings.check_http_port == 8088
    assert warnings == []


@pytest.mark.parametrize("word, kind", [("http", "http"), ("ttl", "ttl"), ("both", "both"),
                                        ("TTL", "ttl"), ("Both", "both")])
def test_check_type_values(host, confdir, word, kind):
    settings, _ = consul(host, confdir, f"check_type = {word}")
    assert settings.check_type == kind
    assert settings.sources["check_type"] == f"{CONF}:2"
    assert settings.http_check is (kind != "ttl")
    assert settings.ttl_check is (kind != "http")


def test_check_type_bad_value_names_file_line_option_and_value(host, confdir):
    """The load is refused with file:line, option, value and what is accepted."""
    message = error_of(host, confdir, "check = yes", "check_type = tcp")
    assert message == (f"{CONF}:3: [consul] check_type = 'tcp': must be auto (both when "
                       f"Asterisk's HTTP server can answer the agent, else ttl), http (Consul "
                       f"polls the EID endpoint), ttl (the module reports to Consul) or both")


@pytest.mark.parametrize("good", ["1s", "3s", "1m", "1.5s", "1000ms"])
def test_check_ttl_good(host, confdir, good):
    settings, _ = consul(host, confdir, f"check_ttl = {good}")
    assert settings.check_ttl == good and settings.sources["check_ttl"] == f"{CONF}:2"


@pytest.mark.parametrize("bad, reason", [
    ("999ms", "must be at least 1s (the module reports every third of it)"),
    ("0.5s", "must be at least 1s (the module reports every third of it)"),
    ("0s", "must be more than zero"),
    ("30", "has no unit"),
])
def test_check_ttl_bad(host, confdir, bad, reason):
    message = error_of(host, confdir, f"check_ttl = {bad}")
    assert message.startswith(f"{CONF}:2: [consul] check_ttl = '{bad}': {reason}")


def test_ttl_only_check_does_not_need_asterisks_http_server(host, confdir):
    """Only checks Consul polls need Asterisk's HTTP server."""
    _, warnings = consul(host, confdir, "check = yes", "check_type = ttl",
                         "check_deregister_after = 1m")
    assert warnings == []
    _, warnings = consul(host, confdir, "check = yes", "check_type = both",
                         "check_deregister_after = 1m")
    assert any("HTTP server is not enabled" in w for w in warnings)


# -- the HTTPS EID check -------------------------------------------------------------------

def test_check_scheme_https_takes_the_port_of_tlsbindaddr(host, confdir):
    """check_scheme = https: Consul polls Asterisk's TLS port from http.conf."""
    http = "[general]\nenabled = yes\ntlsenable = yes\ntlsbindaddr = 0.0.0.0:8444\n"
    settings, _ = consul(host, confdir, "check_scheme = https", http=http)
    assert (settings.check_scheme, settings.check_http_port) == ("https", 8444)
    assert settings.sources["check_scheme"] == f"{CONF}:2"
    assert settings.sources["check_http_port"] == "http.conf:4 (Asterisk's TLS port)"


def test_check_scheme_https_takes_an_ipv6_tlsbindaddr_port(host, confdir):
    http = "[general]\nenabled = yes\ntlsenable = yes\ntlsbindaddr = [::]:8445\n"
    settings, _ = consul(host, confdir, "check_scheme = https", http=http)
    assert settings.check_http_port == 8445


def test_check_scheme_https_without_tls_port_uses_8089(host, confdir):
    settings, _ = consul(host, confdir, "check_scheme = https",
                         http="[general]\nenabled = yes\ntlsenable = yes\n")
    assert settings.check_http_port == 8089
    assert settings.sources["check_http_port"] == "default (Asterisk's TLS port)"
    settings, _ = consul(host, confdir, "check_scheme = https")  # no http.conf at all
    assert settings.check_http_port == 8089


def test_check_http_port_in_the_file_wins_over_the_tls_port(host, confdir):
    http = "[general]\nenabled = yes\ntlsenable = yes\ntlsbindaddr = 0.0.0.0:8444\n"
    settings, _ = consul(host, confdir, "check_scheme = https", "check_http_port = 9443",
                         http=http)
    assert settings.check_http_port == 9443
    assert settings.sources["check_http_port"] == f"{CONF}:3"


def test_check_scheme_http_keeps_the_plain_default_port(host, confdir):
    http = "[general]\nenabled = yes\ntlsenable = yes\ntlsbindaddr = 0.0.0.0:8444\n"
    settings, _ = consul(host, confdir, "check_scheme = http", http=http)
    assert settings.check_http_port == 8088 and settings.sources["check_http_port"] == "default"


def test_check_scheme_bad_value(host, confdir):
    assert error_of(host, confdir, "check_scheme = ftp") == \
        f"{CONF}:2: [consul] check_scheme = 'ftp': must be http or https"


def test_https_check_without_tlsenable_warns(host, confdir):
    """An https EID check against an Asterisk without TLS server is said to fail."""
    _, warnings = consul(host, confdir, "check = yes", "check_scheme = https",
                         "check_deregister_after = 1m", "check_type = http", http=HTTP_ON)
    assert warnings == [f"{CONF}:3: [consul] check_scheme = https, but http.conf does not "
                        f"enable Asterisk's TLS server ([general] tlsenable = yes): the EID "
                        f"check will fail"]


def test_https_check_with_tlsenable_does_not_warn(host, confdir):
    _, warnings = consul(host, confdir, "check = yes", "check_scheme = https",
                         "check_deregister_after = 1m",
                         http="[general]\nenabled = yes\ntlsenable = yes\n")
    assert warnings == []


def test_https_ttl_only_check_does_not_warn_about_tls(host, confdir):
    _, warnings = consul(host, confdir, "check = yes", "check_type = ttl",
                         "check_scheme = https", "check_deregister_after = 1m", http=HTTP_ON)
    assert warnings == []


def test_check_tls_options(host, confdir):
    settings, warnings = consul(host, confdir, "check_scheme = https",
                                "check_tls_server_name = pbx.example.net.",
                                "check_tls_skip_verify = yes",
                                http="[general]\nenabled = yes\ntlsenable = yes\n")
    assert settings.check_tls_server_name == "pbx.example.net"  # the root dot dropped
    assert settings.check_tls_skip_verify is True
    assert settings.sources["check_tls_server_name"] == f"{CONF}:3"
    assert settings.sources["check_tls_skip_verify"] == f"{CONF}:4"
    assert warnings == [f"{CONF}:4: [consul] check_tls_skip_verify = yes: Consul does not "
                        f"verify Asterisk's certificate for the EID check"]


def test_check_tls_server_name_may_be_an_ip_address(host, confdir):
    settings, _ = consul(host, confdir, "check_scheme = https",
                         "check_tls_server_name = 192.0.2.10")
    assert settings.check_tls_server_name == "192.0.2.10"


@pytest.mark.parametrize("line, message", [
    ("check_tls_server_name = bad name!",
     "[consul] check_tls_server_name = 'bad name!': must be a host name"),
    ("check_tls_skip_verify = perhaps",
     "[consul] check_tls_skip_verify = 'perhaps': must be yes or no"),
])
def test_check_tls_options_bad_values(host, confdir, line, message):
    assert error_of(host, confdir, "check_scheme = https", line).startswith(f"{CONF}:3: {message}")


def test_check_tls_options_with_http_scheme_warn_that_they_are_unused(host, confdir):
    """TLS options of the check are named as unused with an http check."""
    _, warnings = consul(host, confdir, "check_tls_server_name = pbx.example.net")
    assert warnings == [f"{CONF}:2: [consul] check_tls_server_name set, but check_scheme is "
                        f"http: not used"]
    _, warnings = consul(host, confdir, "check_scheme = http", "check_tls_skip_verify = yes",
                         "check_tls_server_name = pbx.example.net")
    assert warnings == [f"{CONF}:4: [consul] check_tls_server_name, check_tls_skip_verify set, "
                        f"but check_scheme is http: not used"]


# -- CONSUL_HTTP_SSL -------------------------------------------------------------------------

@pytest.mark.parametrize("word", ["true", "1", "yes", "TRUE"])
def test_consul_http_ssl_true_means_https_on_8501(host, confdir, word):
    """As Consul's CLI: CONSUL_HTTP_SSL=true is https, on Consul's HTTPS port."""
    settings, _ = consul(host, confdir, env={"CONSUL_HTTP_SSL": word})
    assert settings.agent_url == "https://127.0.0.1:8501"
    assert settings.sources["scheme"] == "env CONSUL_HTTP_SSL"
    assert settings.sources["port"] == "default"


def test_consul_http_ssl_false_means_http(host, confdir):
    settings, _ = consul(host, confdir, env={"CONSUL_HTTP_SSL": "false"})
    assert settings.agent_url == "http://127.0.0.1:8500"
    assert settings.sources["scheme"] == "env CONSUL_HTTP_SSL"


def test_consul_http_ssl_keeps_a_port_set_in_the_file(host, confdir):
    settings, _ = consul(host, confdir, "port = 8600", env={"CONSUL_HTTP_SSL": "true"})
    assert settings.agent_url == "https://127.0.0.1:8600"


def test_the_files_scheme_wins_over_consul_http_ssl(host, confdir):
    settings, _ = consul(host, confdir, "scheme = http", env={"CONSUL_HTTP_SSL": "true"})
    assert settings.agent_url == "http://127.0.0.1:8500"
    assert settings.sources["scheme"] == f"{CONF}:2"
    settings, _ = consul(host, confdir, "scheme = https", env={"CONSUL_HTTP_SSL": "false"})
    assert settings.scheme == "https"


@pytest.mark.parametrize("addr, url", [
    ("http://consul.local:8500", "http://consul.local:8500"),
    ("https://consul.local", "https://consul.local:8501"),
])
def test_a_scheme_in_consul_http_addr_wins_over_consul_http_ssl(host, confdir, addr, url):
    """An explicit scheme in CONSUL_HTTP_ADDR beats CONSUL_HTTP_SSL either way."""
    ssl = "false" if addr.startswith("https") else "true"
    settings, _ = consul(host, confdir, env={"CONSUL_HTTP_ADDR": addr, "CONSUL_HTTP_SSL": ssl})
    assert settings.agent_url == url
    assert settings.sources["scheme"] == "env CONSUL_HTTP_ADDR"


def test_consul_http_ssl_applies_to_an_address_without_scheme(host, confdir):
    settings, _ = consul(host, confdir, env={"CONSUL_HTTP_ADDR": "consul.local:8700",
                                             "CONSUL_HTTP_SSL": "true"})
    assert settings.agent_url == "https://consul.local:8700"
    settings, _ = consul(host, confdir, env={"CONSUL_HTTP_ADDR": "consul.local",
                                             "CONSUL_HTTP_SSL": "true"})
    assert settings.agent_url == "https://consul.local:8501"


def test_invalid_consul_http_ssl_is_a_clear_error(host, confdir):
    with pytest.raises(ConfigError) as info:
        consul(host, confdir, env={"CONSUL_HTTP_SSL": "maybe"})
    assert str(info.value).startswith("env CONSUL_HTTP_SSL = 'maybe': must be yes or no")


def test_https_from_consul_http_ssl_uses_the_tls_options_silently(host, confdir):
    """TLS options are not called unused when https comes from CONSUL_HTTP_SSL."""
    _, warnings = consul(host, confdir, "tls_verify = yes", env={"CONSUL_HTTP_SSL": "true"})
    assert warnings == []
    _, warnings = consul(host, confdir, "tls_verify = yes", env={"CONSUL_HTTP_SSL": "false"})
    assert len(warnings) == 1 and "scheme is http" in warnings[0]


# -- kv_prefix, kv_session_ttl ---------------------------------------------------------------

@pytest.mark.parametrize("written, kept", [
    ("${ID}", "${ID}"), ("asterisk/${NAME}/${ID}", "asterisk/${NAME}/${ID}"),
    ("services/pbx/", "services/pbx"), ("cost$$/${EID}", "cost$$/${EID}"),
])
def test_kv_prefix_good(host, confdir, written, kept):
    settings, _ = consul(host, confdir, f"kv_prefix = {written}")
    assert settings.kv_prefix == kept and settings.sources["kv_prefix"] == f"{CONF}:2"


@pytest.mark.parametrize("bad, reason", [
    ("/asterisk/${ID}", "must not start with '/' or contain control characters"),
    ("asterisk/${HOST}", f"has an unknown placeholder ${{HOST}} {KNOWN}"),
    ("asterisk/$ID", "has a '$' that starts no ${NAME} placeholder (write $$ for a '$')"),
])
def test_kv_prefix_bad(host, confdir, bad, reason):
    assert error_of(host, confdir, f"kv_prefix = {bad}") == \
        f"{CONF}:2: [consul] kv_prefix = '{bad}': {reason}"


@pytest.mark.parametrize("good", ["10s", "30s", "5m", "24h"])
def test_kv_session_ttl_good(host, confdir, good):
    settings, _ = consul(host, confdir, f"kv_session_ttl = {good}")
    assert settings.kv_session_ttl == good
    assert settings.sources["kv_session_ttl"] == f"{CONF}:2"


@pytest.mark.parametrize("bad, reason", [
    ("9s", "must be from 10s to 24h (Consul's bounds for a session TTL)"),
    ("25h", "must be from 10s to 24h (Consul's bounds for a session TTL)"),
    ("30", "has no unit"),
])
def test_kv_session_ttl_bad(host, confdir, bad, reason):
    assert error_of(host, confdir, f"kv_session_ttl = {bad}").startswith(
        f"{CONF}:2: [consul] kv_session_ttl = '{bad}': {reason}")


# -- the [kv] section --------------------------------------------------------------------------

def test_kv_section_keeps_file_order_values_as_written_and_sources(host, confdir):
    text = ("[consul]\nkv_prefix = pbx/${ID}\n[kv]\nrole = edge ${NAME}\n"
            "sip/uri = sip:${ADDRESS}:${PORT}\nprice = 5$$\n")
    settings, warnings = load(host, confdir, text)
    assert settings.kv == (("role", "edge ${NAME}"), ("sip/uri", "sip:${ADDRESS}:${PORT}"),
                           ("price", "5$$"))
    assert settings.sources["kv"] == f"{CONF}:3"
    assert settings.sources["kv.role"] == f"{CONF}:4"
    assert settings.sources["kv.sip/uri"] == f"{CONF}:5"
    assert warnings == []  # [kv] is a known section


def test_kv_duplicate_key_warns_and_the_last_wins(host, confdir):
    settings, warnings = load(host, confdir, "[kv]\nrole = a\nrole = b\n")
    assert settings.kv == (("role", "b"),)
    assert any(w.startswith(f"{CONF}:3: [kv] role is set more than once") for w in warnings)


@pytest.mark.parametrize("line, reason", [
    ("role = ${HOST}", f"has an unknown placeholder ${{HOST}} {KNOWN}"),
    ("role = ${id}", f"has an unknown placeholder ${{id}} {KNOWN}"),
    ("role = costs 5$", "has a '$' that starts no ${NAME} placeholder (write $$ for a '$')"),
    ("role = ${ID", "has a '$' that starts no ${NAME} placeholder (write $$ for a '$')"),
    ("/role = x", "key must be a relative path below kv_prefix (no leading or trailing '/', "
                  "no '.' or '..' parts)"),
    ("role/ = x", "key must be a relative path below kv_prefix (no leading or trailing '/', "
                  "no '.' or '..' parts)"),
    ("a/../b = x", "key must be a relative path below kv_prefix (no leading or trailing '/', "
                   "no '.' or '..' parts)"),
    ("a//b = x", "key must be a relative path below kv_prefix (no leading or trailing '/', "
                 "no '.' or '..' parts)"),
    ("my role = x", "key must be at most 512 characters without spaces or control characters"),
    ("role$1 = x", "key must not contain '$' (only values and kv_prefix are templates)"),
])
def test_kv_bad_entries_name_file_line_key_value_and_reason(host, confdir, line, reason):
    """A bad [kv] key or value template refuses the load with file:line, key, value, reason."""
    key, value = (part.strip() for part in line.split("=", 1))
    message = kv_error_of(host, confdir, "ok = fine", line)
    assert message == f"{CONF}:4: [kv] {key} = '{value}': {reason}"


def test_kv_at_most_64_keys(host, confdir):
    lines = [f"k{n} = v" for n in range(KV_MAX_KEYS)]
    settings, _ = load(host, confdir, "[kv]\n" + "\n".join(lines) + "\n")
    assert len(settings.kv) == KV_MAX_KEYS
    message = kv_error_of(host, confdir, *lines, "one_more = v")
    assert message == f"{CONF}:2: [kv] has {KV_MAX_KEYS + 1} keys: at most {KV_MAX_KEYS}"


# -- templates -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "plain", "${ID}", "${ID}/${NAME}/${EID}",
                                  "${ADDRESS}:${PORT} ${VERSION}", "5$$", "$$$$", "$${ID}"])
def test_kv_template_problem_accepts(text):
    assert kv_template_problem(text) is None


@pytest.mark.parametrize("text, problem", [
    ("$", "has a '$' that starts no ${NAME} placeholder (write $$ for a '$')"),
    ("5$$$", "has a '$' that starts no ${NAME} placeholder (write $$ for a '$')"),
    ("${}", f"has an unknown placeholder ${{}} {KNOWN}"),
    ("${ID}${Name}", f"has an unknown placeholder ${{Name}} {KNOWN}"),
])
def test_kv_template_problem_refuses(text, problem):
    assert kv_template_problem(text) == problem


def test_render_kv_template_replaces_every_placeholder():
    values = {"ID": "pbx-1", "NAME": "Asterisk", "EID": FACTS.eid, "ADDRESS": "192.0.2.10",
              "PORT": "5060", "VERSION": "22.1.0"}
    text = "${ID} ${NAME} ${EID} ${ADDRESS}:${PORT} v${VERSION} ${ID}"
    assert render_kv_template(text, values) == \
        f"pbx-1 Asterisk {FACTS.eid} 192.0.2.10:5060 v22.1.0 pbx-1"


@pytest.mark.parametrize("text, rendered", [
    ("5$$", "5$"), ("$$$$", "$$"), ("$${ID}", "${ID}"), ("$$${ID}", "$pbx-1"),
    ("$$$${ID}", "$${ID}"),
    ("no placeholder", "no placeholder"),
])
def test_render_kv_template_dollars(text, rendered):
    assert render_kv_template(text, {"ID": "pbx-1"}) == rendered


def test_kv_entries_render_prefix_and_values_in_file_order():
    """Full keys are <rendered prefix>/<key>, values rendered and UTF-8 encoded."""
    settings = definition(kv_prefix="asterisk/${NAME}/${ID}",
                          kv=(("role", "edge"), ("sip/uri", "sip:${ADDRESS}:${PORT}"),
                              ("about", "Asterisk ${VERSION} ($$${EID})")))
    assert kv_prefix(settings, FACTS) == "asterisk/Asterisk/pbx-1"
    assert kv_entries(settings, FACTS) == [
        ("asterisk/Asterisk/pbx-1/role", b"edge"),
        ("asterisk/Asterisk/pbx-1/sip/uri", b"sip:192.0.2.10:5060"),
        ("asterisk/Asterisk/pbx-1/about", f"Asterisk 22.1.0 (${FACTS.eid})".encode()),
    ]
    assert session_name("pbx-1") == "res_discovery_consul:pbx-1"


def test_kv_entries_default_prefix_is_the_service_id_and_values_are_utf8():
    settings = definition(kv=(("greeting", "h\u00e9llo ${ID}"),))
    assert kv_entries(settings, FACTS) == [("pbx-1/greeting", "h\u00e9llo pbx-1".encode())]


def test_kv_entries_with_an_empty_prefix_are_top_level_keys():
    settings = definition(kv_prefix="", kv=(("role", "edge"),))
    assert kv_entries(settings, FACTS) == [("role", b"edge")]


# -- the check definitions -------------------------------------------------------------------

def test_check_definitions_http_only():
    checks = check_definitions(definition(check_type="http", check_interval="5s"), FACTS)
    [check] = checks
    assert check == {
        "CheckID": "check-asterisk-eid-pbx-1",
        "Name": CHECK_NAME,
        "HTTP": f"http://192.0.2.10:8088/res_discovery_consul/check_eid?expected_eid={FACTS.eid}",
        "Method": "GET",
        "Interval": "5s",
        "Timeout": "3s",
        "DeregisterCriticalServiceAfter": "1m",
    }


def test_check_definitions_ttl_only():
    [check] = check_definitions(definition(check_type="ttl", check_ttl="6s",
                                           check_deregister_after="2m"), FACTS)
    assert check["CheckID"] == "check-asterisk-ttl-pbx-1" == ttl_check_id("pbx-1")
    assert check["Name"] == TTL_CHECK_NAME == "Asterisk Instance Liveness"
    assert check["TTL"] == "6s" and check["DeregisterCriticalServiceAfter"] == "2m"
    assert "every 2 s" in check["Notes"]  # a third of the TTL
    assert "HTTP" not in check and "Status" not in check  # the status is the registrar's


def test_check_definitions_both_http_first():
    checks = check_definitions(definition(check_type="both"), FACTS)
    assert [c["CheckID"] for c in checks] == ["check-asterisk-eid-pbx-1",
                                              "check-asterisk-ttl-pbx-1"]
    assert checks[1] == ttl_check_definition(definition(check_type="both"))


def test_https_check_url_and_tls_fields_only_when_set():
    """TLSSkipVerify / TLSServerName are sent only when set (Consul 1.8.7 refuses the name)."""
    plain = check_definitions(definition(check_scheme="https", check_http_port=8089), FACTS)[0]
    assert plain["HTTP"].startswith("https://192.0.2.10:8089/res_discovery_consul/check_eid?")
    assert "TLSSkipVerify" not in plain and "TLSServerName" not in plain

    skip = check_definitions(definition(check_scheme="https", check_tls_skip_verify=True),
                             FACTS)[0]
    assert skip["TLSSkipVerify"] is True and "TLSServerName" not in skip

    named = check_definitions(definition(check_scheme="https",
                                         check_tls_server_name="pbx.example.net"), FACTS)[0]
    assert named["TLSServerName"] == "pbx.example.net" and "TLSSkipVerify" not in named


def test_tls_fields_are_never_sent_with_an_http_check():
    check = check_definitions(definition(check_scheme="http", check_tls_skip_verify=True,
                                         check_tls_server_name="pbx.example.net"), FACTS)[0]
    assert check["HTTP"].startswith("http://")
    assert "TLSSkipVerify" not in check and "TLSServerName" not in check


def test_ttl_check_never_carries_tls_fields():
    [ttl] = check_definitions(definition(check_type="ttl", check_scheme="https",
                                         check_tls_skip_verify=True,
                                         check_tls_server_name="pbx.example.net"), FACTS)
    assert not {"TLSSkipVerify", "TLSServerName", "HTTP"} & set(ttl)


def test_service_definition_follows_the_checks_override():
    assert "Checks" not in service_definition(definition(check=False), FACTS)
    forced_on = service_definition(definition(check=False, check_type="both"), FACTS,
                                   checks_on=True)
    assert [c["CheckID"] for c in forced_on["Checks"]] == ["check-asterisk-eid-pbx-1",
                                                           "check-asterisk-ttl-pbx-1"]
    assert "Checks" not in service_definition(definition(check=True), FACTS, checks_on=False)


def test_standalone_check_is_bound_to_the_service():
    """The body of /v1/agent/check/register: ID instead of CheckID, ServiceID, Status if given."""
    ttl = ttl_check_definition(definition(check_type="ttl"))
    body = standalone_check(ttl, "pbx-1", "warning")
    assert body["ID"] == "check-asterisk-ttl-pbx-1" and "CheckID" not in body
    assert body["ServiceID"] == "pbx-1" and body["Status"] == "warning"
    assert {k: v for k, v in body.items() if k not in ("ID", "ServiceID", "Status")} == \
        {k: v for k, v in ttl.items() if k != "CheckID"}
    http = check_definitions(definition(), FACTS)[0]
    assert "Status" not in standalone_check(http, "pbx-1")


def _agent_check(check_id, name, kind, service_id="pbx-1"):
    return {"CheckID": check_id, "Name": name, "Type": kind, "ServiceID": service_id}


def test_check_drift_in_sync_and_missing():
    wanted = service_definition(definition(check_type="both"), FACTS)
    eid = _agent_check("check-asterisk-eid-pbx-1", CHECK_NAME, "http")
    ttl = _agent_check("check-asterisk-ttl-pbx-1", TTL_CHECK_NAME, "ttl")
    assert check_drift(wanted, {eid["CheckID"]: eid, ttl["CheckID"]: ttl}) == []
    assert check_drift(wanted, {eid["CheckID"]: eid}) == \
        ["check check-asterisk-ttl-pbx-1 is missing"]


def test_check_drift_differs_by_type_name_or_owner():
    wanted = service_definition(definition(check_type="ttl"), FACTS)
    cid = "check-asterisk-ttl-pbx-1"
    for changed in (_agent_check(cid, TTL_CHECK_NAME, "http"),
                    _agent_check(cid, "Something else", "ttl"),
                    _agent_check(cid, TTL_CHECK_NAME, "ttl", service_id="pbx-2")):
        assert check_drift(wanted, {cid: changed}) == [f"check {cid} differs"]


def test_check_drift_sees_checks_switched_off_but_not_someone_elses():
    """Our check IDs on our service while switched off are drift; on another service, not."""
    wanted = service_definition(definition(check_type="both"), FACTS, checks_on=False)
    ours = _agent_check("check-asterisk-eid-pbx-1", CHECK_NAME, "http")
    assert check_drift(wanted, {ours["CheckID"]: ours}) == \
        ["check check-asterisk-eid-pbx-1 is registered but switched off"]
    foreign = _agent_check("check-asterisk-ttl-pbx-1", TTL_CHECK_NAME, "ttl", service_id="x")
    assert check_drift(wanted, {foreign["CheckID"]: foreign}) == []


# -- Settings.check_key ----------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("check", False), ("check_type", "both"), ("check_http_port", 8089),
    ("check_scheme", "https"), ("check_tls_server_name", "pbx.example.net"),
    ("check_tls_skip_verify", True), ("check_interval", "5s"), ("check_timeout", "1s"),
    ("check_ttl", "10s"), ("check_deregister_after", "5m"),
])
def test_check_key_changes_with_every_check_option(field, value):
    """Every check option ends a 'discovery set check' override."""
    base = Settings()
    assert base.check_key() != dataclasses.replace(base, **{field: value}).check_key()


@pytest.mark.parametrize("field, value", [
    ("tags", ("other",)), ("discovery_port", 5070), ("resync_interval", "1s"),
    ("kv", (("role", "edge"),)), ("kv_prefix", "x"), ("name", "Other"), ("port", 8600),
])
def test_check_key_ignores_other_options(field, value):
    """Other options keep a 'discovery set check' override."""
    base = Settings()
    assert base.check_key() == dataclasses.replace(base, **{field: value}).check_key()


# -- discovery show settings -----------------------------------------------------------------

def test_report_rows_of_the_new_options(host, confdir):
    """'discovery show settings' shows each new option with its source, [kv] as written."""
    text = ("[consul]\ncheck = yes\ncheck_type = both\ncheck_scheme = https\n"
            "check_tls_server_name = pbx.example.net\ncheck_tls_skip_verify = yes\n"
            "check_ttl = 9s\nkv_prefix = pbx/${ID}\nkv_session_ttl = 1m\n"
            "[kv]\nrole = edge ${NAME}\nprice = 5$$\n")
    http = "[general]\nenabled = yes\ntlsenable = yes\ntlsbindaddr = 0.0.0.0:8444\n"
    settings, _ = load(host, confdir, text, http=http)
    rows = settings_report(settings)
    shown = {option: (value, source) for option, value, source in rows}
    assert shown["check_type"] == ("both", f"{CONF}:3")
    assert shown["check_scheme"] == ("https", f"{CONF}:4")
    assert shown["check_http_port"] == ("8444", "http.conf:4 (Asterisk's TLS port)")
    assert shown["check_tls_server_name"] == ("pbx.example.net", f"{CONF}:5")
    assert shown["check_tls_skip_verify"] == ("yes", f"{CONF}:6")
    assert shown["check_ttl"] == ("9s", f"{CONF}:7")
    assert shown["kv_prefix"] == ("pbx/${ID}", f"{CONF}:8")
    assert shown["kv_session_ttl"] == ("1m", f"{CONF}:9")
    assert shown["kv role"] == ("edge ${NAME}", f"{CONF}:11")  # as written, not rendered
    assert shown["kv price"] == ("5$$", f"{CONF}:12")
    assert "kv" not in shown
    options = [row[0] for row in rows]
    assert options.index("check") < options.index("check_type") < options.index("check_scheme") \
        < options.index("check_http_port") < options.index("check_tls_server_name") \
        < options.index("check_tls_skip_verify") < options.index("check_interval") \
        < options.index("check_ttl") < options.index("check_deregister_after")
    assert options[-4:] == ["kv_prefix", "kv_session_ttl", "kv role", "kv price"]


def test_report_rows_of_the_defaults(host, confdir):
    settings, _ = consul(host, confdir)
    rows = settings_report(settings)
    shown = {option: (value, source) for option, value, source in rows}
    assert shown["check_type"] == ("ttl", "default (auto: ttl, the EID check could not pass: "
                                          "Asterisk's HTTP server is not enabled in http.conf "
                                          "([general] enabled = yes))")
    assert shown["check_scheme"] == ("http", "default")
    assert shown["check_tls_server_name"] == ("(none: the address in the check URL)", "default")
    assert shown["check_tls_skip_verify"] == ("no", "default")
    assert shown["check_ttl"] == ("30s", "default")
    assert shown["kv_prefix"] == ("${ID}", "default")
    assert shown["kv_session_ttl"] == ("30s", "default")
    assert rows[-1] == ("kv", "(none: no [kv] section)", "default")
    assert not [option for option in shown if option.startswith("kv ")]


# -- a check that cannot pass is said at load (http.conf's bindport and bindaddr) -----------

def test_check_http_port_follows_http_conf_bindport_unless_set(host, confdir):
    http = "[general]\nenabled = yes\nbindaddr = 0.0.0.0\nbindport = 8090\n"
    settings, warnings = consul(host, confdir, http=http)
    assert settings.check_http_port == 8090 and warnings == []
    assert settings.sources["check_http_port"] == "http.conf:4 (http.conf bindport)"
    # A port in bindaddr wins over bindport, as in Asterisk.
    settings, _ = consul(host, confdir, http="[general]\nenabled = yes\nbindaddr = "
                                             "0.0.0.0:8091\nbindport = 8090\n")
    assert settings.check_http_port == 8091
    # Set in the file: the file wins.
    settings, _ = consul(host, confdir, "check_http_port = 9000", http=http)
    assert settings.check_http_port == 9000 and settings.sources["check_http_port"] == f"{CONF}:2"


def test_check_type_auto_is_both_when_the_agent_can_reach_the_http_server(host, confdir):
    for bind, ip in [("0.0.0.0", "192.0.2.10"), ("::", "192.0.2.10"), ("[::]", "2001:db8::1"),
                     ("192.0.2.10", "192.0.2.10"), ("127.0.0.1", "127.0.0.1")]:
        settings, warnings = consul(host, confdir, f"discovery_ip = {ip}",
                                    http=f"[general]\nenabled = yes\nbindaddr = {bind}\n")
        assert (settings.check, settings.check_type, settings.check_problem) == \
            (True, "both", ""), (bind, ip)
        assert settings.sources["check_type"].startswith("default (auto: ")
        assert warnings == []


def test_check_type_auto_is_ttl_when_the_http_server_cannot_answer(host, confdir):
    """No HTTP server, none listening (no bindaddr), or one on another address: the TTL check
    alone (it needs no HTTP server), and the source says why."""
    cases = [("", "Asterisk's HTTP server is not enabled in http.conf"),
             ("[general]\nenabled = yes\n", "sets no [general] bindaddr"),
             ("[general]\nenabled = yes\nbindaddr = 127.0.0.1\n",
              "http.conf:3: bindaddr = 127.0.0.1: Asterisk's HTTP server does not listen at "
              "discovery_ip 192.0.2.10"),
             ("[general]\nenabled = yes\nbindaddr = 0.0.0.0\n", "does not listen at "
              "discovery_ip 2001:db8::1")]
    for http, why in cases:
        ip = "2001:db8::1" if "0.0.0.0" in http else "192.0.2.10"
        settings, warnings = consul(host, confdir, f"discovery_ip = {ip}", http=http)
        assert settings.check_type == "ttl", http
        assert why in settings.sources["check_type"], settings.sources["check_type"]
        assert warnings == []


def test_an_eid_check_that_cannot_pass_is_warned_about_naming_bindaddr_and_discovery_ip(
        host, confdir):
    """Asterisk's usual bindaddr = 127.0.0.1 with a real discovery_ip: the explicit EID check
    is critical from the first poll. Said at load, naming both, and kept for the status."""
    settings, warnings = consul(host, confdir, "discovery_ip = 192.0.2.10", "check_type = both",
                                http="[general]\nenabled = yes\nbindaddr = 127.0.0.1\n")
    assert warnings == [f"{CONF}:3: [consul] check_type = both: the EID check will fail: "
                        f"http.conf:3: bindaddr = 127.0.0.1: Asterisk's HTTP server does not "
                        f"listen at discovery_ip 192.0.2.10, where the agent polls it "
                        f"({CONF}:2)"]
    assert "bindaddr = 127.0.0.1" in settings.check_problem
    # The TLS server: tlsbindaddr when set.
    settings, warnings = consul(host, confdir, "discovery_ip = 192.0.2.10", "check_type = http",
                                "check_scheme = https",
                                http="[general]\nenabled = yes\nbindaddr = 0.0.0.0\n"
                                     "tlsenable = yes\ntlsbindaddr = 127.0.0.1:8089\n")
    assert len(warnings) == 1 and "tlsbindaddr = 127.0.0.1:8089" in warnings[0]
    assert settings.check_http_port == 8089
    # check = no: nothing to warn about.
    _, warnings = consul(host, confdir, "discovery_ip = 192.0.2.10", "check_type = http",
                         "check = no", http="[general]\nenabled = yes\nbindaddr = 127.0.0.1\n")
    assert warnings == []


def test_the_status_says_why_the_eid_check_cannot_pass():
    from asterisk_consul.registrar.status import StatusSnapshot
    from asterisk_consul.render import _check_rows

    status = StatusSnapshot("http://127.0.0.1:8500", "pbx-1", "Asterisk", "192.0.2.10", 5060,
                            checks_on=True, check_type="both",
                            check_problem="http.conf:3: bindaddr = 127.0.0.1: ...")
    assert ("  warning", "the EID check cannot pass: http.conf:3: bindaddr = 127.0.0.1: ...") in \
        _check_rows(status)


def test_the_original_modules_own_options_are_named_not_unknown(host, confdir):
    """debug, register_url and deregister_url of the original module: loaded, each named as
    the original's and why it is not needed (docs/migrating.md)."""
    settings, warnings = load(host, confdir, "[general]\ndebug = yes\n[consul]\n"
                              "register_url = http://127.0.0.1:8500/v1/agent/service/register\n"
                              "deregister_url = http://127.0.0.1:8500/v1/agent/service/deregister\n")
    assert [w.split(":")[1] for w in warnings] == ["2", "4", "5"]
    assert all("an option of the original C module, not used by this one (ignored)" in w
               and "unknown" not in w for w in warnings), warnings
    assert "[general] debug" in warnings[0] and "Asterisk's logger" in warnings[0]
    assert "[consul] register_url" in warnings[1] and "[consul] deregister_url" in warnings[2]
