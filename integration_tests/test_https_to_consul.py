"""HTTPS to Consul: on Asterisk 16 and 22 against a real TLS Consul agent whose
certificates the test makes. The CA and client files are copied into the Asterisk's config
directory (Asterisk 22 runs in a chroot and sees only what is inside it)."""

import re
import shutil

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.resilience import status_row
from integration_tests.testbed.consul import make_test_certs


def copy_in(ast, src, name):
    """Copy a file into the Asterisk's etc dir; returns the path Asterisk sees."""
    dest = ast.etc_dir / name
    shutil.copyfile(str(src), str(dest))
    dest.chmod(0o600)
    return str(ast.to_asterisk_path(dest))


def https_options(consul, **options):
    merged = dict(scheme="https", port=consul.https_port, check="no")
    merged.update(options)
    return merged


def reload_ok(ast):
    assert "reloaded" in ast.rx("module reload " + d.MODULE).lower()


def test_verified_https_with_ca_file_and_server_name_from_file_and_environment(
        asterisk_factory, ast_version, module_so, consul_factory):
    consul = consul_factory(tls=True)
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    ca = copy_in(ast, consul.ca_file, "consul-ca.pem")
    d.write_conf(ast, consul, **https_options(consul, ca_file="consul-ca.pem",
                                              tls_server_name="server.dc1.consul"))
    d.load(ast)
    d.wait_service(consul, ast.eid)  # read back over the agent's plain port

    settings = ast.rx("discovery show settings")
    assert re.search(r"^\s+scheme\s+https\s+res_discovery_consul\.conf:\d+", settings, re.M)
    assert re.search(r"^\s+ca_file\s+%s\s+res_discovery_consul\.conf:%d \(%s\)" % (
        re.escape(ca), d.conf_line(ast, "ca_file"), re.escape(ca)), settings, re.M), settings
    assert re.search(r"^\s+tls_verify\s+yes\s+default", settings, re.M), settings
    assert re.search(r"^\s+tls_server_name\s+server\.dc1\.consul\s+res_discovery_consul",
                     settings, re.M), settings
    status = ast.rx("discovery show status")
    assert status_row(status, "Agent") == \
        "https://127.0.0.1:%d (reachable, Consul 1.8.7)" % consul.https_port, status
    assert status_row(status, "TLS") == ("HTTPS, certificate verified against %s as "
                                         "server.dc1.consul, client certificate none" % ca)
    assert "is set (Consul accepted it)" in ast.rx("discovery set maintenance on tls test")
    d.wait_health(consul, "Asterisk", ast.eid, "critical")
    r.unload(ast)
    d.wait_gone(consul, ast.eid, timeout=5)

    # Consul's own environment variables, when the file leaves the options out.
    env_ast = d.new_asterisk(
        asterisk_factory, ast_version, module_so,
        env={"CONSUL_HTTP_ADDR": "https://127.0.0.1:%d" % consul.https_port,
             "CONSUL_CACERT": ca, "CONSUL_TLS_SERVER_NAME": "localhost",
             "CONSUL_HTTP_SSL_VERIFY": "true"})
    # `ca` is in the first Asterisk's directory, which Asterisk 22's chroot shows too.
    d.write_conf(env_ast, consul, host=None, port=None, check="no")
    d.load(env_ast)
    d.wait_service(consul, env_ast.eid)
    settings = env_ast.rx("discovery show settings")
    for option, variable in (("scheme", "CONSUL_HTTP_ADDR"), ("ca_file", "CONSUL_CACERT"),
                             ("tls_server_name", "CONSUL_TLS_SERVER_NAME"),
                             ("tls_verify", "CONSUL_HTTP_SSL_VERIFY")):
        assert re.search(r"^\s+%s\s+\S+\s+env %s\s*$" % (option, variable), settings, re.M), \
            (option, settings)


def test_wrong_ca_fails_clearly_never_plain_http_and_tls_verify_no_works(
        asterisk_factory, ast_version, module_so, consul_factory, tmp_path):
    consul = consul_factory(tls=True)
    other = make_test_certs(tmp_path / "other-ca")
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    copy_in(ast, other["ca"], "other-ca.pem")
    d.write_conf(ast, consul, **https_options(consul, ca_file="other-ca.pem"))
    since = ast.log_offset()
    d.load(ast)
    ast.wait_log(r"WARNING.*Consul: PUT /v1/agent/service/register: TLS failure talking to "
                 r"https://127\.0\.0\.1:%d: .*certificate verify failed.*ca_file"
                 % consul.https_port,
                 since=since)
    status = d.wait_until(lambda: (
        lambda text: "TLS failure" in status_row(text, "Last error") and text)(
            ast.rx("discovery show status")), timeout=5, interval=0.1, what="the TLS error in the status")
    assert status_row(status, "Registered") == "no", status
    assert status_row(status, "Agent").startswith("https://127.0.0.1:%d (UNREACHABLE)"
                                                  % consul.https_port), status
    # Nothing reached the agent: not over TLS, and not over its plain HTTP port either.
    assert consul.services() == {}
    assert "http://127.0.0.1:%d" % consul.http_port not in ast.log_text(since)
    # Warned about once, not once per retry (retries are at debug level).
    assert len(re.findall(r"WARNING.*TLS failure", ast.log_text(since))) == 1

    # tls_verify = no: registers with the unknown CA, and says loudly that nothing is checked.
    since = ast.log_offset()
    d.write_conf(ast, consul, **https_options(consul, ca_file="other-ca.pem", tls_verify="no"))
    reload_ok(ast)
    d.wait_service(consul, ast.eid)
    assert re.search(r"WARNING.*tls_verify = no: the Consul agent's TLS certificate is NOT "
                     r"verified", ast.log_text(since)), ast.log_text(since)[-2000:]
    assert status_row(ast.rx("discovery show status"), "TLS") == \
        "HTTPS, certificate NOT verified (tls_verify = no), client certificate none"


def test_agent_requiring_client_certificates_and_bad_files(
        asterisk_factory, ast_version, module_so, consul_factory):
    consul = consul_factory(tls=True, tls_verify_incoming=True)
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    copy_in(ast, consul.ca_file, "consul-ca.pem")
    cert = copy_in(ast, consul.client_cert, "client.pem")
    copy_in(ast, consul.client_key, "client.key")

    # Without a client certificate the agent refuses the connection.
    d.write_conf(ast, consul, **https_options(consul, ca_file="consul-ca.pem"))
    since = ast.log_offset()
    d.load(ast)
    # The agent says so with an alert, or just closes the connection, as the race goes.
    ast.wait_log(r"WARNING.*Consul: .*(TLS failure|cannot reach).*(bad certificate|"
                 r"certificate required|closed the TLS connection).*client_cert", since=since)
    assert ast.eid not in consul.services()

    # With one, it registers.
    d.write_conf(ast, consul, **https_options(consul, ca_file="consul-ca.pem",
                                              client_cert="client.pem", client_key="client.key"))
    reload_ok(ast)
    d.wait_service(consul, ast.eid)
    assert status_row(ast.rx("discovery show status"), "TLS").endswith(
        "client certificate %s" % cert)

    # A file that is not there: the reload is refused naming option and file; all stays.
    since = ast.log_offset()
    d.write_conf(ast, consul, **https_options(consul, ca_file="consul-ca.pem",
                                              client_cert="client.pem", client_key="nokey.pem"))
    ast.rx("module reload " + d.MODULE)
    ast.wait_log(r"ERROR.*res_discovery_consul\.conf:%d: \[consul\] client_key = 'nokey\.pem': "
                 r"cannot read the client key \S*nokey\.pem: No such file"
                 % d.conf_line(ast, "client_key"), since=since)
    assert ast.eid in consul.services() and d.module_running(ast)

    # A key where the certificate should be: refused at load, naming both.
    r.unload(ast)
    d.write_conf(ast, consul, **https_options(consul, ca_file="consul-ca.pem",
                                              client_cert="client.key", client_key="client.key"))
    log = d.load_declined(ast)
    assert re.search(r"\[consul\] client_cert = 'client\.key': the client certificate "
                     r"\S*client\.key holds no PEM certificate", log), log[-2000:]
