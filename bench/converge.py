"""How long Consul takes to show what is true of an Asterisk, at the module's default settings
(check_interval 15s, resync_interval 30s, check_ttl 30s), with check = yes and
check_type = both. Each run:

    module load                         -> in /v1/health/service/<name>?passing (consumers' view)
    discovery set maintenance on / off  -> out of that set / back in
    discovery set drain on / off        -> out / back in
    the agent restarted (a -dev agent comes back empty on the same port)
                                        -> registered again, passing again (from the agent
                                           answering again)
    core stop gracefully, a call up     -> out of the set; the call ends -> deregistered
    kill -9 of another Asterisk         -> its EID check critical (Consul's next poll), its
                                           TTL check critical (check_ttl after the last report)

Every time is measured with blocking queries on Consul's health or catalog endpoints, from
just before the action (the CLI command includes starting `asterisk -rx`, ~10 ms here).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, List, Optional
from urllib.parse import quote

from integration_tests.calls import HOLD_DIALPLAN, MODULES, hold_call

from .harness import Bed, CatalogWatch, ModuleControl, log, summary

AGENT_DOWN_S = 0.5
TTL_REPORT_S = 10.0  # the TTL check is reported every third of check_ttl (30s)
OPTIONS = {"check": "yes", "check_type": "both", "check_interval": None}

# (key, what is timed): the order the table prints them in.
FIGURES = (
    ("load_to_passing", "module load (cold) -> passing in Consul's health"),
    ("maintenance_on_to_out", "discovery set maintenance on -> out of the healthy set"),
    ("maintenance_off_to_in", "discovery set maintenance off -> back in"),
    ("drain_on_to_out", "discovery set drain on -> out of the healthy set"),
    ("drain_off_to_in", "discovery set drain off -> back in"),
    ("agent_restart_to_registered", "agent restart -> registered again (from its answer)"),
    ("agent_restart_to_passing", "agent restart -> passing again (from its answer)"),
    ("graceful_stop_to_out", "core stop gracefully (a call up) -> out of the healthy set"),
    ("calls_ended_to_deregistered", "  ... the call ends -> deregistered"),
    ("kill_to_eid_critical", "kill -9 -> the EID check critical"),
    ("kill_to_ttl_critical", "kill -9 -> the TTL check critical"),
)

Entries = list


def _service_id(entry: dict) -> str:
    # A health entry nests the service; a catalog entry has ServiceID (its "ID" is the node's).
    return entry["Service"]["ID"] if "Service" in entry else entry.get("ServiceID", "")


def _listed(service_id: str) -> Callable[[Entries], bool]:
    return lambda entries: any(_service_id(e) == service_id for e in entries)


def _not_listed(service_id: str) -> Callable[[Entries], bool]:
    listed = _listed(service_id)
    return lambda entries: not listed(entries)


def _check_is(service_id: str, check_id: str, status: str) -> Callable[[Entries], bool]:
    def judge(entries: Entries) -> bool:
        for entry in entries:
            if entry["Service"]["ID"] == service_id:
                return any(c["CheckID"] == check_id and c["Status"] == status
                           for c in entry.get("Checks") or [])
        return False
    return judge


def _timed(bed: Bed, action: Callable[[], None], view: str, until, timeout: float = 15.0,
           what: str = "") -> float:
    watch = CatalogWatch(bed, view=view, until=until, timeout=timeout)
    began = time.monotonic()
    action()
    took = watch.result(began)
    if took is None:
        raise RuntimeError("%s: not seen within %.0f s" % (what or view, timeout))
    return took


def _cli(ast, command: str, expect: str) -> Callable[[], None]:
    def act() -> None:
        out = ast.rx(command)
        if expect not in out:
            raise RuntimeError("`%s` answered: %s" % (command, out.strip()))
    return act


def _operator_run(bed: Bed, samples: Dict[str, List[float]]) -> None:
    """One Asterisk able to hold a call: load, maintenance, drain, agent restart, graceful stop."""
    ast = bed.asterisk(start=False, modules=MODULES, **OPTIONS)
    flag = ast.host_dir / "end-the-calls"
    ast.write_config("extensions.conf", HOLD_DIALPLAN % {"flag": ast.to_asterisk_path(flag)})
    ast.start()
    sid = ast.eid
    stopper: Optional[threading.Thread] = None
    try:
        ctl = ModuleControl(ast)
        try:
            samples["load_to_passing"].append(_timed(
                bed, ctl.load, "passing", _listed(sid), what="load -> passing"))
        finally:
            ctl.close()
        for word, key_on, key_off in (("maintenance", "maintenance_on_to_out", "maintenance_off_to_in"),
                                      ("drain", "drain_on_to_out", "drain_off_to_in")):
            on_text = "is set" if word == "maintenance" else "is on"
            off_text = "is unset" if word == "maintenance" else "is off"
            samples[key_on].append(_timed(
                bed, _cli(ast, "discovery set %s on bench" % word, on_text), "passing",
                _not_listed(sid), what="%s on -> out" % word))
            samples[key_off].append(_timed(
                bed, _cli(ast, "discovery set %s off" % word, off_text), "passing",
                _listed(sid), what="%s off -> in" % word))

        bed.consul.stop()
        time.sleep(AGENT_DOWN_S)
        bed.consul.start()
        back = time.monotonic()
        registered = CatalogWatch(bed, view="catalog", until=_listed(sid), timeout=60)
        passing = CatalogWatch(bed, view="passing", until=_listed(sid), timeout=60)
        for key, watch in (("agent_restart_to_registered", registered),
                           ("agent_restart_to_passing", passing)):
            took = watch.result(back)
            if took is None:
                raise RuntimeError("not %s within 60 s of the agent's restart" % key)
            samples[key].append(took)

        hold_call(ast)
        stopper = threading.Thread(target=ast._rx_raw, args=("core stop gracefully", 60),
                                   daemon=True)  # returns only when Asterisk stops
        samples["graceful_stop_to_out"].append(_timed(
            bed, stopper.start, "passing", _not_listed(sid), what="core stop gracefully -> out"))
        samples["calls_ended_to_deregistered"].append(_timed(
            bed, flag.touch, "catalog", _not_listed(sid), timeout=30,
            what="calls ended -> deregistered"))
        ast.proc.wait(30)
    finally:
        if stopper is not None:
            stopper.join(10)
        bed.discard(ast)


def _kill_run(bed: Bed, samples: Dict[str, List[float]], delay_s: float) -> None:
    """kill -9 `delay_s` after the load: the runs spread the kill over the TTL report interval
    (Consul spreads its EID polls by itself: a new check's first poll is at random)."""
    ast = bed.asterisk(**OPTIONS)
    sid = ast.eid
    try:
        ctl = ModuleControl(ast)
        try:
            _timed(bed, ctl.load, "passing", _listed(sid), what="load -> passing")
        finally:
            ctl.close()
        time.sleep(delay_s)
        eid = CatalogWatch(bed, view="health", timeout=45,
                           until=_check_is(sid, "check-asterisk-eid-%s" % sid, "critical"))
        ttl = CatalogWatch(bed, view="health", timeout=70,
                           until=_check_is(sid, "check-asterisk-ttl-%s" % sid, "critical"))
        began = time.monotonic()
        ast.kill()
        for key, watch in (("kill_to_eid_critical", eid), ("kill_to_ttl_critical", ttl)):
            took = watch.result(began)
            if took is None:
                raise RuntimeError("%s: not seen" % key)
            samples[key].append(took)
    finally:
        bed.discard(ast)
        # Consul would keep the dead box's registration until check_deregister_after.
        bed.consul.put("/v1/agent/service/deregister/%s" % quote(sid, safe=""))


def run(bed: Bed, runs: int = 5) -> Dict[str, object]:
    samples: Dict[str, List[float]] = {key: [] for key, _ in FIGURES}
    for number in range(1, runs + 1):
        _operator_run(bed, samples)
        _kill_run(bed, samples, delay_s=(number - 0.5) / runs * TTL_REPORT_S)
        log("converge: run %d of %d done" % (number, runs))
    out: Dict[str, object] = {"runs": runs, "settings": "check = yes, check_type = both, "
                              "defaults otherwise (check_interval 15s, resync_interval 30s, "
                              "check_ttl 30s)"}
    out["figures"] = {key: summary(samples[key]) for key, _ in FIGURES}
    for key, text in FIGURES:
        s = out["figures"][key]
        log("converge: %-60s median %8.1f ms, worst %8.1f ms" % (
            text.strip(), s.get("median_ms", float("nan")), s.get("max_ms", float("nan"))))
    return out
