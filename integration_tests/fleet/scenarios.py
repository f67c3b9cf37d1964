"""The fleet's scenarios: each disturbs a steady fleet while SIPp places calls, measures, and
returns a Result (calls attempted, failed, the detection or convergence seconds, details).
Tests assert on the details; `make fleet` prints the table. Each leaves the fleet steady, or
in a state Fleet.ensure_steady() repairs.

Every scenario that takes a box out of rotation names how (measure.OUT_OF_ROTATION:
maintenance or drain); rolling_restart(take_out="graceful") leaves it to the module, which
drains by itself on `core restart gracefully`; busy_box() lets the module say a box is busy.
"""

import time

from .host import SERVICE
from .measure import (CHECK_INTERVAL_S, CHECK_TIMEOUT_S, OUT_OF_ROTATION, REAP_BOUND_S,
                      RESYNC_INTERVAL_S, ExtraCheck, Result, active_calls, back_in_rotation,
                      first_times, routed, shares)


def back_and_tally(fleet, run, host, since, until, unrouted_at):
    """Wait for the box to be back in rotation, end the calls and tally them. Returns (when it
    was back, the tally, the times of calls routed to it in [since, until), the last of them,
    seconds from since until it stopped getting new calls: off the list and no call after)."""
    back = back_in_rotation(fleet, host)
    time.sleep(1.0)
    run.stop()
    tally = fleet.tally(run)
    routed_in = [t for t in tally.routed_to(host.service_id) if since <= t < until]
    last = max(routed_in) if routed_in else None
    return back, tally, routed_in, last, max(unrouted_at, last or since) - since


def steady_by_weight(fleet, seconds=12.0):
    """(a) Calls spread over the boxes in proportion to their weights (Meta weight)."""
    run = fleet.calls("weights").start()
    time.sleep(seconds)
    run.stop()
    tally = fleet.tally(run)
    weights = sum(h.weight for h in fleet.hosts)
    got = shares(tally, fleet.hosts)
    expected = {h.name: round(h.weight / weights, 3) for h in fleet.hosts}
    return Result("a", "steady calls by weight", tally.attempted, tally.failed, None,
                  "-", {"shares": got, "expected": expected,
                        "listed": fleet.proxy.list_path.read_text().splitlines()[1:],
                        "max_deviation": round(max(abs(got[n] - expected[n]) for n in got), 3),
                        "wrong_box": len(tally.wrong_box())})


def kill_9(fleet, host=None, observe=4.0):
    """(b) SIGKILL one Asterisk: out of Kamailio's list (and no call routed to it) within
    check interval + timeout; calls it held are the failed ones."""
    host = host or max(fleet.hosts, key=lambda h: h.weight)
    run = fleet.calls("kill9").start()
    time.sleep(3.0)
    held = active_calls(host)
    killed = time.time()
    host.kill_asterisk()
    seen = first_times({"critical": lambda: fleet.status(host) == "critical",
                        "unrouted": lambda: not routed(fleet, host)}, 20, "the killed box out")
    time.sleep(observe)
    restarted = time.time()
    host.asterisk.start()
    back, tally, to_dead, last, stop = back_and_tally(fleet, run, host, killed, restarted,
                                                      seen["unrouted"])
    return Result("b", "kill -9 of one Asterisk", tally.attempted, tally.failed,
                  round(stop, 2), "kill -> no new call to it", {
                      "host": host.name, "calls_on_it_when_killed": held,
                      "critical_after": round(seen["critical"] - killed, 2),
                      "unrouted_after": round(seen["unrouted"] - killed, 2),
                      "last_route_after": round(last - killed, 2) if last else None,
                      "routed_to_dead_box": len(to_dead),
                      "back_in_rotation_after_start": round(back - seen["unrouted"], 2),
                      "bound": CHECK_INTERVAL_S + CHECK_TIMEOUT_S,
                      "wrong_box": len(tally.wrong_box())})


def rolling_restart(fleet, take_out=None, pause=2.0):
    """(c) Restart every Asterisk, one after the other. take_out=None: straight `core stop
    now` (the baseline: the calls a box holds fail); take_out="maintenance" or "drain": out of
    rotation first, restart once its calls ended, back in rotation after; take_out="graceful":
    only `core restart gracefully` (the module drains the box by itself)."""
    key, title = ("c", "rolling restart, no drain") if take_out is None else (
        ("c-graceful", "rolling restart, `core restart gracefully` only")
        if take_out == "graceful" else (f"c-{take_out}", f"rolling restart, {take_out} first"))
    run = fleet.calls(f"rolling-{take_out or 'plain'}").start()
    time.sleep(pause)
    per_host = {}
    for host in fleet.hosts:
        began = time.time()
        if take_out == "graceful":
            held = active_calls(host)
            host.restart_gracefully()
            first_times({"out": lambda: not routed(fleet, host)}, 10, f"{host.name} drained")
        else:
            if take_out is not None:
                OUT_OF_ROTATION[take_out](host, True)
                first_times({"idle": lambda: active_calls(host) == 0}, 60, f"{host.name} idle")
            held = active_calls(host)
            host.restart_asterisk()
            if take_out is not None:
                OUT_OF_ROTATION[take_out](host, False)
        back = back_in_rotation(fleet, host)
        per_host[host.name] = {"back_after": round(back - began, 2), "calls_held": held}
        time.sleep(pause)
    run.stop()
    tally = fleet.tally(run)
    worst = max(v["back_after"] for v in per_host.values())
    return Result(key, title, tally.attempted, tally.failed, worst,
                  "restart -> back in rotation (slowest box)",
                  {"hosts": per_host, "wrong_box": len(tally.wrong_box())})


def _module_cycle(fleet, host):
    """Unload and load the module on host (deregister, register, KV rewritten); seconds
    until its registration passes in the catalog, is routed, and its KV key is held."""
    began = time.time()
    host.reload_module()
    key = f"fleet/{host.service_id}/sip_uri"
    seen = first_times({"passing": lambda: fleet.status(host) == "passing",
                        "routed": lambda: routed(fleet, host),
                        "kv": lambda: fleet.cluster.kv(key)[1] is not None}, 60,
                       f"{host.name} registered again")
    return {k: round(v - began, 2) for k, v in seen.items()}


def consul_servers(fleet):
    """(d) Kill -9 a follower, then (with it back) the leader: registrations, checks and KV
    keep working through what is left, and no call fails."""
    run = fleet.calls("servers").start()
    time.sleep(2.0)
    leader = fleet.cluster.leader()
    follower = next(s for s in fleet.cluster.servers if s is not leader)
    follower.kill()
    with_follower_down = _module_cycle(fleet, fleet.hosts[0])
    follower.launch()
    fleet.wait_steady(90)

    leader = fleet.cluster.leader()
    killed = time.time()
    leader.kill()
    new_leader = fleet.cluster.wait_leader(30, other_than=leader)
    elected = time.time() - killed
    with_leader_killed = _module_cycle(fleet, fleet.hosts[1 % len(fleet.hosts)])
    leader.launch()
    fleet.wait_steady(90)
    time.sleep(1.0)
    run.stop()
    tally = fleet.tally(run)
    return Result("d", "Consul follower killed, then the leader", tally.attempted,
                  tally.failed, round(elected, 2), "leader kill -> new leader", {
                      "killed_follower": follower.node, "killed_leader": leader.node,
                      "new_leader": new_leader.node,
                      "module_cycle_with_follower_down": with_follower_down,
                      "module_cycle_after_leader_killed": with_leader_killed,
                      "wrong_box": len(tally.wrong_box())})


def agent_restart(fleet, host=None, lose_data=False):
    """(e) Restart a host's Consul client agent (SIGTERM: it leaves; then it starts again):
    its Asterisk back in the catalog. With lose_data the agent comes back empty and the
    module must register again (bound today: resync_interval)."""
    host = host or fleet.hosts[1 % len(fleet.hosts)]
    key, title = ("e2", "client agent restarted, data dir lost") if lose_data else (
        "e", "client agent restarted")
    run = fleet.calls(f"agent-{key}").start()
    time.sleep(2.0)
    stopped = time.time()
    host.agent.stop()
    if lose_data:
        host.agent.wipe_data()
    host.agent.start()
    up = time.time()
    seen = first_times({"catalog": lambda: fleet.status(host) == "passing",
                        "routed": lambda: routed(fleet, host)}, 60,
                       f"{host.name} back after its agent restarted")
    time.sleep(1.0)
    run.stop()
    tally = fleet.tally(run)
    return Result(key, title, tally.attempted, tally.failed,
                  round(seen["catalog"] - up, 2), "agent up -> passing in the catalog", {
                      "host": host.name, "agent_down_for": round(up - stopped, 2),
                      "routed_after_agent_up": round(seen["routed"] - up, 2),
                      "resync_interval": RESYNC_INTERVAL_S,
                      "wrong_box": len(tally.wrong_box())})


def ip_reuse(fleet, host=None):
    """(f) An Asterisk dies and a new one (another EID) takes its address: the dead
    registration is critical within one check interval and reaped within 90 s; the new box
    passes all along; no call reaches the wrong box."""
    host = host or fleet.hosts[len(fleet.hosts) // 2]
    old = host.service_id
    run = fleet.calls("ip-reuse", max_seconds=REAP_BOUND_S + 60).start()
    time.sleep(2.0)
    killed = time.time()
    host.kill_asterisk()
    critical = first_times({"critical": lambda: fleet.status(host) == "critical"}, 20,
                           "the dead registration critical")["critical"]
    host.replace_asterisk()
    new = host.service_id
    passing = back_in_rotation(fleet, host)
    states_while_waiting = set()

    def old_gone():
        state = fleet.cluster.service_status(SERVICE, old)
        states_while_waiting.add(state)
        return state is None
    gone = first_times({"gone": old_gone}, REAP_BOUND_S + 15, "the dead registration reaped")
    time.sleep(1.0)
    run.stop()
    tally = fleet.tally(run)
    return Result("f", "new Asterisk on a dead one's IP", tally.attempted, tally.failed,
                  round(critical - killed, 2), "kill -> dead registration critical", {
                      "host": host.name, "old_id": old, "new_id": new,
                      "new_passing_after_kill": round(passing - killed, 2),
                      "reaped_after_critical": round(gone["gone"] - critical, 2),
                      "old_states_seen": sorted(str(s) for s in states_while_waiting),
                      "answered_as_old_after_kill": len([a for a in tally.answers
                                                        if a.service == old
                                                        and a.time >= killed]),
                      "routed_to_old_after_critical": len(
                          [t for t in tally.routed_to(old) if t > critical + 1.0]),
                      "answered_by_new": tally.answered_by().get(new, 0),
                      "refused_as_old_by_new": len([r for r in tally.refused
                                                    if r.service == old]),
                      "wrong_box": len(tally.wrong_box())})


def out_of_rotation(fleet, how="maintenance", host=None, hold=3.0):
    """(g) Maintenance (or drain) on one box: no new call to it within 1 s; its calls end
    normally; back in rotation when it is switched off."""
    host = host or fleet.hosts[1 % len(fleet.hosts)]
    run = fleet.calls(f"out-{how}").start()
    time.sleep(2.0)
    began = time.time()
    OUT_OF_ROTATION[how](host, True)
    unrouted = first_times({"unrouted": lambda: not routed(fleet, host)}, 10,
                           f"{host.name} out of rotation")["unrouted"]
    time.sleep(hold)
    ended = time.time()
    OUT_OF_ROTATION[how](host, False)
    back, tally, while_out, last, stop = back_and_tally(fleet, run, host, began, ended,
                                                        unrouted)
    return Result("g" if how == "maintenance" else f"g-{how}", f"{how} on one box",
                  tally.attempted, tally.failed, round(stop, 2), f"{how} on -> no new call", {
                      "host": host.name, "unrouted_after": round(unrouted - began, 2),
                      "routes_while_out": len([t for t in while_out if t > began + 1.0]),
                      "back_after_off": round(back - ended, 2),
                      "last_route_after": round(last - began, 2) if last else None,
                      "wrong_box": len(tally.wrong_box())})


def warning_and_draining(fleet, host=None, seconds=8.0):
    """One box warning (an extra check; what busy_channels will do): it keeps its lower
    warning weight; then passing but its check says draining: no new call."""
    host = host or max(fleet.hosts, key=lambda h: h.weight)
    check = ExtraCheck(host)
    run = fleet.calls("warning").start()
    try:
        check.set("warning", "busy: fleet test")
        first_times({"warning": lambda: fleet.proxy.destinations().get(host.service_id, "")
                     .startswith("A") and "health=warning" in fleet.proxy.list_path.read_text()},
                    10, f"{host.name} listed as warning")
        marked = time.time()
        listed = fleet.proxy.list_path.read_text().splitlines()[1:]
        time.sleep(seconds)
        warned_until = time.time()
        check.set("passing", "draining: fleet test")
        unrouted = first_times({"out": lambda: not routed(fleet, host)}, 10,
                               f"{host.name} out of rotation while draining")["out"]
        time.sleep(2.0)
        drained_until = time.time()
    finally:
        check.remove()
    back_in_rotation(fleet, host)
    run.stop()
    tally = fleet.tally(run)
    weights = {h.name: (1 if h is host else h.weight) for h in fleet.hosts}
    answers = [a for a in tally.answers if marked <= a.time < warned_until]
    counted = {h.name: len([a for a in answers if a.eid == h.service_id]) for h in fleet.hosts}
    total = sum(counted.values()) or 1
    return Result("w", "one box warning, then draining", tally.attempted, tally.failed,
                  round(unrouted - warned_until, 2), "draining -> no new call", {
                      "host": host.name, "listed_while_warning": listed,
                      "shares_while_warning": {n: round(c / total, 3) for n, c in counted.items()},
                      "expected_while_warning": {n: round(w / sum(weights.values()), 3)
                                                 for n, w in weights.items()},
                      "routes_while_draining": len([t for t in tally.routed_to(host.service_id)
                                                    if unrouted < t < drained_until]),
                      "wrong_box": len(tally.wrong_box())})


def busy_box(fleet, host=None, busy_channels=3, seconds=10.0):
    """(h) One box says it is busy: the module's busy_channels (its check turns warning at that
    many active channels) and Weights (warning weight 1): consumers give it fewer new calls
    while it is busy, none fails, and it is passing again after its calls end (below 90 % for
    the dwell time)."""
    host = host or max(fleet.hosts, key=lambda h: h.weight)
    host.set_options(busy_channels=busy_channels, weight_passing=host.weight, weight_warning=1)
    try:
        run = fleet.calls("busy").start()
        seen = first_times({"busy": lambda: active_calls(host) >= busy_channels,
                            "listed": lambda: "health=warning" in fleet.proxy.list_path.read_text()},
                           20, f"{host.name} busy and listed as warning")
        time.sleep(seconds)
        warned_until = time.time()
        run.stop()
        calls_ended = time.time()
        idle = first_times({"passing": lambda: fleet.status(host) == "passing"
                            and "health=warning" not in fleet.proxy.list_path.read_text()},
                           30, f"{host.name} passing again")["passing"]
    finally:
        host.set_options(busy_channels=0, weight_passing=1, weight_warning=1)
    tally = fleet.tally(run)
    answers = [a for a in tally.answers if seen["listed"] <= a.time < warned_until]
    counted = {h.name: len([a for a in answers if a.eid == h.service_id]) for h in fleet.hosts}
    total = sum(counted.values()) or 1
    weights = {h.name: (1 if h is host else h.weight) for h in fleet.hosts}
    return Result("h", f"one box busy (busy_channels = {busy_channels})", tally.attempted,
                  tally.failed, round(max(0.0, seen["listed"] - seen["busy"]), 2),
                  "busy -> listed as warning", {
                      "host": host.name,
                      "shares_while_busy": {n: round(c / total, 3) for n, c in counted.items()},
                      "expected_while_busy": {n: round(w / sum(weights.values()), 3)
                                              for n, w in weights.items()},
                      "passing_after_calls_ended": round(idle - calls_ended, 2),
                      "wrong_box": len(tally.wrong_box())})


def stale_list(fleet, seconds=5.0):
    """A stale list (the watch stopped while a box was replaced): Kamailio routes calls as
    one box to another box's address. That box refuses them (503: routed as another EID)
    and Kamailio fails them over: none is answered by the wrong box, none fails."""
    meant, other = fleet.hosts[0], fleet.hosts[1 % len(fleet.hosts)]
    fleet.proxy.stop_watch()
    try:
        fleet.proxy.list_path.write_text("".join(
            f"1 sip:{other.ns.address}:5060 0 0 duid={sid};rweight=1;health=passing\n"
            for sid in (meant.service_id, other.service_id)))
        fleet.proxy.reload_list()
        run = fleet.calls("stale-list").start()
        time.sleep(seconds)
        run.stop()
    finally:
        fleet.proxy.start_watch()
    tally = fleet.tally(run)
    return Result("s", "stale list: calls routed as another box", tally.attempted,
                  tally.failed, None, "-", {
                      "refused": len(tally.refused),
                      "refused_as_meant_by_other": len([
                          r for r in tally.refused
                          if r.service == meant.service_id and r.eid == other.service_id]),
                      "answered_by": tally.answered_by(),
                      "wrong_box": len(tally.wrong_box())})


# The live runner's order: key -> (function, kwargs).
SCENARIOS = {
    "a": (steady_by_weight, {}),
    "b": (kill_9, {}),
    "c": (rolling_restart, {}),
    "c-maintenance": (rolling_restart, {"take_out": "maintenance"}),
    "c-drain": (rolling_restart, {"take_out": "drain"}),
    "c-graceful": (rolling_restart, {"take_out": "graceful"}),
    "d": (consul_servers, {}),
    "e": (agent_restart, {}),
    "e2": (agent_restart, {"lose_data": True}),
    "f": (ip_reuse, {}),
    "g": (out_of_rotation, {}),
    "g-drain": (out_of_rotation, {"how": "drain"}),
    "h": (busy_box, {}),
    "w": (warning_and_draining, {}),
    "s": (stale_list, {}),
}
