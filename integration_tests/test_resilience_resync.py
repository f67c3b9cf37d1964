"""On real Asterisk 16 and 22: every resync_interval the module compares what
the agent holds with what it registered and re-registers in place when it is missing or
different; it never deregisters to refresh; `discovery show status` shows the last sync.
"""

import re
import time

from integration_tests import discovery as d
from integration_tests import resilience as r

RESYNC_S = 1.0
# A resync finds it within RESYNC_S, plus the calls and two busy cores.
HEAL_BOUND_S = RESYNC_S + 1.5


def _healed(what, fn):
    began = time.monotonic()
    value = d.wait_until(fn, timeout=HEAL_BOUND_S + 3, interval=0.05, what=what)
    took = time.monotonic() - began
    assert took < HEAL_BOUND_S, "%s took %.2f s" % (what, took)
    return value


def _last_sync(ast):
    return r.status_row(ast.rx("discovery show status"), "Last sync")


def test_resync_heals_what_others_changed_and_never_deregisters(asterisk_factory, ast_version,
                                                                module_so, consul_agent):
    agent = consul_agent
    ast = d.start(asterisk_factory, ast_version, module_so, agent, resync_interval="1s")
    sid = ast.eid
    maint = "_service_maintenance:" + sid
    our_check = "check-asterisk-eid-" + sid
    wanted = d.wait_service(agent, sid)
    d.wait_health(agent, "Asterisk", sid, "passing")
    since = r.consul_log_offset(agent)
    external_deregisters = 0

    # The first sync registered; the next ones find everything in place.
    sync = d.wait_until(lambda: (v := _last_sync(ast)).endswith("in sync") and v,
                        timeout=HEAL_BOUND_S + 3, interval=0.1,
                        what="a resync")
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \([0-2]s ago\): ok, in sync$", sync), sync

    # Someone deregisters the service through the HTTP API.
    assert agent.put("/v1/agent/service/deregister/" + sid).status_code == 200
    external_deregisters += 1
    _healed("service back after an API deregister", lambda: sid in agent.services())
    ast.wait_log(r"drifted \(service %s is not registered\); re-registering" % re.escape(sid))

    # Someone registers something else under our ID.
    assert agent.put("/v1/agent/service/register",
                     json={"ID": sid, "Name": "Asterisk", "Port": 9999, "Tags": []}).status_code == 200
    _healed("our definition back", lambda: agent.services()[sid]["Port"] == wanted["Port"]
            and agent.services()[sid]["Tags"] == wanted["Tags"] and our_check in agent.checks())

    # Someone removes our check.
    assert agent.put("/v1/agent/check/deregister/" + our_check).status_code == 200
    _healed("check back", lambda: our_check in agent.checks())
    d.wait_health(agent, "Asterisk", sid, "passing")

    # Our maintenance mode is lifted behind our back: it is set again.
    assert "is set" in ast.rx("discovery set maintenance on kernel upgrade")
    assert agent.checks()[maint]["Notes"] == "kernel upgrade"
    assert agent.put("/v1/agent/service/maintenance/%s?enable=false" % sid).status_code == 200
    check = _healed("maintenance back", lambda: agent.checks().get(maint))
    assert check["Notes"] == "kernel upgrade"
    ast.wait_log(r"maintenance mode of %s was lost; setting it again" % re.escape(sid))

    # The agent restarts without its data: service, check and maintenance come back.
    agent.restart()
    _healed("all back after an agent restart",
            lambda: sid in agent.services() and our_check in agent.checks()
            and maint in agent.checks())
    assert agent.checks()[maint]["Notes"] == "kernel upgrade"

    # Maintenance an operator sets with Consul's own tools is theirs: a resync leaves it.
    assert "is unset" in ast.rx("discovery set maintenance off")
    d.wait_health(agent, "Asterisk", sid, "passing")
    assert agent.put("/v1/agent/service/maintenance/%s?enable=true&reason=ops" % sid
                     ).status_code == 200
    time.sleep(3 * RESYNC_S)
    assert agent.checks()[maint]["Notes"] == "ops"
    assert r.status_row(ast.rx("discovery show status"), "Maintenance").startswith("ON in Consul")

    # Never a deregistration to refresh (the agent's log lists every request it served; a
    # restarted agent appends to the same file).
    deregisters = [w for w in r.consul_writes(agent, since) if "/deregister/" in w[1]
                   and "service" in w[1]]
    assert len(deregisters) == external_deregisters, deregisters
    assert sid in agent.services()
    sync = _last_sync(ast)
    assert re.search(r"\([0-2]s ago\): ok", sync), sync
