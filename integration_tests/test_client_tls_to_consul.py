"""The module's Consul client over HTTPS to a real agent: the CA file or directory, the
server name checked, a client certificate the agent demands, verification switched off (moved
from tests/test_consul.py: a real agent's TLS port is what they are about)."""

from __future__ import annotations

import pytest

from asterisk_consul.consul import Agent, Consul, ConsulUnreachable, TlsConfig, Transport
from asterisk_consul.registrar import consul_client
from asterisk_consul.settings import Settings
from integration_tests.testbed.consul import make_test_certs
from tests.test_consul import SECRET, service, version_with


# -- TLS ---------------------------------------------------------------------------------------

def test_https_with_the_agent_ca(consul_factory):
    agent_proc = consul_factory(tls=True)
    transport = Transport(agent_proc.https_url, "", 2.0, tls=TlsConfig(ca_file=agent_proc.ca_file))
    assert Agent(transport).version() == "1.8.7"

    untrusting = Agent(Transport(agent_proc.https_url, SECRET, 2.0))  # system CAs only
    with pytest.raises(ConsulUnreachable) as caught:
        untrusting.self()
    assert "TLS" in str(caught.value) and SECRET not in str(caught.value)


def test_https_facade_from_settings(consul_factory):
    agent_proc = consul_factory(tls=True)
    consul = Consul(agent_proc.https_url, tls=TlsConfig(
        ca_file=agent_proc.ca_file, client_cert=agent_proc.client_cert,
        client_key=agent_proc.client_key))
    try:
        assert consul.agent.version() == "1.8.7"
    finally:
        consul.close()


# -- TLS from the settings ------------------------------------------------------------------

def tls_settings(agent_proc, **overrides):
    base = dict(scheme="https", host="127.0.0.1", port=agent_proc.https_port,
                ca_file=agent_proc.ca_file)
    base.update(overrides)
    return Settings(**base)


def test_tls_settings_verify_the_agent_with_the_ca_file(consul_factory):
    agent_proc = consul_factory(tls=True)
    assert version_with(tls_settings(agent_proc)) == "1.8.7"


def test_tls_wrong_ca_fails_clearly_and_sends_nothing(consul_factory, tmp_path):
    agent_proc = consul_factory(tls=True)
    other = make_test_certs(tmp_path / "other")
    settings = tls_settings(agent_proc, ca_file=str(other["ca"]), token=SECRET)
    with pytest.raises(ConsulUnreachable) as caught:
        consul_client(settings).agent.service.register(service())
    assert "svc-1" not in agent_proc.services()  # nothing reached the agent, by any port
    message = str(caught.value)
    assert message.startswith("PUT /v1/agent/service/register: TLS failure talking to https://127.0.0.1:")
    assert "certificate verify failed" in message and "ca_file" in message
    assert SECRET not in message


def test_tls_verify_no_accepts_an_unknown_ca(consul_factory, tmp_path, recwarn):
    agent_proc = consul_factory(tls=True)
    other = make_test_certs(tmp_path / "other")
    settings = tls_settings(agent_proc, ca_file=str(other["ca"]), tls_verify=False)
    assert version_with(settings) == "1.8.7"
    assert not [w for w in recwarn if "Unverified HTTPS" in str(w.message)]


def test_tls_server_name_checks_that_name_while_connecting_to_the_address(consul_factory):
    agent_proc = consul_factory(tls=True)
    # The agent's certificate names 127.0.0.1, localhost and server.dc1.consul.
    assert version_with(tls_settings(agent_proc, tls_server_name="server.dc1.consul")) == "1.8.7"
    with pytest.raises(ConsulUnreachable) as caught:
        version_with(tls_settings(agent_proc, tls_server_name="other.dc1.consul"))
    assert "other.dc1.consul" in str(caught.value) or "mismatch" in str(caught.value)
    assert "tls_server_name" in str(caught.value)


def test_tls_ca_path_of_plain_pem_files(consul_factory, tmp_path):
    agent_proc = consul_factory(tls=True)
    cas = tmp_path / "cas"
    cas.mkdir()
    other = make_test_certs(tmp_path / "other")
    (cas / "unrelated.pem").write_bytes(other["ca"].read_bytes())
    (cas / "ours.crt").write_bytes(open(agent_proc.ca_file, "rb").read())  # no hash links
    (cas / "README").write_text("not a certificate\n")
    settings = tls_settings(agent_proc, ca_file="", ca_path=str(cas))
    assert version_with(settings) == "1.8.7"

    (cas / "ours.crt").unlink()
    with pytest.raises(ConsulUnreachable, match="certificate verify failed"):
        version_with(settings)


def test_tls_client_certificate_required_by_the_agent(consul_factory):
    agent_proc = consul_factory(tls=True, tls_verify_incoming=True)
    with_cert = tls_settings(agent_proc, client_cert=agent_proc.client_cert,
                             client_key=agent_proc.client_key)
    assert version_with(with_cert) == "1.8.7"
    with pytest.raises(ConsulUnreachable) as caught:
        version_with(tls_settings(agent_proc))
    assert "TLS failure" in str(caught.value) or "cannot reach" in str(caught.value)
