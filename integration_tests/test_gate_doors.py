"""Every door into the module goes through the gate (issue 19, points 1, 4 and 5), on Asterisk
16 and 22, one Asterisk and one Consul for the whole file:

- after `module unload` the `discovery` CLI commands stay listed and answer "res_discovery_consul
  is not loaded"; its AMI actions answer Error with that message and the session stays open;
  HTTP to its URI answers 503; after `module load` everything works again;
- no AMI session is ever closed by Asterisk because of the module's load or unload window;
- the exact URL Consul polls answers 405 to POST, PUT and DELETE, 200 to GET and HEAD.
"""

import threading
import time
from collections import Counter

import pytest
import requests

from integration_tests import discovery as d
from integration_tests import gate as g
from integration_tests import resilience as r


@pytest.fixture(scope="module")
def box(tmp_path_factory, ast_version, module_so):
    box = g.shared_box(tmp_path_factory, ast_version, module_so)
    yield box
    g.close_box(box)


@pytest.fixture
def ast(box):
    """The shared Asterisk, with the module loaded and registered."""
    return box.ensure_loaded()


LISTED = ("discovery show settings", "discovery show status", "discovery set maintenance",
          "discovery set check", "discovery set drain")


def test_cli_commands_stay_listed_and_say_not_loaded_after_unload_then_work_after_load(box, ast):
    listed = ast.rx("core show help discovery")
    assert all(command in listed for command in LISTED), listed
    r.unload(ast)
    listed = ast.rx("core show help discovery")
    for command in LISTED:
        assert command in listed, "%r is no longer listed after unload:\n%s" % (command, listed)
    for command in g.CLI_COMMANDS:
        out, took = d.timed_rx(ast, command)
        assert g.NOT_LOADED in out, "%r after unload answered:\n%s" % (command, out)
        assert took < 3, (command, took)
    assert ast.is_running()

    d.load(ast)
    status = ast.rx("discovery show status")
    assert g.NOT_LOADED not in status and "Registered:" in status, status
    assert "is set" in ast.rx("discovery set maintenance on back again")
    assert "is unset" in ast.rx("discovery set maintenance off")


def test_ami_actions_say_not_loaded_and_the_session_stays_open_through_unload_and_load(box, ast):
    with d.ami(ast) as session:
        r.unload(ast)
        for name, fields in g.AMI_ACTIONS:
            reply = session.action(name, **fields)
            assert reply.get("Response") == "Error", (name, reply)
            assert reply.get("Message") == g.NOT_LOADED, (name, reply)
            pong = session.action("Ping")  # the same session still takes actions
            assert pong.get("Response") == "Success", (name, pong)

        d.load(ast)
        d.wait_service(box.consul, ast.eid)
        reply = session.action("DiscoverySetCheck", Enable="yes")
        assert reply.get("Response") == "Success", reply
        reply = session.action("DiscoverySetMaintenance", Enable="no")
        assert reply.get("Response") == "Success", reply


def test_http_answers_503_not_loaded_while_unloaded_then_200_after_load(box, ast):
    url = g.check_url(ast)
    assert g.http_get(url).status_code == 200
    r.unload(ast)
    answer = g.http_get(url)
    assert answer.status_code == 503, (answer.status_code, answer.text[:300])
    assert g.NOT_LOADED in answer.text, answer.text[:300]
    d.load(ast)
    d.wait_until(lambda: g.http_get(url).status_code == 200, timeout=10, interval=0.1,
                 what="200 from the check URL after load")


def test_polled_url_answers_405_to_post_put_delete_and_200_to_get_and_head(box, ast):
    consul = box.consul
    g.wait_healthy(consul, ast.eid)
    url = g.polled_url(consul, ast)
    assert "instance=" in url and "expected_eid=" in url, url  # the very URL, query and all
    for method in ("POST", "PUT", "DELETE"):
        answer = requests.request(method, url, timeout=5)
        assert answer.status_code == 405, "%s %s -> %d %r" % (method, url, answer.status_code,
                                                              answer.text[:200])
        assert "GET" in answer.headers.get("Allow", ""), (method, answer.headers)
    assert requests.get(url, timeout=5).status_code == 200
    assert requests.head(url, timeout=5).status_code == 200
    # Consul's own poll of the same URL is still passing afterwards.
    time.sleep(1.5)
    assert g.eid_check(consul, ast)["Status"] == "passing"


CYCLES = 40
PAUSE_S = 0.005  # between a client's actions: busy, with gaps (today's code refuses unloads
                 # while an action is inside)


def test_no_ami_session_is_closed_by_the_load_or_unload_window(box, ast, capsys):
    """AMI clients send the module's actions back to back while the module is unloaded and
    loaded again and again: every session stays open (Asterisk closes one when an action is
    listed but its module is not running: "Permission denied"), and every answer is the
    module's or the gate's "not loaded"."""
    stop = threading.Event()
    counts = Counter()
    closed = []
    lock = threading.Lock()

    def client(offset):
        i = offset
        while not stop.is_set():
            try:
                with d.ami(ast) as session:
                    while not stop.is_set():
                        name, fields = g.AMI_ACTIONS[i % len(g.AMI_ACTIONS)]
                        i += 1
                        kind = g.ami_kind(session.action(name, timeout=15, **fields))
                        with lock:
                            counts[kind] += 1
                        session.blocks.clear()
                        time.sleep(PAUSE_S)
            except (ConnectionError, OSError) as exc:
                with lock:
                    closed.append(repr(exc))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(2)]
    for thread in threads:
        thread.start()
    refused = 0
    try:
        with d.ami(ast) as driver:
            for cycle in range(CYCLES):
                for load_type in ("unload", "load"):
                    deadline = time.monotonic() + 10
                    while True:
                        reply = driver.action("ModuleLoad", timeout=15, Module=d.MODULE,
                                              LoadType=load_type)
                        driver.blocks.clear()
                        if reply.get("Response") == "Success":
                            break
                        # Asterisk's "Could not unload module" (the module in use): counted,
                        # tried again; it must not happen (below), but the sessions come first.
                        refused += 1
                        assert time.monotonic() < deadline, (cycle, load_type, reply)
                        time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    assert ast.is_running()
    with capsys.disabled():
        print("\n[Asterisk %s] %d unload/load cycles (unloads refused and retried: %d): AMI "
              "answers %s; sessions closed: %d"
              % (ast.version, CYCLES, refused, dict(counts), len(closed)))
    assert not closed, "AMI sessions closed by Asterisk: %d (%s)" % (len(closed), closed[:3])
    assert counts["permission denied"] == 0, counts
    assert counts["unknown action"] == 0, counts
    assert counts["real"] > 0 and counts["not loaded"] > 0, counts
    assert refused == 0, "unloads refused: %d" % refused
