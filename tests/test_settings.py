"""load_settings: every option, good and bad values, fallbacks, sources, and the report."""

import os
import re
import socket
import uuid

import pytest

from asterisk_consul import netinfo
from asterisk_consul.config import ConfigError
from asterisk_consul.loader import load_settings
from asterisk_consul.resolve import ASTDB_FAMILY, ASTDB_SERVICE_ID_KEY
from asterisk_consul.settings import Settings, settings_report
from asterisk_consul.values import parse_go_duration
from tests.standin import StandInHost

CONF = "res_discovery_consul.conf"
EID = "02:42:ac:11:00:02"
SECRET = "b1gs3cret-0000-token"


@pytest.fixture
def confdir(tmp_path):
    return tmp_path


@pytest.fixture
def host(confdir):
    return StandInHost(config_dir=str(confdir), eid=EID)


def write(confdir, text, name=CONF):
    path = confdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def load(host, confdir, text, env=None, http=None):
    write(confdir, text)
    if http is not None:
        write(confdir, http, "http.conf")
    return load_settings(host, env or {})


def consul(host, confdir, *lines, env=None, http=None):
    """Load with the given lines in [consul] (line 2 is the first of them)."""
    return load(host, confdir, "[consul]\n" + "\n".join(lines) + "\n", env, http)


def error_of(host, confdir, *lines, env=None):
    with pytest.raises(ConfigError) as info:
        consul(host, confdir, *lines, env=env)
    return str(info.value)


# -- the file itself ---------------------------------------------------------------------

def test_missing_file_says_where_it_looked(host, confdir):
    with pytest.raises(ConfigError) as info:
        load_settings(host, {})
    assert str(confdir / CONF) in str(info.value)


def test_empty_file_gives_defaults_and_a_warning(host, confdir):
    settings, warnings = load(host, confdir, "")
    # check_type = auto: no http.conf, no HTTP server: the TTL check alone
    assert settings == Settings(service_id=EID, check_type="ttl")
    assert len(warnings) == 1 and CONF in warnings[0] and "defaults" in warnings[0]
    assert {source.split(" ")[0] for source in settings.sources.values()} == {"default"}


def test_defaults_match_the_original_module(host, confdir):
    settings, warnings = load(host, confdir, "[general]\n[consul]\n")
    assert warnings == []
    assert (settings.enabled, settings.scheme, settings.host, settings.port) == (True, "http", "127.0.0.1", 8500)
    assert settings.token == "" and settings.consul_timeout_ms == 2000
    assert settings.service_id == EID  # id = asterisk -> the EID
    assert settings.name == "Asterisk" and settings.tags == ("asterisk",)
    assert (settings.discovery_ip, settings.discovery_port, settings.discovery_interface) == \
        ("127.0.0.1", 5060, "eth0")
    assert settings.metadata_profile == "" and settings.metadata == ()
    # The original's check = no left a dead box passing for ever: checks are on by default
    # since 0.2.0 (docs/migrating.md); with no HTTP server, the TTL check alone.
    assert (settings.check, settings.check_type, settings.check_http_port) == (True, "ttl", 8088)
    assert (settings.check_interval, settings.check_timeout, settings.check_deregister_after) == \
        ("15s", "3s", "1m")  # the original's 30s, which Consul raised to its minimum 1m anyway
    assert (settings.http_prefix, settings.ari_port, settings.ari_scheme) == ("", 8088, "http")
    assert settings.resync_interval == "30s"


def test_syntax_error_propagates(host, confdir):
    with pytest.raises(ConfigError, match=r"res_discovery_consul.conf:2: "):
        load(host, confdir, "[consul]\nbroken\n")


def test_unknown_sections_and_options_warn_with_location(host, confdir):
    _, warnings = load(host, confdir, "[general]\nverbose = 1\n[consul]\nprot = 1\n[extra]\n")
    assert f"{CONF}:2: [general] unknown option 'verbose' (ignored)" in warnings
    assert f"{CONF}:4: [consul] unknown option 'prot' (ignored)" in warnings
    assert f"{CONF}:5: unknown section [extra] (ignored)" in warnings


def test_unused_metadata_sections_are_not_unknown(host, confdir):
    _, warnings = load(host, confdir, "[consul]\n[metadata_spare]\ngroup = x\n")
    assert warnings == []


def test_duplicate_option_warns_and_last_wins(host, confdir):
    settings, warnings = consul(host, confdir, "port = 1000", "port = 2000")
    assert settings.port == 2000
    assert settings.sources["port"] == f"{CONF}:3"
    assert any("port is set more than once" in w and f"{CONF}:3" in w for w in warnings)


def test_option_names_are_case_insensitive(host, confdir):
    settings, warnings = load(host, confdir, "[Consul]\nPort = 9000\n")
    assert settings.port == 9000 and warnings == []


def test_templates_and_includes_work_for_settings(host, confdir):
    write(confdir, "[consul]\nport = 8600\n", "consul.d/port.conf")
    settings, _ = load(host, confdir, "[base](!)\nhost = 10.0.0.9\n[consul](base)\n"
                                      "#include consul.d/*.conf\n")
    assert (settings.host, settings.port) == ("10.0.0.9", 8600)
    assert settings.sources["host"] == f"{CONF}:2"
    assert settings.sources["port"] == os.path.join("consul.d", "port.conf") + ":2"


# -- [general] enabled -------------------------------------------------------------------

@pytest.mark.parametrize("word, expected", [
    ("yes", True), ("no", False), ("true", True), ("false", False), ("on", True), ("off", False),
    ("1", True), ("0", False), ("YES", True), ("Off", False), ("y", True), ("n", False),
])
def test_enabled_booleans(host, confdir, word, expected):
    settings, _ = load(host, confdir, f"[general]\nenabled = {word}\n")
    assert settings.enabled is expected
    assert settings.sources["enabled"] == f"{CONF}:2"


def test_enabled_bad_value(host, confdir):
    with pytest.raises(ConfigError) as info:
        load(host, confdir, "[general]\nenabled = maybe\n")
    assert str(info.value).startswith(f"{CONF}:2: [general] enabled = 'maybe': must be yes or no")


def test_disabled_module_checks_nothing_else(host, confdir, monkeypatch):
    monkeypatch.setattr(netinfo, "interface_address", pytest.fail)
    settings, _ = load(host, confdir, "[general]\nenabled = no\n[consul]\nport = bad\n"
                                      "discovery_ip = auto\nid = auto\n")
    assert settings.enabled is False
    assert host.astdb == {}


# -- numbers -----------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["port", "discovery_port", "check_http_port"])
@pytest.mark.parametrize("good", ["1", "5060", "65535", "08500"])
def test_ports_good(host, confdir, option, good):
    settings, _ = consul(host, confdir, f"{option} = {good}")
    assert getattr(settings, option) == int(good)
    assert settings.sources[option] == f"{CONF}:2"


@pytest.mark.parametrize("option", ["port", "discovery_port", "check_http_port"])
@pytest.mark.parametrize("bad", ["abc", "0", "65536", "-1", "+80", "80.0", "8_0", "0x50", "٥"])
def test_ports_bad(host, confdir, option, bad):
    message = error_of(host, confdir, f"{option} = {bad}")
    auto = ", or auto (the SIP stack's port)" if option == "discovery_port" else ""
    assert message == \
        f"{CONF}:2: [consul] {option} = '{bad}': must be a whole number from 1 to 65535{auto}"


def test_port_error_message_exactly_as_documented(host, confdir):
    text = "[general]\n\n[consul]\nhost = 127.0.0.1\n\n\nport = abc\n"
    with pytest.raises(ConfigError) as info:
        load(host, confdir, text)
    assert str(info.value) == \
        "res_discovery_consul.conf:7: [consul] port = 'abc': must be a whole number from 1 to 65535"


@pytest.mark.parametrize("good", ["1", "2000", "60000"])
def test_consul_timeout_ms_good(host, confdir, good):
    assert consul(host, confdir, f"consul_timeout_ms = {good}")[0].consul_timeout_ms == int(good)


@pytest.mark.parametrize("bad", ["0", "60001", "2s", "fast"])
def test_consul_timeout_ms_bad(host, confdir, bad):
    assert "must be a whole number from 1 to 60000" in error_of(host, confdir, f"consul_timeout_ms = {bad}")


def test_empty_value_means_not_set(host, confdir):
    settings, _ = consul(host, confdir, "port =", "check_interval =", "name =")
    assert (settings.port, settings.check_interval, settings.name) == (8500, "15s", "Asterisk")
    assert settings.sources["port"] == "default"


# -- durations ---------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["check_interval", "check_timeout", "check_deregister_after",
                                    "resync_interval"])
@pytest.mark.parametrize("good", ["10s", "1m30s", "500ms", "1h", "1.5s", "2h45m", "90m", ".5s"])
def test_durations_good(host, confdir, option, good):
    settings, _ = consul(host, confdir, f"{option} = {good}")
    assert getattr(settings, option) == good
    assert settings.sources[option] == f"{CONF}:2"


@pytest.mark.parametrize("option", ["check_interval", "check_timeout", "check_deregister_after",
                                    "resync_interval"])
def test_duration_bare_number_says_the_expected_form(host, confdir, option):
    message = error_of(host, confdir, f"{option} = 10")
    assert message.startswith(f"{CONF}:2: [consul] {option} = '10': ")
    assert "unit" in message and "10s" in message and "1m30s" in message


@pytest.mark.parametrize("bad", ["10 s", "10sec", "s", "1d", "-5s", "0s", "0", "1m-30s", "1.2.3s",
                                 "10S", "."])
def test_durations_bad(host, confdir, bad):
    message = error_of(host, confdir, f"check_interval = {bad}")
    assert f"[consul] check_interval = '{bad}':" in message
    assert "duration" in message


def test_deregister_below_one_minute_warns_when_check_is_on(host, confdir):
    _, warnings = consul(host, confdir, "check = yes", "check_deregister_after = 45s")
    assert any(f"{CONF}:3" in w and "Consul will use 1m" in w for w in warnings)
    _, warnings = consul(host, confdir, "check = yes", "check_deregister_after = 1m")
    assert not any("1m" in w for w in warnings)


def test_the_default_deregister_after_never_warns(host, confdir):
    for check in ("no", "yes"):
        _, warnings = consul(host, confdir, f"check = {check}")
        assert not any("Consul will use 1m" in w for w in warnings)


def test_a_short_deregister_after_warns_only_with_check(host, confdir):
    _, warnings = consul(host, confdir, "check = no", "check_deregister_after = 30s")
    assert not any("Consul will use 1m" in w for w in warnings)
    _, warnings = consul(host, confdir, "check = yes", "check_deregister_after = 30s")
    assert any("Consul will use 1m" in w for w in warnings)


@pytest.mark.parametrize("text, nanoseconds", [
    ("0", 0), ("+0", 0), ("-0", 0), ("1ns", 1), ("1us", 1000), ("1µs", 1000), ("1μs", 1000),
    ("1.5h", 5400 * 10**9), ("1m30s", 90 * 10**9), ("5.s", 5 * 10**9), ("-1s", -10**9),
    ("1h1h", 7200 * 10**9), ("9223372036854775807ns", (1 << 63) - 1),
    ("-9223372036854775808ns", -(1 << 63)), ("0.000000001s", 1), ("0.1ns", 0),
])
def test_go_duration_values(text, nanoseconds):
    assert parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize("text", ["", "+", "-", ".", ".s", "1", "1.0", "s1", "1x", "9223372036854775808ns",
                                  "2562048h", "1 s", " 1s", "1s ", "--1s", "1e3s"])
def test_go_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


# -- agent address: scheme, host, CONSUL_HTTP_ADDR ---------------------------------------

@pytest.mark.parametrize("value, expected", [("http", "http"), ("https", "https"), ("HTTPS", "https")])
def test_scheme_good(host, confdir, value, expected):
    assert consul(host, confdir, f"scheme = {value}")[0].scheme == expected


def test_scheme_bad(host, confdir):
    assert "[consul] scheme = 'ftp': must be http or https" in error_of(host, confdir, "scheme = ftp")


def test_https_without_port_uses_8501(host, confdir):
    settings, _ = consul(host, confdir, "scheme = https")
    assert settings.port == 8501 and settings.agent_url == "https://127.0.0.1:8501"


@pytest.mark.parametrize("value, expected", [
    ("10.1.2.3", "10.1.2.3"), ("consul.service.consul", "consul.service.consul"), ("consul", "consul"),
    ("::1", "::1"), ("[::1]", "::1"), ("consul_agent", "consul_agent"),
])
def test_host_good(host, confdir, value, expected):
    assert consul(host, confdir, f"host = {value}")[0].host == expected


@pytest.mark.parametrize("bad", ["10.0.0", "999.1.1.1", "consul:8500", "http://consul", "a b", "-bad-"])
def test_host_bad(host, confdir, bad):
    assert "must be an IPv4 or IPv6 address or a host name" in error_of(host, confdir, f"host = {bad}")


@pytest.mark.parametrize("addr, scheme, host_, port", [
    ("10.0.0.5:8600", "http", "10.0.0.5", 8600),
    ("http://consul.local:8500", "http", "consul.local", 8500),
    ("https://consul.local:8501", "https", "consul.local", 8501),
    ("https://consul.local", "https", "consul.local", 8501),
    ("[::1]:8500", "http", "::1", 8500),
    ("consul.local", "http", "consul.local", 8500),
    ("HTTPS://10.0.0.1:9000/", "https", "10.0.0.1", 9000),
])
def test_consul_http_addr_fallback(host, confdir, addr, scheme, host_, port):
    settings, _ = consul(host, confdir, env={"CONSUL_HTTP_ADDR": addr})
    assert (settings.scheme, settings.host, settings.port) == (scheme, host_, port)
    assert settings.sources["host"] == "env CONSUL_HTTP_ADDR"


def test_config_file_wins_over_consul_http_addr_per_option(host, confdir):
    settings, _ = consul(host, confdir, "host = 10.9.9.9", env={"CONSUL_HTTP_ADDR": "https://1.2.3.4:8443"})
    assert (settings.scheme, settings.host, settings.port) == ("https", "10.9.9.9", 8443)
    assert settings.sources["host"] == f"{CONF}:2"
    assert settings.sources["port"] == settings.sources["scheme"] == "env CONSUL_HTTP_ADDR"


def test_consul_http_addr_unused_when_file_sets_everything(host, confdir):
    settings, _ = consul(host, confdir, "scheme = http", "host = h", "port = 1",
                         env={"CONSUL_HTTP_ADDR": "unix:///broken"})
    assert settings.agent_url == "http://h:1"


@pytest.mark.parametrize("bad", ["unix:///var/run/consul.sock", "host:port", "host:99999", "[::1"])
def test_consul_http_addr_bad(host, confdir, bad):
    with pytest.raises(ConfigError) as info:
        consul(host, confdir, env={"CONSUL_HTTP_ADDR": bad})
    assert str(info.value).startswith(f"env CONSUL_HTTP_ADDR = '{bad}':")


# -- token -------------------------------------------------------------------------------

def test_token_from_file(host, confdir):
    settings, _ = consul(host, confdir, f"token = {SECRET}")
    assert settings.token == SECRET
    assert settings.sources["token"] == f"{CONF}:2"
    assert SECRET not in repr(settings)


def test_token_file_relative_and_absolute(host, confdir):
    (confdir / "consul.token").write_text(f"\n  {SECRET}  \n")
    settings, _ = consul(host, confdir, "token_file = consul.token")
    assert settings.token == SECRET
    assert settings.sources["token"].startswith(f"{CONF}:2")
    settings, _ = consul(host, confdir, f"token_file = {confdir / 'consul.token'}")
    assert settings.token == SECRET


def test_unreadable_token_file_is_named_by_its_line_never_by_its_value(host, confdir):
    """The value may be a token pasted where its file's name belongs: never in a message."""
    message = error_of(host, confdir, "token_file = /nonexistent/token")
    assert message.startswith(f"{CONF}:2: [consul] token_file: cannot read the token file")
    assert "No such file" in message and "nonexistent" not in message
    message = error_of(host, confdir, f"token_file = {SECRET}")
    assert SECRET not in message and "the name is not shown" in message
    with pytest.raises(ConfigError) as caught:
        consul(host, confdir, "host = 127.0.0.1", env={"CONSUL_HTTP_TOKEN_FILE": SECRET})
    assert SECRET not in str(caught.value)


def test_empty_token_file_warns(host, confdir):
    (confdir / "empty.token").write_text("\n")
    settings, warnings = consul(host, confdir, "token_file = empty.token")
    assert settings.token == "" and any("empty" in w for w in warnings)


def test_token_and_token_file_together_is_an_error(host, confdir):
    (confdir / "t").write_text(SECRET)
    message = error_of(host, confdir, f"token = {SECRET}", "token_file = t")
    assert "both" in message and SECRET not in message


def test_bad_token_is_refused_without_showing_it(host, confdir):
    message = error_of(host, confdir, f"token = {SECRET}\x01x")
    assert message.startswith(f"{CONF}:2: [consul] token:")
    assert SECRET not in message


def test_bad_token_in_token_file_is_refused_without_showing_it(host, confdir):
    (confdir / "t").write_text(f"{SECRET} and more\n")
    message = error_of(host, confdir, "token_file = t")
    assert SECRET not in message and "t" in message


def test_token_env_fallbacks(host, confdir):
    settings, _ = consul(host, confdir, env={"CONSUL_HTTP_TOKEN": SECRET})
    assert settings.token == SECRET and settings.sources["token"] == "env CONSUL_HTTP_TOKEN"

    (confdir / "envtoken").write_text("from-file\n")
    env = {"CONSUL_HTTP_TOKEN": SECRET, "CONSUL_HTTP_TOKEN_FILE": str(confdir / "envtoken")}
    settings, _ = consul(host, confdir, env=env)
    assert settings.token == "from-file"  # as Consul's clients: the file wins
    assert settings.sources["token"].startswith("env CONSUL_HTTP_TOKEN_FILE")


def test_empty_env_token_file_falls_back_to_env_token(host, confdir):
    (confdir / "envtoken").write_text("")
    env = {"CONSUL_HTTP_TOKEN": SECRET, "CONSUL_HTTP_TOKEN_FILE": str(confdir / "envtoken")}
    settings, _ = consul(host, confdir, env=env)
    assert settings.token == SECRET


def test_unreadable_env_token_file_is_named_by_its_variable_never_by_its_value(host, confdir):
    with pytest.raises(ConfigError) as info:
        consul(host, confdir, env={"CONSUL_HTTP_TOKEN_FILE": "/nonexistent/t"})
    assert "CONSUL_HTTP_TOKEN_FILE" in str(info.value) and "/nonexistent/t" not in str(info.value)


def test_config_token_wins_over_env(host, confdir):
    settings, _ = consul(host, confdir, "token = fromconf", env={"CONSUL_HTTP_TOKEN": SECRET})
    assert settings.token == "fromconf"


def test_empty_config_token_lets_env_in(host, confdir):
    settings, _ = consul(host, confdir, "token =", env={"CONSUL_HTTP_TOKEN": SECRET})
    assert settings.token == SECRET


def test_token_never_in_warnings_or_report(host, confdir):
    settings, warnings = load(host, confdir, f"[consul]\ntoken = {SECRET}\nbogus = 1\n[x]\n"
                                             "[general]\nenabled = yes\n")
    assert not any(SECRET in w for w in warnings)
    assert not any(SECRET in cell for row in settings_report(settings) for cell in row)


# -- the service: id, name, tags -----------------------------------------------------------

def test_id_asterisk_is_the_eid(host, confdir):
    settings, _ = consul(host, confdir, "id = asterisk")
    assert settings.service_id == EID and settings.sources["service_id"] == f"{CONF}:2"


def test_id_literal(host, confdir):
    assert consul(host, confdir, "id = pbx-01")[0].service_id == "pbx-01"


def test_id_with_slash_is_refused(host, confdir):
    assert "[consul] id = 'a/b':" in error_of(host, confdir, "id = a/b")


def test_id_auto_makes_a_uuid_once_and_keeps_it_in_astdb(host, confdir):
    first, _ = consul(host, confdir, "id = auto")
    assert uuid.UUID(first.service_id).version == 4
    assert host.astdb[(ASTDB_FAMILY, ASTDB_SERVICE_ID_KEY)] == first.service_id
    assert first.sources["service_id"] != "astdb"

    again, _ = consul(host, confdir, "id = auto")  # a restart: same astdb
    assert again.service_id == first.service_id
    assert again.sources["service_id"] == "astdb"


def test_id_auto_reuses_a_stored_id(host, confdir):
    host.astdb[(ASTDB_FAMILY, ASTDB_SERVICE_ID_KEY)] = "kept-id"
    settings, _ = consul(host, confdir, "id = auto")
    assert settings.service_id == "kept-id" and settings.sources["service_id"] == "astdb"


def test_id_auto_warns_when_astdb_cannot_keep_it(host, confdir):
    host.db_put_works = False
    settings, warnings = consul(host, confdir, "id = auto")
    assert uuid.UUID(settings.service_id)
    assert any("astdb" in w and "new ID" in w for w in warnings)


def test_name_auto_is_the_host_name(host, confdir, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "pbx-7")
    settings, warnings = consul(host, confdir, "name = auto")
    assert settings.name == "pbx-7" and warnings == []
    assert settings.sources["name"].startswith(f"{CONF}:2")


def test_name_literal_and_dns_warning(host, confdir):
    settings, warnings = consul(host, confdir, "name = Asterisk-Voice")
    assert settings.name == "Asterisk-Voice" and warnings == []
    settings, warnings = consul(host, confdir, "name = voice.pbx")
    assert settings.name == "voice.pbx" and any("DNS" in w for w in warnings)


@pytest.mark.parametrize("value, tags", [
    ("asterisk", ("asterisk",)),
    ("asterisk,voice,production", ("asterisk", "voice", "production")),
    (" a , b ,, a , c ,", ("a", "b", "c")),
    ("", ()),
])
def test_tags(host, confdir, value, tags):
    assert consul(host, confdir, f"tags = {value}")[0].tags == tags


# -- discovery address -------------------------------------------------------------------

@pytest.mark.parametrize("value", ["192.0.2.10", "2001:db8::1", "pbx.example.com"])
def test_discovery_ip_explicit_good(host, confdir, value):
    settings, _ = consul(host, confdir, f"discovery_ip = {value}")
    assert settings.discovery_ip == value and settings.sources["discovery_ip"] == f"{CONF}:2"


@pytest.mark.parametrize("bad", ["192.0.2", "300.1.1.1", "not an ip", "[::1"])
def test_discovery_ip_explicit_bad(host, confdir, bad):
    assert f"[consul] discovery_ip = '{bad}':" in error_of(host, confdir, f"discovery_ip = {bad}")


def test_discovery_ip_auto_on_loopback(host, confdir):
    settings, _ = consul(host, confdir, "discovery_ip = auto", "discovery_interface = lo")
    assert settings.discovery_ip == "127.0.0.1"
    assert settings.sources["discovery_ip"].startswith(f"{CONF}:2")


def test_discovery_ip_auto_missing_interface_is_an_error(host, confdir):
    message = error_of(host, confdir, "discovery_ip = auto", "discovery_interface = nosuch0")
    assert message.startswith(f"{CONF}:2: [consul] discovery_ip = 'auto':")
    assert "nosuch0" in message and "does not exist" in message


def test_discovery_ip_auto_interface_without_address(host, confdir, monkeypatch):
    def no_address(name):
        raise netinfo.InterfaceAddressError(f"interface '{name}' has no IPv4 address and no global IPv6 address")
    monkeypatch.setattr(netinfo, "interface_address", no_address)
    message = error_of(host, confdir, "discovery_ip = auto", "discovery_interface = dummy0")
    assert "dummy0" in message and "no IPv4 address" in message


def test_discovery_ip_auto_uses_default_interface_eth0(host, confdir, monkeypatch):
    asked = []
    monkeypatch.setattr(netinfo, "interface_address", lambda name: asked.append(name) or "192.0.2.7")
    settings, _ = consul(host, confdir, "discovery_ip = auto")
    assert asked == ["eth0"] and settings.discovery_ip == "192.0.2.7"


@pytest.mark.parametrize("bad", ["averyveryverylongname", "eth 0", "a/b"])
def test_discovery_interface_bad(host, confdir, bad):
    assert "[consul] discovery_interface" in error_of(host, confdir, f"discovery_interface = {bad}")


# -- metadata ----------------------------------------------------------------------------

def test_metadata_profile_in_file_order(host, confdir):
    text = ("[consul]\nmetadata_profile = voice\n[metadata_voice]\nweight = 10\ngroup = edge\n"
            "priority = 1\nmax_calls = 300\nflags = rec,t38\nextra = 1\n")
    settings, warnings = load(host, confdir, text)
    assert settings.metadata_profile == "voice"
    assert settings.metadata == (("weight", "10"), ("group", "edge"), ("priority", "1"),
                                 ("max_calls", "300"), ("flags", "rec,t38"))
    assert settings.sources["metadata.group"] == f"{CONF}:5"
    assert warnings == [f"{CONF}:9: [metadata_voice] unknown option 'extra' "
                        "(ignored; known: group, priority, weight, max_calls, flags)"]


def test_metadata_profile_from_template(host, confdir):
    text = ("[consul]\nmetadata_profile = a\n[meta](!)\ngroup = g\n[metadata_a](meta)\nweight = 2\n")
    settings, _ = load(host, confdir, text)
    assert settings.metadata == (("group", "g"), ("weight", "2"))


def test_metadata_profile_missing_section_is_an_error(host, confdir):
    message = error_of(host, confdir, "metadata_profile = nothere")
    assert message.startswith(f"{CONF}:2: [consul] metadata_profile = 'nothere':")
    assert "[metadata_nothere]" in message


def test_metadata_value_too_long(host, confdir):
    text = "[consul]\nmetadata_profile = a\n[metadata_a]\ngroup = " + "x" * 513 + "\n"
    with pytest.raises(ConfigError, match=r":4: \[metadata_a\] group"):
        load(host, confdir, text)


def test_no_profile_no_metadata(host, confdir):
    settings, _ = consul(host, confdir, "metadata_profile =")
    assert settings.metadata == ()


# -- check -------------------------------------------------------------------------------

@pytest.mark.parametrize("word, expected", [("yes", True), ("no", False), ("on", True), ("0", False)])
def test_check_bool(host, confdir, word, expected):
    http = "[general]\nenabled = yes\n"
    assert consul(host, confdir, f"check = {word}", http=http)[0].check is expected


def test_check_bad(host, confdir):
    assert "[consul] check = 'sometimes': must be yes or no" in error_of(host, confdir, "check = sometimes")


def test_check_without_http_server_warns(host, confdir):
    _, warnings = consul(host, confdir, "check = yes", "check_type = http",
                         "check_deregister_after = 1m")
    assert any("HTTP server is not enabled" in w for w in warnings)
    _, warnings = consul(host, confdir, "check = yes", "check_type = http",
                         "check_deregister_after = 1m",
                         http="[general]\nenabled = yes\nbindaddr = 127.0.0.1\n")
    assert warnings == []


# -- http.conf ---------------------------------------------------------------------------

def test_http_conf_missing_gives_defaults(host, confdir):
    settings, warnings = consul(host, confdir)
    assert (settings.http_prefix, settings.ari_port, settings.ari_scheme) == ("", 8088, "http")
    assert settings.sources["ari_port"] == "default" and warnings == []


def test_http_conf_plain(host, confdir):
    http = "[general]\nenabled = yes\nbindport = 8080\nprefix = /asterisk/\n"
    settings, _ = consul(host, confdir, http=http)
    assert (settings.http_prefix, settings.ari_port, settings.ari_scheme) == ("asterisk", 8080, "http")
    assert settings.sources["ari_port"] == "http.conf:3"
    assert settings.sources["http_prefix"] == "http.conf:4"


def test_http_conf_tls(host, confdir):
    http = "[general]\nbindport = 8080\ntlsenable = yes\ntlsbindport = 8443\n"
    settings, _ = consul(host, confdir, http=http)
    assert (settings.ari_scheme, settings.ari_port) == ("https", 8443)
    assert settings.sources["ari_port"] == "http.conf:4"
    assert settings.sources["ari_scheme"] == "http.conf:3"


def test_http_conf_tls_port_from_tlsbindaddr_or_default(host, confdir):
    settings, _ = consul(host, confdir, http="[general]\ntlsenable = yes\ntlsbindaddr = 0.0.0.0:8444\n")
    assert (settings.ari_scheme, settings.ari_port) == ("https", 8444)
    settings, _ = consul(host, confdir, http="[general]\ntlsenable = yes\n")
    assert (settings.ari_scheme, settings.ari_port) == ("https", 8089)


def test_http_conf_tls_disabled_uses_bindport(host, confdir):
    settings, _ = consul(host, confdir, http="[general]\nbindport = 8081\ntlsenable = no\ntlsbindport = 8443\n")
    assert (settings.ari_scheme, settings.ari_port) == ("http", 8081)


def test_http_conf_bad_values_warn(host, confdir):
    settings, warnings = consul(host, confdir, http="[general]\nbindport = eighty\n")
    assert settings.ari_port == 8088
    assert any(w.startswith("http.conf:2: [general] bindport = 'eighty'") for w in warnings)


def test_http_conf_syntax_error_warns(host, confdir):
    settings, warnings = consul(host, confdir, http="[general\n")
    assert settings.ari_port == 8088 and any(w.startswith("http.conf:1:") for w in warnings)


# -- sources and the report ----------------------------------------------------------------

def test_every_field_has_a_source(host, confdir):
    settings, _ = consul(host, confdir, "port = 8600")
    fields = set(Settings.__dataclass_fields__) - {"sources"}
    assert fields <= set(settings.sources)
    assert settings.sources["port"] == f"{CONF}:2"
    assert settings.sources["host"] == "default"


def test_report_order_and_token_display(host, confdir):
    settings, _ = consul(host, confdir, f"token = {SECRET}", "tags = a,b", "check = yes",
                         "metadata_profile = p", "[metadata_p]", "group = g")
    rows = settings_report(settings)
    options = [row[0] for row in rows]
    assert options[:7] == ["enabled", "scheme", "host", "port", "token", "token_file",
                           "consul_timeout_ms"]
    assert options.index("id") < options.index("discovery_ip") < options.index("check")
    assert options.index("metadata group") == options.index("metadata_profile") + 1
    shown = {row[0]: (row[1], row[2]) for row in rows}
    assert shown["token"] == (f"(set, {len(SECRET)} chars)", f"{CONF}:2")
    assert shown["tags"] == ("a, b", f"{CONF}:3")
    assert shown["check"][0] == "yes"
    assert shown["id"] == (EID, "default")


def test_report_without_token(host, confdir):
    settings, _ = consul(host, confdir)
    shown = {row[0]: row[1] for row in settings_report(settings)}
    assert shown["token"] == "(not set)"
    assert shown["metadata_profile"] == "(none)"


def test_report_of_plain_settings():
    rows = settings_report(Settings())
    assert all(source == "default" for _, _, source in rows)
    assert all(isinstance(cell, str) for row in rows for cell in row)


# -- netinfo -----------------------------------------------------------------------------

def test_netinfo_loopback():
    assert netinfo.interface_address("lo") == "127.0.0.1"
    assert netinfo.ipv4_address("lo") == "127.0.0.1"


def test_netinfo_missing_interface():
    with pytest.raises(netinfo.InterfaceAddressError, match="'nosuch0' does not exist"):
        netinfo.interface_address("nosuch0")


@pytest.mark.parametrize("bad", ["", "x" * 16, "a b", "a/b"])
def test_netinfo_bad_names(bad):
    with pytest.raises(netinfo.InterfaceAddressError):
        netinfo.interface_address(bad)


def test_netinfo_ipv6_fallback_picks_first_global(tmp_path, monkeypatch):
    table = tmp_path / "if_inet6"
    table.write_text(
        "fe8000000000000000fc00fffe000001 02 40 20 80     lo\n"      # link-local: skipped
        "20010db8000000000000000000000009 02 40 00 c0     lo\n"      # tentative: skipped
        "20010db8000000000000000000000001 02 40 00 80     lo\n"
        "20010db8000000000000000000000002 02 40 00 80     lo\n")
    monkeypatch.setattr(netinfo, "ipv4_address", lambda name: None)
    assert netinfo.interface_address("lo", str(table)) == "2001:db8::1"


def test_netinfo_no_address_at_all(tmp_path, monkeypatch):
    table = tmp_path / "if_inet6"
    table.write_text("fe8000000000000000fc00fffe000001 02 40 20 80     lo\n")
    monkeypatch.setattr(netinfo, "ipv4_address", lambda name: None)
    with pytest.raises(netinfo.InterfaceAddressError, match="'lo' has no IPv4 address"):
        netinfo.interface_address("lo", str(table))


def test_netinfo_missing_proc_file(tmp_path):
    assert netinfo.global_ipv6_address("lo", str(tmp_path / "absent")) is None


# -- the shipped sample ------------------------------------------------------------------

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "res_discovery_consul.conf.sample")


@pytest.mark.skipif(not os.path.exists(SAMPLE), reason="no sample config in this tree")
def test_the_sample_loads_cleanly_as_all_defaults(host, confdir):
    with open(SAMPLE, encoding="utf-8") as handle:
        settings, warnings = load(host, confdir, handle.read())
    assert warnings == []
    assert settings == Settings(service_id=EID, check_type="ttl")  # auto, no HTTP server


@pytest.mark.skipif(not os.path.exists(SAMPLE), reason="no sample config in this tree")
def test_the_sample_with_everything_uncommented_loads(host, confdir, monkeypatch):
    monkeypatch.setattr(netinfo, "interface_address", lambda name: "192.0.2.5")
    with open(SAMPLE, encoding="utf-8") as handle:
        text = handle.read()
    # Uncomment every 'key = value' and '[section]' line of the sample.
    text = re.sub(r"(?m)^;(\[?[a-z_]+\]?( = .*)?)$", r"\1", text)
    (confdir / "consul.token").write_text("token-from-file\n")
    text = text.replace("/etc/asterisk/consul.token", str(confdir / "consul.token"))
    text = text.replace("\ntoken =\n", "\n")  # token and token_file are exclusive
    # The TLS files the sample names, as PEM stand-ins in the test's directory.
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
    (confdir / "consul-ca.d").mkdir()
    (confdir / "consul-ca.d" / "ca.pem").write_text(pem)
    for name, body in (("consul-ca.pem", pem), ("consul-client.pem", pem),
                       ("consul-client.key", key)):
        (confdir / name).write_text(body)
    text = text.replace("/etc/asterisk/consul-", str(confdir / "consul-"))
    settings, warnings = load(host, confdir, text, http="[general]\nenabled = yes\n")
    assert settings.token == "token-from-file"
    assert settings.metadata_profile == "default" and len(settings.metadata) == 5
    assert settings.ca_path == str(confdir / "consul-ca.d") and settings.tls_verify is True
    assert settings.events is False and settings.event_register == "asterisk-register"
    # scheme = http as written: the TLS options are said to be unused.
    assert all("Consul will use 1m" in w or "scheme is http" in w
               or "discovery_port is not auto" in w for w in warnings), warnings


def test_very_long_numbers_are_ordinary_errors(host, confdir):
    assert "must be a whole number" in error_of(host, confdir, "port = " + "9" * 5000)
    assert consul(host, confdir, "port = " + "0" * 5000 + "80")[0].port == 80
    assert "too long a duration" in error_of(host, confdir, "check_interval = " + "9" * 5000 + "s")


# -- files that are not regular files, tokens that are not printable ASCII ----------------

def test_config_file_that_is_a_directory_says_so(host, confdir):
    (confdir / CONF).mkdir()
    with pytest.raises(ConfigError, match=r"cannot read res_discovery_consul\.conf .*: a directory"):
        load_settings(host, {})


def test_config_file_that_is_a_fifo_is_refused_at_once(host, confdir):
    os.mkfifo(confdir / CONF)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_settings(host, {})  # opening a FIFO to read would wait for a writer forever


def test_token_file_that_is_a_fifo_is_refused_at_once(host, confdir):
    os.mkfifo(confdir / "consul.token")
    message = error_of(host, confdir, "token_file = consul.token")
    assert "token_file: cannot read the token file it names: not a regular file" in message


def test_env_token_file_that_is_a_fifo_is_refused(host, confdir):
    os.mkfifo(confdir / "env.token")
    with pytest.raises(ConfigError, match="not a regular file"):
        consul(host, confdir, "host = 127.0.0.1",
               env={"CONSUL_HTTP_TOKEN_FILE": str(confdir / "env.token")})


@pytest.mark.parametrize("token", ["t\u00f6ken", "token\u20ac", "tok\u00a0en", "tok\u200ben"])
def test_non_ascii_token_is_refused_without_showing_it(host, confdir, token):
    message = error_of(host, confdir, "token = " + token)
    assert "printable ASCII (value not shown)" in message or "whitespace" in message
    assert token not in message and "ken" not in message.split("token:")[-1]


def test_non_ascii_token_in_file_and_env_is_refused(host, confdir):
    write(confdir, "t\u00f6ken\n", "consul.token")
    assert "printable ASCII" in error_of(host, confdir, "token_file = consul.token")
    with pytest.raises(ConfigError, match="printable ASCII"):
        consul(host, confdir, "host = 127.0.0.1", env={"CONSUL_HTTP_TOKEN": "t\u00f6ken"})
