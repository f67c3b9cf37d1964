"""`module reload` on real Asterisk 16 and 22.

Unchanged file: nothing (no Consul write, no event). Changed: re-registered in place, never
absent from Consul meanwhile (polled during the reload), stale checks replaced. A new ID:
the new one registered, then the old one deregistered. enabled = no deregisters and a later
yes registers again. An invalid file keeps the running configuration and the log says why.
"""

import re
import threading
import time

from integration_tests import discovery as d
from integration_tests import resilience as r

RELOAD = "module reload " + d.MODULE


class Watcher:
    """Polls the agent while a reload runs: which of `ids` were present at each look, and the
    aggregated health of each (what consumers of /v1/health/service see)."""

    def __init__(self, agent, ids):
        self.agent = agent
        self.ids = ids
        self.looks = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                services = self.agent.services()
                health = {e["Service"]["ID"]: {c["Status"] for c in e["Checks"]
                                               if c.get("ServiceID") == e["Service"]["ID"]}
                          for e in d.health_entries(self.agent, "Asterisk")}
            except Exception:  # noqa: BLE001 - a failed look is no evidence either way
                continue
            self.looks.append(({i for i in self.ids if i in services}, health))
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(5)

    def gaps(self):
        return [i for i, (present, _) in enumerate(self.looks) if not present]

    def not_passing(self, service_id):
        return [h.get(service_id) for _, h in self.looks
                if service_id in h and h[service_id] != {"passing"}]


# What the module logs once a reload is taken (unchanged, applied, disabled, started).
RELOAD_TAKEN = (r"unchanged; nothing to do|Consul: settings reloaded|disabled by reload|"
                r"Consul: registering service")


def reload_ok(ast):
    """A reload that worked: Asterisk 22 says so on the CLI; Asterisk 16 prints nothing, so the
    module's own log line is what proves it (and no 'reload ... failed' line)."""
    since = ast.log_offset()
    out = ast.rx(RELOAD)
    assert "fail" not in out.lower() and "error" not in out.lower(), out
    assert "reloaded" in out.lower() or not out.strip(), out
    ast.wait_log(RELOAD_TAKEN, timeout=5, since=since)
    assert not re.search(rb"reload of .* failed", ast.messages_path.read_bytes()[since:]), out
    return out


def test_reload_unchanged_changed_new_id_disabled_and_invalid(asterisk_factory, ast_version,
                                                              module_so, consul_agent):
    agent = consul_agent
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    options = d.write_conf(ast, agent, resync_interval="1s", tags="edge")
    sid = ast.eid
    with d.loaded_with_ami(ast) as ami:
        d.wait_service(agent, sid, Tags=["edge"])
        d.wait_health(agent, "Asterisk", sid, "passing")

        # -- unchanged: nothing at all
        since, log_since = r.consul_log_offset(agent), ast.log_offset()
        reload_ok(ast)
        time.sleep(1.5)  # resyncs run meanwhile (reads only)
        assert r.consul_writes(agent, since) == []
        assert not ami.events("DiscoveryRegister") and not ami.events("DiscoveryDeregister")
        ast.wait_log(r"unchanged; nothing to do", since=log_since)

        # -- changed: in place, no gap, no flap, one write
        since = r.consul_log_offset(agent)
        options.update(tags="edge,blue", discovery_port=5080)
        d.write_conf(ast, **options)
        with Watcher(agent, [sid]) as watcher:
            reload_ok(ast)
            d.wait_service(agent, sid, Tags=["edge", "blue"], Port=5080)
        assert watcher.looks and not watcher.gaps(), watcher.looks
        assert not watcher.not_passing(sid), watcher.not_passing(sid)
        writes = r.consul_writes(agent, since)
        assert len(writes) == 1 and "/v1/agent/service/register" in writes[0][1], writes
        event = ami.wait_event("DiscoveryRegister", ID=sid)
        assert event["Port"] == "5080"
        assert not ami.events("DiscoveryDeregister")

        # -- check = yes -> no: the check goes with the re-registration
        our_check = "check-asterisk-eid-" + sid
        assert our_check in agent.checks()
        options.update(check="no")
        d.write_conf(ast, **options)
        with Watcher(agent, [sid]) as watcher:
            reload_ok(ast)
            d.wait_until(lambda: our_check not in agent.checks(), timeout=5, interval=0.1,
                         what="check removed")
        assert not watcher.gaps()
        options.update(check="yes")
        d.write_conf(ast, **options)
        reload_ok(ast)
        d.wait_until(lambda: our_check in agent.checks(), timeout=5, interval=0.1,
                     what="check back")
        d.wait_health(agent, "Asterisk", sid, "passing")

        # -- a new ID: the new one first, then the old one goes
        since = r.consul_log_offset(agent)
        options.update(id="pbx-reloaded")
        d.write_conf(ast, **options)
        with Watcher(agent, [sid, "pbx-reloaded"]) as watcher:
            reload_ok(ast)
            d.wait_gone(agent, sid, timeout=5)
            d.wait_service(agent, "pbx-reloaded")
        assert not watcher.gaps()
        writes = [w[1] for w in r.consul_writes(agent, since)]
        registered = next(i for i, w in enumerate(writes) if w.startswith("/v1/agent/service/register"))
        deregistered = next(i for i, w in enumerate(writes) if "/service/deregister/" in w)
        assert registered < deregistered, writes
        assert ami.wait_event("DiscoveryRegister", ID="pbx-reloaded")
        assert ami.wait_event("DiscoveryDeregister", ID=sid)

        # -- enabled = no deregisters (the module stays loaded); yes registers again
        d.write_conf(ast, general={"enabled": "no"}, **options)
        reload_ok(ast)
        d.wait_gone(agent, "pbx-reloaded", timeout=5)
        assert ami.wait_event("DiscoveryDeregister", ID="pbx-reloaded")
        assert d.module_running(ast)
        assert "disabled" in ast.rx("discovery show status")
        assert r.consul_threads(ast) == 0  # the pulse stays while the module is loaded
        d.write_conf(ast, general={"enabled": "yes"}, **options)
        reload_ok(ast)
        d.wait_service(agent, "pbx-reloaded", timeout=5)
        assert r.registrar_threads(ast) == 1

        # -- an invalid file: the running configuration stays, the log says why
        since, log_since = r.consul_log_offset(agent), ast.log_offset()
        bad = dict(options, port=99999)
        d.write_conf(ast, **bad)
        out = ast.rx(RELOAD)
        line = d.conf_line(ast, "port")
        ast.wait_log(r"res_discovery_consul\.conf:%d: \[consul\] port = '99999': must be a whole "
                     r"number from 1 to 65535" % line, since=log_since)
        ast.wait_log(r"reload of res_discovery_consul\.conf failed; the running configuration "
                     r"stays in use", since=log_since)
        time.sleep(1.5)
        assert "pbx-reloaded" in agent.services() and r.consul_writes(agent, since) == []
        settings = ast.rx("discovery show settings")
        assert re.search(r"^\s*port\s+%d\s" % agent.http_port, settings, re.M), settings
        assert "pbx-reloaded" in ast.rx("discovery show status")
        assert d.module_running(ast), out
