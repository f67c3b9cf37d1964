"""On real Asterisk 16 and 22 against real Consul 1.8.7: busy_channels (warning, 429, with
hysteresis, one Consul write per change) and Weights; a fresh load routable within a second at
check_interval = 15s; an agent restart healed within a second at default settings, maintenance,
drain and KV included; the instance token failing an earlier start's check URL; and the
catalog line telling the truth when the agent's own token cannot sync."""

import time
from urllib.parse import quote

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.calls import asterisk_with_calls, hold_call
from integration_tests.test_drain import healthy

DEFAULTS = dict(check_interval="15s", check_timeout="3s", resync_interval="30s",
                consul_timeout_ms=2000)


def eid_check(ast, instance):
    """What the EID endpoint answers to a check URL with this instance token."""
    return d.http_get(ast, "/res_discovery_consul/check_eid?expected_eid=%s&instance=%s"
                      % (ast.eid, instance))


def test_busy_channels_warn_with_hysteresis_and_one_write_per_change(
        asterisk_factory, ast_version, module_so, consul_agent, capsys):
    ast, flag = asterisk_with_calls(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, check_type="both", check_ttl="60s", busy_channels=2)
    loaded = r.consul_log_offset(consul_agent)
    d.load(ast)
    ttl = "check-asterisk-ttl-%s" % ast.eid
    updates = "/v1/agent/check/update/%s" % quote(ttl, safe="")
    d.wait_until(lambda: healthy(consul_agent, ast.eid), timeout=10, what="healthy")
    instance = consul_agent.services()[ast.eid]["Meta"]["instance"]
    # Registered passing already; the first TTL report follows: count from after it.
    d.wait_until(lambda: any(u.startswith(updates) for _, u in
                             r.consul_requests(consul_agent, loaded, "PUT")),
                 timeout=5, what="the first TTL report")
    since = r.consul_log_offset(consul_agent)

    hold_call(ast)  # a Local pair: 2 active channels, busy_channels reached
    d.wait_health(consul_agent, "Asterisk", ast.eid, "warning", timeout=5)
    assert eid_check(ast, instance).status_code == 429
    assert not healthy(consul_agent, ast.eid)  # ?passing leaves a warning instance out
    assert "busy" in consul_agent.checks()[ttl]["Output"]
    assert "BUSY since" in r.status_row(ast.rx("discovery show status"), "Load")

    flag.touch()  # 0 channels: idle again, once the 5 s dwell has passed
    began = time.monotonic()
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing", timeout=10)
    idle_after = time.monotonic() - began
    assert idle_after >= 3.0, idle_after  # the dwell held it (minus the poll and call end)
    assert eid_check(ast, instance).status_code == 200
    writes = [u for m, u in r.consul_requests(consul_agent, since, "PUT") if u.startswith(updates)]
    assert len(writes) == 2, writes  # busy, then passing again: one each
    with capsys.disabled():
        print("\n[Asterisk %s] busy -> warning; idle again %.1f s after the calls ended; TTL "
              "writes: %d" % (ast.version, idle_after, len(writes)))


def test_weights_as_configured(asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent, weight_passing=10,
                  weight_warning=3)
    d.wait_service(consul_agent, ast.eid)
    assert consul_agent.services()[ast.eid]["Weights"] == {"Passing": 10, "Warning": 3}
    entry = d.wait_until(lambda: consul_agent.get("/v1/catalog/service/Asterisk").json(),
                         timeout=5, what="the catalog entry")[0]
    assert entry["ServiceWeights"] == {"Passing": 10, "Warning": 3}
    assert "weight_passing" in ast.rx("discovery show settings")


def test_a_fresh_load_is_routable_within_a_second(asterisk_factory, ast_version, module_so,
                                                  consul_agent, capsys):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, **DEFAULTS)  # Consul's first poll: up to 15 s away
    began = time.monotonic()
    d.load(ast)
    d.wait_until(lambda: healthy(consul_agent, ast.eid), timeout=1.0, interval=0.02,
                 what="in the healthy set within 1 s")
    took = time.monotonic() - began
    with capsys.disabled():
        print("\n[Asterisk %s] module load -> in the healthy set: %.2f s (check_interval 15s)"
              % (ast.version, took))


def test_an_agent_restart_is_healed_within_a_second(asterisk_factory, ast_version, module_so,
                                                    consul_agent, capsys):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent,
                  extra_sections={"kv": {"role": "edge"}}, **DEFAULTS)
    d.wait_service(consul_agent, ast.eid)
    assert "is set" in ast.rx("discovery set maintenance on upgrade")
    assert "is on" in ast.rx("discovery set drain on moving")
    key = "%s/role" % ast.eid
    d.wait_until(lambda: consul_agent.kv_get(key), timeout=5, what="the KV key")
    maint, drain = "_service_maintenance:%s" % ast.eid, "check-asterisk-drain-%s" % ast.eid

    consul_agent.restart()  # a dev agent: back empty; resync_interval is 30 s
    back = time.monotonic()
    d.wait_until(lambda: ast.eid in consul_agent.services()
                 and {maint, drain} <= set(consul_agent.checks())
                 and consul_agent.kv_get(key), timeout=1.0, interval=0.02,
                 what="service, maintenance, drain and KV back within 1 s")
    took = time.monotonic() - back
    with capsys.disabled():
        print("\n[Asterisk %s] agent restarted -> registered again with maintenance, drain and "
              "KV: %.2f s" % (ast.version, took))


def test_an_earlier_starts_check_url_fails_after_unload_and_load(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    old = d.wait_service(consul_agent, ast.eid)["Meta"]["instance"]
    assert eid_check(ast, old).status_code == 200
    r.unload(ast)
    d.load(ast)
    new = d.wait_until(lambda: (consul_agent.services().get(ast.eid) or {}).get(
        "Meta", {}).get("instance") not in (None, old) and consul_agent.services()[ast.eid][
        "Meta"]["instance"], timeout=10, what="the new start's registration")
    stale = eid_check(ast, old)
    assert (stale.status_code, stale.text) == (404, "instance mismatch\n")
    assert eid_check(ast, new).status_code == 200
    assert "Instance:" in ast.rx("discovery show status") and new in ast.rx("discovery show status")


def test_the_catalog_line_when_the_agent_cannot_sync(asterisk_factory, ast_version, module_so,
                                                     consul_factory):
    # A server that enforces ACLs (default deny), and a client agent without them: the client
    # accepts what the module registers, and the servers refuse its sync. Consumers never see
    # the service; the module must not say it is there.
    server = consul_factory(acl=True)
    client = consul_factory(client_of=server)
    ast = d.start(asterisk_factory, ast_version, module_so, client, check="no")
    d.wait_until(lambda: ast.eid in client.services(), timeout=10, what="registered locally")
    line = d.wait_until(lambda: (row := r.status_row(ast.rx("discovery show status"),
                                                     "In catalog")).startswith("NO") and row,
                        timeout=10, what="the catalog line")
    assert "not synced" in line, line
    entries = server.get("/v1/catalog/service/Asterisk", token=server.master_token).json()
    assert not entries  # the truth, as the servers hold it
