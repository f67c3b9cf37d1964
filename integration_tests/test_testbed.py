"""Smoke tests of the test bed itself: real Consul, real Asterisk 16 and 22, on 127.0.0.1."""

import os
import re

import pytest
import requests

from integration_tests.testbed import fixtures, paths, runtime
from integration_tests.testbed.peers import BlackholePeer, RefusingPeer, StandInPeer

EXPECTED_VERSION = {"16": r"Asterisk 16\.28\.", "22": r"Asterisk 22\."}


# --------------------------------------------------------------------------------- Consul
def test_consul_answers_agent_self(consul_agent):
    r = requests.get(consul_agent.url + "/v1/agent/self", timeout=5)
    assert r.status_code == 200
    assert r.json()["Config"]["Version"] == "1.8.7"


def test_consul_restart_keeps_ports_and_forgets(consul_agent):
    consul_agent.put("/v1/agent/service/register", json={"ID": "a", "Name": "a"}).raise_for_status()
    assert "a" in consul_agent.services()
    port = consul_agent.http_port
    consul_agent.restart()
    assert consul_agent.http_port == port
    assert consul_agent.services() == {}


def test_consul_acl_refuses_without_token_and_accepts_with_it(consul_factory):
    consul = consul_factory(acl=True)
    service = {"ID": "acl-smoke", "Name": "acl-smoke", "Port": 5060}
    refused = consul.put("/v1/agent/service/register", json=service, token="")
    assert refused.status_code == 403, refused.text
    assert "acl-smoke" not in consul.services()
    accepted = consul.put("/v1/agent/service/register", json=service)  # master token
    assert accepted.status_code == 200, accepted.text
    assert "acl-smoke" in consul.services()
    anonymous = requests.get(consul.url + "/v1/agent/services", timeout=5)
    assert "acl-smoke" not in anonymous.json()


def test_consul_tls_with_client_certificate(consul_factory):
    consul = consul_factory(tls=True, tls_verify_incoming=True)
    r = requests.get(consul.https_url + "/v1/agent/self", verify=consul.ca_file,
                     cert=(consul.client_cert, consul.client_key), timeout=5)
    assert r.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(consul.https_url + "/v1/agent/self", verify=consul.ca_file, timeout=5)


def test_two_agents_side_by_side(consul_factory):
    a, b = consul_factory(), consul_factory()
    assert a.http_port != b.http_port
    a.put("/v1/agent/service/register", json={"ID": "only-a", "Name": "x"}).raise_for_status()
    assert "only-a" in a.services() and "only-a" not in b.services()


# --------------------------------------------------------------------------------- Asterisk
def test_asterisk_answers_cli_and_httpstatus(asterisk, ast_version):
    assert asterisk.version == ast_version
    assert re.search(EXPECTED_VERSION[ast_version], asterisk.rx("core show version"))
    r = requests.get(asterisk.http_url("/httpstatus"), timeout=5)
    assert r.status_code == 200
    assert "Asterisk" in r.text


def test_asterisk_config_logging_and_ami(asterisk):
    assert asterisk.is_running() and asterisk.rss_kb() > 0
    # debug lines reach the messages file (debug = 5 in asterisk.conf, all levels in logger.conf)
    asterisk.wait_log(r"DEBUG\[\d+\]")
    since = asterisk.log_offset()
    asterisk.rx("logger reload")
    asterisk.wait_log(r"VERBOSE|NOTICE|DEBUG", since=since)
    assert asterisk.eid.lower() in asterisk.rx("core show settings").lower()
    assert asterisk.ami("Ping")["Response"] == "Success"
    assert "autoload = no" in (asterisk.etc_dir / "modules.conf").read_text()
    assert len(str(asterisk.dir / "run" / "asterisk.ctl")) < 107


def test_asterisk_http_prefix_restart_and_module_dir(asterisk_factory, ast_version, tmp_path):
    ast = asterisk_factory(ast_version, http_prefix="pfx",
                           asterisk_conf_options={"maxfiles": "4096"})
    assert ast.http_url("/httpstatus").endswith(f":{ast.http_port}/pfx/httpstatus")
    assert requests.get(ast.http_url("/httpstatus"), timeout=5).status_code == 200
    first_pid = ast.pid
    fake = tmp_path / "res_fake.so"
    fake.write_bytes(b"not really a module")
    dest = ast.install_module(fake)
    assert dest.parent == ast.module_dir and dest.read_bytes() == fake.read_bytes()
    assert oct(dest.stat().st_mode & 0o777) == "0o644"
    ast.restart()
    assert ast.pid != first_pid
    assert requests.get(ast.http_url("/httpstatus"), timeout=5).status_code == 200
    assert ast.stop() == 0
    assert not ast.is_running()


def test_asterisk_kill_is_noticed(asterisk_factory, ast_version):
    ast = asterisk_factory(ast_version)
    pid = ast.pid
    ast.kill()
    assert not ast.is_running()
    assert not os.path.exists(f"/proc/{pid}")


def test_http_check_against_asterisk_goes_passing(asterisk, consul_agent):
    service = {
        "ID": f"ast{asterisk.version}-smoke", "Name": "asterisk-smoke", "Port": asterisk.http_port,
        "Address": "127.0.0.1",
        "Check": {"HTTP": asterisk.http_url("/httpstatus"), "Interval": "1s", "Timeout": "2s"},
    }
    r = consul_agent.put("/v1/agent/service/register", json=service)
    assert r.status_code == 200, r.text
    consul_agent.wait_service_status(service["ID"], "passing", timeout=20)
    code, body = consul_agent.service_health(service["ID"])
    assert code == 200 and body["AggregatedStatus"] == "passing"
    # and it notices when Asterisk goes away
    asterisk.stop()
    consul_agent.wait_service_status(service["ID"], "critical", timeout=20)


# --------------------------------------------------------------------------------- plumbing
def test_broken_peers():
    with RefusingPeer() as p, pytest.raises(requests.exceptions.ConnectionError):
        requests.get(p.url, timeout=2)
    with BlackholePeer() as p, pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(p.url, timeout=0.3)
    with StandInPeer(status=503) as p:
        r = requests.put(p.url + "/v1/agent/service/register", json={"ID": "x"}, timeout=2)
        assert r.status_code == 503
        assert (p.requests[0].method, p.requests[0].path) == ("PUT", "/v1/agent/service/register")


def test_free_ports_are_distinct():
    ports = {runtime.free_port() for _ in range(50)}
    assert len(ports) == 50


def test_missing_component_fails_in_ci_and_skips_otherwise(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        fixtures.missing("Asterisk 99 not found")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        fixtures.missing("Asterisk 99 not found")


def test_testbed_is_installed():
    """In CI the whole test bed must be there (installed by .ci/run's make test)."""
    for what, path in (("consul", paths.consul_binary()), ("ast16", paths.ast16_binary()),
                       ("ast22", paths.sid_root() / "usr/sbin/asterisk"),
                       ("venv", paths.host_venv_python()),
                       ("docker", paths.docker_prefix() / "usr/sbin/dockerd"),
                       ("docker base image", paths.docker_base_image())):
        if not path.exists():
            fixtures.missing(f"{what} not found at {path}")
