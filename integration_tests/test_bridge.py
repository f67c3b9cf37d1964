"""The bridge in real Asterisk 16 and 22: load paths, every handler kind, failures, the
module lifecycle under load, and shutdown.

These tests load the probe application (integration_tests/apps/probe.py), around which the shim
is built for them, so they exercise the shim and bridge.py without Consul.
"""

import json
import re
import threading
import time

import pytest
import requests

from integration_tests.amiclient import AmiSession
from integration_tests.testbed import build

MODULE = "res_discovery_consul.so"


@pytest.fixture(scope="session")
def probe_so(ast_version, module_so):
    """The module built around the probe application (after the real one, which checks the
    test bed)."""
    return build.build_module(ast_version, app=build.PROBE_APP)


@pytest.fixture
def probe_asterisk(asterisk_factory, ast_version, probe_so):
    """An Asterisk with the probe module installed (not loaded)."""
    return asterisk_factory(ast_version, install=[probe_so])


def load(ast):
    out = ast.rx("module load " + MODULE)
    assert "Loaded" in out or "loaded" in out, out
    assert module_running(ast), ast.rx("module show like res_discovery_consul")


def module_running(ast):
    # "<use count>  Running", not "Not Running" (a declined module stays listed that way).
    listing = ast.rx("module show like res_discovery_consul")
    return re.search(r"res_discovery_consul\.so\s.*\d+\s+Running\s", listing) is not None


def test_load_from_cli_runs_python_with_its_packages(probe_asterisk):
    ast = probe_asterisk
    load(ast)
    match = ast.wait_log(r"probe: loaded on Python (\S+) with (OpenSSL[^,]*), requests (\S+), json json")
    assert match.group(3)
    facts = json.loads(ast.rx("probe facts"))
    assert facts["eid"] == ast.eid
    assert facts["version"].startswith(ast.version + ".")
    assert facts["config_dir"].endswith("/etc")
    assert facts["fully_booted"] is True and facts["shutting_down"] is False
    assert facts["channels"] == 0
    # The Python that built the module, its virtualenv included, without any PYTHONPATH.
    assert facts["prefix"].endswith("venv"), facts
    assert any(p.endswith("site-packages") and facts["prefix"] in p for p in facts["path"]), facts


def test_load_at_startup_from_modules_conf(asterisk_factory, ast_version, probe_so):
    ast = asterisk_factory(ast_version, install=[probe_so], modules=[MODULE])
    ast.wait_log(r"probe: loaded on Python")
    assert module_running(ast)
    assert ast.rx("probe echo at boot").strip() == "echo: at boot"


def test_cli_http_ami_answer_from_python(probe_asterisk):
    ast = probe_asterisk
    load(ast)
    assert ast.rx("probe echo hello world").strip() == "echo: hello world"
    # Tab completion answers come from Python.
    # (Asterisk lists the common prefix first, then the matches.)
    matches = ast.rx('_command matchesarray "probe echo b" "b"').split()
    assert "beta" in matches and "bravo" in matches and "alpha" not in matches, matches
    assert "probe fail" in ast.rx("core show help probe")

    r = requests.get(ast.http_url("/probe/some/path"), params={"a": "1", "b": "x y"},
                     headers={"X-Test": "t"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["X-Probe"] == "yes"
    body = r.json()
    assert body["method"] == "GET" and body["path"] == "some/path"
    assert body["params"] == [["a", "1"], ["b", "x y"]]
    assert ["X-Test", "t"] in body["headers"]
    assert int(r.headers["Content-Length"]) == len(r.content)

    head = requests.head(ast.http_url("/probe/x"), timeout=5)
    assert head.status_code == 200 and head.content == b""

    # Keep-alive: several requests over one connection.
    with requests.Session() as session:
        for i in range(5):
            assert session.get(ast.http_url("/probe/k%d" % i), timeout=5).json()["path"] == "k%d" % i

    with AmiSession(ast.manager_port, ast.manager_user, ast.manager_secret) as ami:
        reply = ami.action("ProbeEcho", Echo="over AMI")
        assert reply["Response"] == "Success" and reply["Echo"] == "over AMI"
        assert ami.wait_event("ProbeEvent")["Echo"] == "over AMI"


def test_the_shim_replays_a_declared_answer_without_python_until_it_changes(probe_asterisk):
    ast = probe_asterisk
    load(ast)
    with requests.Session() as session:
        for _ in range(20):  # kept alive and fresh connections alike
            r = session.get(ast.http_url("/probe/replayed"), params={"a": "1"}, timeout=5)
            assert (r.status_code, r.text, r.headers["X-Declared"]) == (200, "declared 0\n", "yes")
        head = session.head(ast.http_url("/probe/replayed"), params={"a": "1"}, timeout=5)
        assert head.status_code == 200 and head.content == b""
    assert ast.rx("probe handled").strip() == "0"  # Python saw none of them
    # Any other request, however close, is Python's.
    for params in ({"a": "2"}, {"a": "1", "b": "x"}, {}):
        assert requests.get(ast.http_url("/probe/replayed"), params=params,
                            timeout=5).json()["path"] == "replayed"
    assert requests.get(ast.http_url("/probe/other"), params={"a": "1"}, timeout=5).json()
    assert ast.rx("probe handled").strip() == "4"
    # Python declares a new answer: the next request gets it.
    ast.rx("probe declare declared 1")
    assert requests.get(ast.http_url("/probe/replayed"), params={"a": "1"},
                        timeout=5).text == "declared 1\n"
    # Unload empties the table with everything else (the gate answers for the module while
    # it is away); a new load declares again.
    ast.rx("module unload " + MODULE)
    away = requests.get(ast.http_url("/probe/replayed"), params={"a": "1"}, timeout=5)
    assert (away.status_code, "res_discovery_consul is not loaded" in away.text) == (503, True)
    load(ast)
    assert requests.get(ast.http_url("/probe/replayed"), params={"a": "1"},
                        timeout=5).text == "declared 0\n"


def test_exceptions_in_handlers_are_logged_and_answered(probe_asterisk):
    ast = probe_asterisk
    load(ast)
    out = ast.rx("probe raise")
    assert "internal error" in out
    ast.wait_log(r"(?s)CLI command failed:\nTraceback.*ValueError: probe: CLI handler raised on purpose")

    r = requests.get(ast.http_url("/probe/raise"), timeout=5)
    assert r.status_code == 500
    ast.wait_log(r"(?s)HTTP request failed:\nTraceback.*RuntimeError: probe: HTTP handler raised on purpose")

    assert ast.is_running()
    assert ast.rx("probe echo still here").strip() == "echo: still here"


def test_python_failure_declines_and_a_later_load_works(probe_asterisk):
    ast = probe_asterisk
    ast.write_config("probe.fail", "load\n")
    ast.rx("module load " + MODULE)
    ast.wait_log(r"(?s)module load failed:\nTraceback.*probe: load failed on purpose")
    assert not module_running(ast)
    (ast.etc_dir / "probe.fail").unlink()
    load(ast)
    assert ast.rx("probe echo recovered").strip() == "echo: recovered"


def _traffic(ast, stop, counts):
    """HTTP requests against the module while it is being cycled; any answer is fine."""
    session = requests.Session()
    while not stop.is_set():
        try:
            r = session.get(ast.http_url("/probe/t"), timeout=5)
            counts[r.status_code] = counts.get(r.status_code, 0) + 1
        except requests.RequestException:
            counts["error"] = counts.get("error", 0) + 1
            session = requests.Session()


def test_unload_load_and_reload_cycles_under_traffic(probe_asterisk, capsys):
    ast = probe_asterisk
    load(ast)
    rss_before = ast.rss_kb()
    stop = threading.Event()
    counts = {}
    worker = threading.Thread(target=_traffic, args=(ast, stop, counts))
    worker.start()
    unload_refused = 0
    try:
        for i in range(200):
            out = ast.rx("module unload " + MODULE)
            if "use count" in out or "Unable to unload" in out:
                unload_refused += 1  # a request in flight holds a reference: try again
                out = ast.rx("module unload " + MODULE)
                while module_running(ast):
                    time.sleep(0.01)
                    out = ast.rx("module unload " + MODULE)
            ast.rx("module load " + MODULE)
            if i % 20 == 0:
                assert ast.rx("probe echo cycle %d" % i).strip() == "echo: cycle %d" % i
        for i in range(50):
            assert "reloaded" in ast.rx("module reload " + MODULE).lower()
            if i % 10 == 0:
                ast.rx("probe echo reload %d" % i)
    finally:
        stop.set()
        worker.join()
    rss_after = ast.rss_kb()
    with capsys.disabled():
        print("\n[Asterisk %s] RSS before %d kB, after 200 unload/load + 50 reload: %d kB (%+d kB); "
              "HTTP answers during the cycles: %s; unloads retried for in-flight requests: %d"
              % (ast.version, rss_before, rss_after, rss_after - rss_before, counts, unload_refused))
    assert ast.is_running()
    assert module_running(ast)
    assert ast.rx("probe echo alive").strip() == "echo: alive"
    assert requests.get(ast.http_url("/probe/alive"), timeout=5).status_code == 200
    # Exactly one worker thread: every earlier load's thread was stopped and joined.
    assert json.loads(ast.rx("probe threads")).count("probe-worker") == 1
    assert counts.get(200, 0) > 0
    assert "Fatal Python error" not in ast.stdout_text()


def _request_inside(ast, seconds):
    """A request held inside Python for `seconds`; returns its thread and where its answer goes."""
    slow = {}
    inside = threading.Thread(target=lambda: slow.update(
        answer=requests.get(ast.http_url("/probe/sleep"), params={"s": str(seconds)}, timeout=20)))
    inside.start()
    time.sleep(0.5)
    return inside, slow


def test_unload_waits_for_a_request_inside_then_unloads_and_loads_again(probe_asterisk):
    ast = probe_asterisk
    load(ast)
    inside, slow = _request_inside(ast, 2)
    out, waited = timed_rx(ast, "module unload " + MODULE)
    assert "Unloaded" in out and waited >= 1.0, (out, waited)
    inside.join(20)
    assert slow["answer"].status_code == 200
    load(ast)
    assert ast.rx("probe echo back").strip() == "echo: back"


def test_unload_never_refuses_and_keeps_a_request_stuck_past_its_bound_in_mapped_memory(probe_asterisk):
    ast = probe_asterisk
    load(ast)
    # An HTTP request holds no module reference: the gate's count must see it.
    inside, slow = _request_inside(ast, 8)
    since = ast.log_offset()
    out, waited = timed_rx(ast, "module unload " + MODULE, timeout=20)
    assert "Unloaded" in out, out
    assert 4.5 <= waited < 7.5, waited
    ast.wait_log(r"res_discovery_consul unloaded while a command was still inside it: its library "
                 r"stays in memory and it cannot be loaded again before Asterisk restarts", since=since)
    # The gate answers for the module: CLI, AMI (the session stays open) and HTTP.
    assert "res_discovery_consul is not loaded" in ast.rx("probe echo gone")
    assert requests.get(ast.http_url("/probe/again"), timeout=5).status_code == 503
    with AmiSession(ast.manager_port, ast.manager_user, ast.manager_secret) as ami:
        for _ in range(2):
            reply = ami.action("ProbeEcho", Echo="x")
            assert (reply["Response"], reply["Message"]) == ("Error", "res_discovery_consul is not loaded")
    # The request stuck inside returns into the library, which is still mapped.
    inside.join(20)
    assert slow["answer"].status_code == 200
    assert ast.is_running()
    assert "Unable to load" in ast.rx("module load " + MODULE)
    assert ast.is_running() and "Segmentation" not in ast.stdout_text()


def timed_rx(ast, command, timeout=10):
    began = time.monotonic()
    out = ast.rx(command, timeout=timeout)
    return out, time.monotonic() - began


@pytest.mark.parametrize("command", ["core stop now", "core stop gracefully", "core restart now"])
def test_shutdown_runs_the_python_hook_and_exits_cleanly(probe_asterisk, command):
    ast = probe_asterisk
    load(ast)
    since = ast.log_offset()
    ast._rx_raw(command, timeout=10)
    ast.wait_log(r"probe: shutdown hook ran \(shutting_down=True\)", timeout=20, since=since)
    if command == "core restart now":
        # The same process re-executes itself and comes back.
        ast.wait_log(r"Asterisk Ready", timeout=30, since=since)
        assert ast.is_running()
        ast.stop()
    else:
        assert ast.proc.wait(20) == 0
    assert "Segmentation" not in ast.stdout_text() and "Fatal Python error" not in ast.stdout_text()
    # Exactly one hook call per shutdown.
    assert len(re.findall(r"probe: shutdown hook ran", ast.log_text(since))) == 1
