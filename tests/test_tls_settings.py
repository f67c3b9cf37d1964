"""Settings for HTTPS to Consul and for Consul events: options, fallbacks from
Consul's environment variables, file checks at load, warnings, and the report."""

import errno
import os

import pytest

from asterisk_consul.config import ConfigError
from asterisk_consul.settings import Settings, settings_report
from tests.test_settings import CONF, consul, error_of, host  # noqa: F401 (fixture)
from tests.test_settings import confdir  # noqa: F401 - fixture

CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY_SECRET = "MHcCAQEEIKEYMATERIALNEVERSHOWN"
KEY = f"-----BEGIN EC PRIVATE KEY-----\n{KEY_SECRET}\n-----END EC PRIVATE KEY-----\n"


@pytest.fixture
def pems(confdir):
    (confdir / "ca.pem").write_text(CERT)
    (confdir / "client.pem").write_text(CERT)
    (confdir / "client.key").write_text(KEY)
    cas = confdir / "cas"
    cas.mkdir()
    (cas / "one.pem").write_text(CERT)
    return confdir


def test_defaults(host, confdir):
    settings, warnings = consul(host, confdir)
    assert (settings.ca_file, settings.ca_path, settings.client_cert, settings.client_key,
            settings.tls_verify, settings.tls_server_name) == ("", "", "", "", True, "")
    assert (settings.events, settings.event_register, settings.event_deregister,
            settings.event_maintenance) == (False, "asterisk-register", "asterisk-deregister",
                                            "asterisk-maintenance")
    assert warnings == []


def test_every_tls_option_from_the_file(host, pems):
    settings, warnings = consul(host, pems, "scheme = https", "ca_file = ca.pem",
                                f"ca_path = {pems / 'cas'}", "client_cert = client.pem",
                                "client_key = client.key", "tls_verify = yes",
                                "tls_server_name = consul.example.net")
    assert settings.ca_file == str(pems / "ca.pem")  # relative: to the config directory
    assert settings.ca_path == str(pems / "cas")
    assert settings.client_cert == str(pems / "client.pem")
    assert settings.client_key == str(pems / "client.key")
    assert settings.tls_verify is True and settings.tls_server_name == "consul.example.net"
    assert settings.sources["ca_file"] == f"{CONF}:3 ({pems / 'ca.pem'})"
    assert settings.sources["ca_path"] == f"{CONF}:4"
    assert settings.sources["tls_server_name"] == f"{CONF}:8"
    assert warnings == []


def test_consul_environment_fallbacks(host, pems):
    env = {"CONSUL_HTTP_ADDR": "https://consul.local", "CONSUL_CACERT": str(pems / "ca.pem"),
           "CONSUL_CAPATH": str(pems / "cas"), "CONSUL_CLIENT_CERT": str(pems / "client.pem"),
           "CONSUL_CLIENT_KEY": str(pems / "client.key"), "CONSUL_HTTP_SSL_VERIFY": "true",
           "CONSUL_TLS_SERVER_NAME": "server.dc1.consul"}
    settings, _ = consul(host, pems, env=env)
    assert (settings.scheme, settings.host, settings.port) == ("https", "consul.local", 8501)
    assert settings.ca_file == str(pems / "ca.pem")
    assert settings.client_key == str(pems / "client.key")
    assert settings.tls_server_name == "server.dc1.consul"
    for option, variable in (("ca_file", "CONSUL_CACERT"), ("ca_path", "CONSUL_CAPATH"),
                             ("client_cert", "CONSUL_CLIENT_CERT"),
                             ("client_key", "CONSUL_CLIENT_KEY"),
                             ("tls_verify", "CONSUL_HTTP_SSL_VERIFY"),
                             ("tls_server_name", "CONSUL_TLS_SERVER_NAME")):
        assert settings.sources[option] == f"env {variable}"


def test_the_file_wins_over_the_environment(host, pems):
    (pems / "other.pem").write_text(CERT)
    env = {"CONSUL_CACERT": str(pems / "other.pem"), "CONSUL_HTTP_SSL_VERIFY": "false",
           "CONSUL_TLS_SERVER_NAME": "env.example", "CONSUL_CLIENT_CERT": "/nonexistent",
           "CONSUL_CLIENT_KEY": "/nonexistent"}
    settings, _ = consul(host, pems, "scheme = https", "ca_file = ca.pem", "tls_verify = yes",
                         "tls_server_name = file.example", "client_cert = client.pem",
                         "client_key = client.key", env=env)
    assert settings.ca_file == str(pems / "ca.pem")
    assert settings.tls_verify is True and settings.tls_server_name == "file.example"
    assert settings.client_cert == str(pems / "client.pem")  # the env pair is not mixed in


def test_tls_verify_no_warns(host, confdir):
    settings, warnings = consul(host, confdir, "scheme = https", "tls_verify = no")
    assert settings.tls_verify is False
    assert len(warnings) == 1 and "NOT verified" in warnings[0]
    assert warnings[0].startswith(f"{CONF}:3: tls_verify = no")
    _, warnings = consul(host, confdir, "scheme = https", env={"CONSUL_HTTP_SSL_VERIFY": "0"})
    assert warnings and warnings[0].startswith("env CONSUL_HTTP_SSL_VERIFY: tls_verify = no")


def test_tls_options_with_plain_http_warn(host, pems):
    settings, warnings = consul(host, pems, "ca_file = ca.pem")
    assert settings.scheme == "http"
    assert len(warnings) == 1 and "ca_file set, but scheme is http" in warnings[0]
    # From Asterisk's environment alone, they are simply not used.
    assert consul(host, pems, env={"CONSUL_CACERT": str(pems / "ca.pem")})[1] == []


@pytest.mark.parametrize("option", ["ca_file", "client_cert"])
def test_missing_file_names_option_and_file(host, pems, option):
    lines = ["scheme = https", f"{option} = nope.pem"]
    if option == "client_cert":
        lines.append("client_key = client.key")
    message = error_of(host, pems, *lines)
    assert f"[consul] {option} = 'nope.pem'" in message
    assert str(pems / "nope.pem") in message and "No such file" in message
    assert message.startswith(f"{CONF}:3:")


def test_env_file_missing_names_the_variable(host, confdir):
    with pytest.raises(ConfigError) as info:
        consul(host, confdir, env={"CONSUL_CACERT": "/nonexistent/ca.pem"})
    assert "env CONSUL_CACERT = '/nonexistent/ca.pem' (ca_file)" in str(info.value)
    assert "cannot read the CA file" in str(info.value)


def test_fifo_is_refused_at_once(host, pems):
    os.mkfifo(pems / "ca.fifo")
    message = error_of(host, pems, "scheme = https", "ca_file = ca.fifo")
    assert "ca.fifo: not a regular file" in message


def test_directory_as_ca_file_and_file_as_ca_path(host, pems):
    assert "a directory" in error_of(host, pems, "ca_file = cas")
    message = error_of(host, pems, "ca_path = ca.pem")
    assert "[consul] ca_path = 'ca.pem'" in message and "is not a directory" in message


def test_ca_path_without_certificates(host, pems):
    empty = pems / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello\n")
    os.mkfifo(empty / "a.fifo")  # skipped, never opened for reading
    message = error_of(host, pems, "ca_path = empty")
    assert "holds no readable PEM certificate" in message and str(empty) in message


def test_unreadable_file(host, pems, monkeypatch):
    unreadable = pems / "ca.pem"
    unreadable.chmod(0)
    if os.geteuid() == 0:  # root reads it all the same: refused here as it is to anyone else
        real_open = os.open

        def refusing_open(path, *args, **kwargs):
            if os.path.realpath(os.fspath(path)) == os.path.realpath(unreadable):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(unreadable))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    assert "Permission denied" in error_of(host, pems, "ca_file = ca.pem")


def test_files_that_are_not_pem(host, pems):
    (pems / "junk.pem").write_text("hello\n")
    assert "holds no PEM certificate" in error_of(host, pems, "ca_file = junk.pem")
    message = error_of(host, pems, "client_cert = client.pem", "client_key = client.pem")
    assert "client key" in message and "holds no PEM private key" in message


def test_key_material_is_never_in_messages(host, pems):
    message = error_of(host, pems, "client_cert = client.key", "client_key = client.key")
    assert "holds no PEM certificate" in message and KEY_SECRET not in message


@pytest.mark.parametrize("lines,missing", [(["client_cert = client.pem"], "client_key"),
                                            (["client_key = client.key"], "client_cert")])
def test_client_cert_and_key_go_together(host, pems, lines, missing):
    message = error_of(host, pems, *lines)
    assert f"but {missing} is not" in message


def test_env_client_pair_must_be_complete(host, pems):
    with pytest.raises(ConfigError, match="client_key is not"):
        consul(host, pems, env={"CONSUL_CLIENT_CERT": str(pems / "client.pem")})


@pytest.mark.parametrize("bad", ["maybe", "2"])
def test_tls_verify_bad(host, confdir, bad):
    assert "must be yes or no" in error_of(host, confdir, f"tls_verify = {bad}")
    with pytest.raises(ConfigError, match="env CONSUL_HTTP_SSL_VERIFY"):
        consul(host, confdir, env={"CONSUL_HTTP_SSL_VERIFY": bad})


@pytest.mark.parametrize("bad", ["a b", "-bad.example", "x/y", "[::1]"])
def test_tls_server_name_bad(host, confdir, bad):
    assert "must be a host name" in error_of(host, confdir, f"tls_server_name = {bad}")


def test_tls_server_name_may_be_an_address(host, confdir):
    assert consul(host, confdir, "tls_server_name = 10.0.0.1")[0].tls_server_name == "10.0.0.1"


def test_a_tls_change_is_a_new_client():
    assert Settings(ca_file="/a").transport_key() != Settings(ca_file="/b").transport_key()
    assert Settings(events=True).transport_key() == Settings().transport_key()


# -- events --------------------------------------------------------------------------------

def test_events_and_names(host, confdir):
    settings, _ = consul(host, confdir, "events = yes", "event_register = pbx.up",
                         "event_deregister = pbx:down", "event_maintenance = pbx_maint-1")
    assert settings.events is True
    assert (settings.event_register, settings.event_deregister, settings.event_maintenance) \
        == ("pbx.up", "pbx:down", "pbx_maint-1")
    assert settings.sources["event_register"] == f"{CONF}:3"


@pytest.mark.parametrize("option", ["event_register", "event_deregister", "event_maintenance"])
def test_event_name_starting_with_underscore_is_refused(host, confdir, option):
    message = error_of(host, confdir, f"{option} = _internal")
    assert f"[consul] {option} = '_internal'" in message and "must not start with '_'" in message


@pytest.mark.parametrize("bad", ["a b", "a/b", "é", "x" * 129, "a?b"])
def test_event_name_invalid(host, confdir, bad):
    assert "must be 1 to 128 letters" in error_of(host, confdir, f"event_register = {bad}")


def test_events_bad_bool(host, confdir):
    assert "must be yes or no" in error_of(host, confdir, "events = sometimes")


# -- the report ----------------------------------------------------------------------------

def test_report_rows(host, pems):
    settings, _ = consul(host, pems, "scheme = https", "ca_file = ca.pem", "events = yes",
                         env={"CONSUL_TLS_SERVER_NAME": "server.dc1.consul"})
    rows = settings_report(settings)
    shown = {row[0]: (row[1], row[2]) for row in rows}
    assert shown["ca_file"] == (str(pems / "ca.pem"), f"{CONF}:3 ({pems / 'ca.pem'})")
    assert shown["ca_path"] == ("(none)", "default")
    assert shown["tls_verify"] == ("yes", "default")
    assert shown["tls_server_name"] == ("server.dc1.consul", "env CONSUL_TLS_SERVER_NAME")
    assert shown["client_key"] == ("(none)", "default")
    assert shown["events"] == ("yes", f"{CONF}:4")
    assert shown["event_maintenance"] == ("asterisk-maintenance", "default")
    options = [row[0] for row in rows]
    assert options.index("consul_timeout_ms") < options.index("ca_file") < options.index("id")
    events_at = options.index("events")
    assert options[events_at:events_at + 4] == ["events", "event_register", "event_deregister",
                                                 "event_maintenance"]
    assert consul(host, pems)[0].sources["tls_server_name"] == "default"
    assert dict((r[0], r[1]) for r in settings_report(Settings()))["tls_server_name"] == \
        "(none: the host connected to)"
