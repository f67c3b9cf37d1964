"""The EID check over HTTPS and CONSUL_HTTP_SSL: on Asterisk 16 and 22
against a real Consul 1.8.7 agent. Asterisk's TLS server gets a certificate the test makes
(issued by a throwaway CA the agent does not know, unless the test tells it); the files are
copied into the Asterisk's config directory, which Asterisk 22 sees inside its chroot."""

import re
import shutil

import requests

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.resilience import status_row
from integration_tests.testbed import runtime
from integration_tests.testbed.consul import make_test_certs

CHECK_PATH = "/res_discovery_consul/check_eid"


def copy_in(ast, src, name):
    """Copy a file into the Asterisk's etc dir; returns the path Asterisk sees."""
    dest = ast.etc_dir / name
    shutil.copyfile(str(src), str(dest))
    dest.chmod(0o600)
    return str(ast.to_asterisk_path(dest))


def http_conf_line(ast, option):
    """Line number (1-based) of `option = ...` in the Asterisk's http.conf."""
    lines = (ast.etc_dir / "http.conf").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if re.match(r"\s*%s\s*=" % re.escape(option), line):
            return number
    raise AssertionError("%s not in http.conf" % option)


def tls_asterisk(asterisk_factory, version, module_so, certs):
    """A started Asterisk (module installed, not loaded) whose HTTP server also listens with
    TLS on 127.0.0.1:<ast.tls_port> with certs' server certificate (127.0.0.1, localhost)."""
    ast = d.new_asterisk(asterisk_factory, version, module_so, start=False)
    ast.tls_port = runtime.free_port()
    cert = copy_in(ast, certs["server_cert"], "asterisk-https.pem")
    key = copy_in(ast, certs["server_key"], "asterisk-https.key")
    lines = ["[general]", "enabled = yes", "bindaddr = 127.0.0.1", "bindport = %d" % ast.http_port,
             "tlsenable = yes", "tlsbindaddr = 127.0.0.1:%d" % ast.tls_port,
             "tlscertfile = %s" % cert, "tlsprivatekey = %s" % key]
    if version == "22":
        lines.append("enable_status = yes")
    ast.write_config("http.conf", "\n".join(lines) + "\n")
    ast.start()
    # Asterisk's own TLS server answers with that certificate (the module is not loaded yet).
    answer = requests.get("https://127.0.0.1:%d%s" % (ast.tls_port, CHECK_PATH),
                          verify=str(certs["ca"]), timeout=5)
    assert answer.status_code == 404, answer
    return ast


def https_check_url(ast):
    return "https://127.0.0.1:%d%s?expected_eid=%s" % (ast.tls_port, CHECK_PATH, ast.eid)


def https_check_options(**options):
    """[consul] options of an HTTPS EID check on the TLS port http.conf names."""
    merged = dict(check_scheme="https", check_http_port=None)
    merged.update(options)
    return merged


def wait_check_output(consul, ast, pattern, timeout=20.0):
    """The EID check as the agent lists it once its Output matches pattern."""
    def found():
        check = d.check_of(consul, ast.eid)
        return check if check and re.search(pattern, check["Output"]) else None
    return d.wait_until(found, timeout=timeout, interval=0.1,
                        what="EID check output /%s/" % pattern)


def reload_ok(ast):
    assert "reloaded" in ast.rx("module reload " + d.MODULE).lower()


def test_https_check_on_the_tls_port_fails_on_an_unknown_ca_until_skip_verify(
        asterisk_factory, ast_version, module_so, consul_agent, tmp_path):
    """check_scheme = https, no check_http_port: Consul polls https://<ip>:<tlsbindaddr's port>.
    It does not know the CA: critical with an x509 error; check_tls_skip_verify = yes (a
    warning) makes it passing."""
    certs = make_test_certs(tmp_path / "asterisk-certs")
    ast = tls_asterisk(asterisk_factory, ast_version, module_so, certs)
    d.write_conf(ast, consul_agent, **https_check_options())
    d.load(ast)

    settings = ast.rx("discovery show settings")
    assert re.search(r"^\s+check_scheme\s+https\s+res_discovery_consul\.conf:%d\s*$"
                     % d.conf_line(ast, "check_scheme"), settings, re.M), settings
    assert re.search(r"^\s+check_http_port\s+%d\s+http\.conf:%d \(Asterisk's TLS port\)\s*$"
                     % (ast.tls_port, http_conf_line(ast, "tlsbindaddr")), settings, re.M), settings
    assert re.search(r"^\s+check_tls_skip_verify\s+no\s+default\s*$", settings, re.M), settings

    d.wait_health(consul_agent, "Asterisk", ast.eid, "critical")
    check = wait_check_output(consul_agent, ast, r"x509|certificate")
    assert https_check_url(ast) in check["Output"], check
    assert "unknown authority" in check["Output"], check
    status = ast.rx("discovery show status")
    assert status_row(status, "EID check") == "check-asterisk-eid-%s: critical" % ast.eid, status
    assert "x509" in status_row(status, "output"), status

    since = ast.log_offset()
    d.write_conf(ast, consul_agent, **https_check_options(check_tls_skip_verify="yes"))
    reload_ok(ast)
    ast.wait_log(r"WARNING.*res_discovery_consul\.conf:%d: \[consul\] check_tls_skip_verify = "
                 r"yes: Consul does not verify Asterisk's certificate"
                 % d.conf_line(ast, "check_tls_skip_verify"), since=since)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    check = wait_check_output(consul_agent, ast, r"200 OK")
    assert "HTTP GET %s: 200 OK" % https_check_url(ast) in check["Output"], check
    assert re.search(r"^\s+check_tls_skip_verify\s+yes\s+res_discovery_consul\.conf:\d+\s*$",
                     ast.rx("discovery show settings"), re.M)


def test_agent_that_knows_the_ca_verifies_asterisks_certificate(
        asterisk_factory, ast_version, module_so, consul_factory, tmp_path):
    """An agent given the CA (enable_agent_tls_for_checks) verifies Asterisk's certificate:
    passing without check_tls_skip_verify. Consul 1.8 checks it against the agent's
    server_name (it has no per-check TLSServerName), here a name the certificate holds."""
    certs = make_test_certs(tmp_path / "asterisk-certs")
    consul = consul_factory(extra_config={"ca_file": str(certs["ca"]), "server_name": "localhost",
                                          "enable_agent_tls_for_checks": True})
    ast = tls_asterisk(asterisk_factory, ast_version, module_so, certs)
    d.write_conf(ast, consul, **https_check_options())
    d.load(ast)
    d.wait_health(consul, "Asterisk", ast.eid, "passing")
    check = wait_check_output(consul, ast, r"200 OK")
    assert "HTTP GET %s: 200 OK" % https_check_url(ast) in check["Output"], check


def test_check_tls_server_name_is_refused_by_consul_1_8_and_said_clearly(
        asterisk_factory, ast_version, module_so, consul_agent, tmp_path):
    """Consul 1.8.7 does not know TLSServerName: the registration is refused, the status says
    why, nothing crashes; without the option the next reload registers."""
    certs = make_test_certs(tmp_path / "asterisk-certs")
    ast = tls_asterisk(asterisk_factory, ast_version, module_so, certs)
    d.write_conf(ast, consul_agent, **https_check_options(check_tls_skip_verify="yes",
                                                          check_tls_server_name="localhost"))
    d.load(ast)
    assert re.search(r"^\s+check_tls_server_name\s+localhost\s+res_discovery_consul\.conf:%d\s*$"
                     % d.conf_line(ast, "check_tls_server_name"),
                     ast.rx("discovery show settings"), re.M)

    def refused():
        text = ast.rx("discovery show status")
        return "TLSServerName" in status_row(text, "Last error") and text
    status = d.wait_until(refused, timeout=10, interval=0.1,
                          what="TLSServerName in the status's Last error")
    assert status_row(status, "Registered") == "no", status
    assert re.search(r"400|unknown field", status_row(status, "Last error")), status
    assert ast.eid not in consul_agent.services()
    assert d.module_running(ast) and ast.is_running()

    d.write_conf(ast, consul_agent, **https_check_options(check_tls_skip_verify="yes"))
    reload_ok(ast)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    r.unload(ast)
    d.wait_gone(consul_agent, ast.eid, timeout=5)
    assert ast.is_running()


def test_https_check_without_tlsenable_warns_naming_both_options(
        asterisk_factory, ast_version, module_so, consul_agent):
    """check_scheme = https against an http.conf without tlsenable: loaded, with a warning
    naming check_scheme and tlsenable; the port is the TLS default, 8089."""
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, **https_check_options())
    since = ast.log_offset()
    d.load(ast)
    ast.wait_log(r"WARNING.*res_discovery_consul\.conf:%d: \[consul\] check_scheme = https, but "
                 r"http\.conf does not enable Asterisk's TLS server \(\[general\] tlsenable = "
                 r"yes\): the EID check will fail" % d.conf_line(ast, "check_scheme"), since=since)
    assert re.search(r"^\s+check_http_port\s+8089\s+default \(Asterisk's TLS port\)\s*$",
                     ast.rx("discovery show settings"), re.M)
    d.wait_service(consul_agent, ast.eid)


def test_consul_http_ssl_true_makes_the_module_talk_https_to_the_agent(
        asterisk_factory, ast_version, module_so, consul_factory):
    """CONSUL_HTTP_SSL=true and no scheme in the file: https to the agent's TLS port (the CA
    from ca_file); without a port either, 8501."""
    consul = consul_factory(tls=True)
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so,
                         env={"CONSUL_HTTP_SSL": "true"})
    copy_in(ast, consul.ca_file, "consul-ca.pem")
    d.write_conf(ast, consul, port=consul.https_port, ca_file="consul-ca.pem", check="no")
    d.load(ast)
    d.wait_service(consul, ast.eid)  # read back over the agent's plain port

    settings = ast.rx("discovery show settings")
    assert re.search(r"^\s+scheme\s+https\s+env CONSUL_HTTP_SSL\s*$", settings, re.M), settings
    assert re.search(r"^\s+port\s+%d\s+res_discovery_consul\.conf:%d\s*$"
                     % (consul.https_port, d.conf_line(ast, "port")), settings, re.M), settings
    status = ast.rx("discovery show status")
    assert status_row(status, "Agent") == \
        "https://127.0.0.1:%d (reachable, Consul 1.8.7)" % consul.https_port, status
    assert status_row(status, "TLS").startswith("HTTPS, certificate verified against "), status

    d.write_conf(ast, consul, port=None, ca_file="consul-ca.pem", check="no")
    reload_ok(ast)
    assert re.search(r"^\s+port\s+8501\s+default\s*$", ast.rx("discovery show settings"), re.M)
