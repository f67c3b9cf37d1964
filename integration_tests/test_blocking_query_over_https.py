"""The blocking query over HTTPS against a real Consul 1.8.7 agent with the test bed's CA: it
wakes on a change, and an agent whose CA is not trusted is refused without showing the token."""

from __future__ import annotations

import time

import pytest

from asterisk_consul.consul import ConsulUnreachable, TlsConfig
from asterisk_consul.consul.blocking import BlockingClient
from tests.test_blocking_query import PATH, SECRET, Query


def test_a_blocking_query_over_https_with_the_agent_ca_wakes_on_a_change(consul_factory):
    agent_proc = consul_factory(tls=True)
    definition = {"ID": "pbx-1", "Name": "Asterisk", "Port": 5060}
    agent_proc.put("/v1/agent/service/register", json=definition).raise_for_status()
    client = BlockingClient(agent_proc.https_url, "", 2.0,
                            TlsConfig(ca_file=agent_proc.ca_file, server_name="server.dc1.consul"))
    status, headers, _ = client.get(PATH, {}, 0.0)
    known = headers.get("x-consul-contenthash")
    assert status == 200 and known
    query = Query(client, wait_s=30.0, params={"hash": known, "wait": "30s"})
    began = time.monotonic()
    agent_proc.put("/v1/agent/service/register",
                   json=dict(definition, Tags=["changed"])).raise_for_status()
    query.join(40)
    assert query.error is None and query.result[0] == 200
    assert query.result[1]["x-consul-contenthash"] != known
    assert query.ended_at - began < 10.0  # the change ended it, not its 30 s wait
    client.interrupt()
    untrusting = BlockingClient(agent_proc.https_url, SECRET, 2.0)  # the system's CAs only
    with pytest.raises(ConsulUnreachable, match="certificate verify failed") as caught:
        untrusting.get(PATH, {}, 0.0)
    assert SECRET not in str(caught.value)
