"""`module unload` never lets Asterisk reach into an unmapped module, on Asterisk 16 and 22.

500 unload/load cycles (and a reload every 20) of the real module against a real Consul agent,
while other threads keep every door into the module busy: each CLI command of the module and
tab completion (through `asterisk -rx` and through AMI's Command action), the AMI actions, and
HTTP requests to the EID check over kept-alive and fresh connections. Every unload is done at
once (the gate waits for the calls inside; it never needs to refuse), Asterisk never crashes or
hangs, no AMI session is ever closed by Asterisk, each kind of call (CLI, CLI over AMI, AMI
actions, HTTP) gets real answers from the module during the cycles (the gate's "not loaded" and
Asterisk's refusals are counted apart), and at the end the module works and runs exactly one
worker thread.
"""

import os
import subprocess
import threading
import time
from collections import Counter

import requests

from integration_tests import discovery as d
from integration_tests import gate as g
from integration_tests import resilience as r

# 500 in CI; UNLOAD_RACE_CYCLES=20 for a quick local look at the counts.
CYCLES = int(os.environ.get("UNLOAD_RACE_CYCLES", "500"))
RELOAD_EVERY = 20
RX_TIMEOUT_S = 15  # a hang fails the test instead of blocking it
UNLOAD_RETRY_S = 30
AMI_PAUSE_S = 0.003  # AMI clients pause between actions: busy, but not a flood that refuses every unload

CLI_COMMANDS = (
    "discovery show settings",
    "discovery show status",
    "discovery set maintenance on stress test",
    "discovery set maintenance off",
    "discovery set check off",
    "discovery set check on",
    '_command matchesarray "discovery set maintenance " ""',
    '_command matchesarray "discovery set check o" "o"',
)
AMI_ACTIONS = (
    ("DiscoverySetMaintenance", {"Enable": "yes", "Reason": "stress"}),
    ("DiscoverySetMaintenance", {"Enable": "no"}),
    ("DiscoverySetCheck", {"Enable": "no"}),
    ("DiscoverySetCheck", {"Enable": "yes"}),
)


class Traffic:
    """Threads that keep calling into the module until stop(); counts what they saw."""

    def __init__(self, ast):
        self.ast = ast
        self.counts = Counter()
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []

    def count(self, what):
        with self._lock:
            self.counts[what] += 1

    def fail(self, what):
        with self._lock:
            self.errors.append(what)

    def start(self):
        eid_url = self.ast.http_url("/res_discovery_consul/check_eid?expected_eid=" + self.ast.eid)
        for offset in range(3):
            self._spawn(self._cli, offset)
        self._spawn(self._ami_actions)
        self._spawn(self._ami_cli)
        self._spawn(self._http, eid_url, True)
        self._spawn(self._http, eid_url, False)

    def _spawn(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(RX_TIMEOUT_S + 5)
        return [t for t in self._threads if t.is_alive()]

    def _cli(self, offset):
        i = offset
        while not self._stop.is_set():
            command = CLI_COMMANDS[i % len(CLI_COMMANDS)]
            i += 1
            try:
                out = self.ast.rx(command, timeout=RX_TIMEOUT_S)
                self.count(_kind("cli", g.cli_kind(out)))
            except TimeoutError:
                self.fail("CLI hung: %s" % command)
                return
            except RuntimeError:
                self.count("cli failed")  # `asterisk -rx` exited non-zero: no answer

    def _ami_actions(self):
        self._ami_loop("ami", AMI_ACTIONS)

    def _ami_cli(self):
        self._ami_loop("ami_cli", [("Command", {"Command": c}) for c in CLI_COMMANDS])

    def _ami_loop(self, what, actions):
        """Send actions in turn over one AMI session. A session Asterisk hangs up (it does
        after "Permission denied": an action listed while its module is not running) is
        counted, and the client logs in again."""
        i = 0
        while not self._stop.is_set():
            try:
                with d.ami(self.ast) as ami:
                    while not self._stop.is_set():
                        name, fields = actions[i % len(actions)]
                        i += 1
                        reply = ami.action(name, timeout=RX_TIMEOUT_S, **fields)
                        self.count(_kind(what, g.ami_kind(reply)))
                        ami.blocks.clear()  # events would pile up otherwise
                        time.sleep(AMI_PAUSE_S)
            except TimeoutError:
                self.fail("%s hung: %s" % (what, actions[(i - 1) % len(actions)]))
                return
            except (ConnectionError, OSError):
                self.count(what + " session closed")

    def _http(self, url, keep_alive):
        session = requests.Session()
        while not self._stop.is_set():
            try:
                if keep_alive:
                    answer = session.get(url, timeout=RX_TIMEOUT_S)
                else:
                    answer = requests.get(url, timeout=RX_TIMEOUT_S, headers={"Connection": "close"})
                self.count(_kind("http", g.http_kind(answer)))
                self.count("http %d" % answer.status_code)
            except requests.Timeout:
                self.fail("HTTP request hung")
                return
            except requests.RequestException:
                self.count("http refused")
                session = requests.Session()


def _kind(what, kind):
    """The counter of one answer: `what` itself for a real answer, else `what (kind)`."""
    return what if kind == "real" else "%s (%s)" % (what, kind)


class CycleDriver:
    """Loads, unloads and reloads the module over an AMI session of its own (ModuleLoad runs the
    same code as the CLI's `module` commands, without a process per command). A dead or hung
    Asterisk fails with what happened."""

    def __init__(self, ast):
        self.ast = ast
        self.ami = d.ami(ast)
        self.refused = 0

    def _module(self, load_type, cycle):
        try:
            reply = self.ami.action("ModuleLoad", timeout=RX_TIMEOUT_S, Module=d.MODULE,
                                    LoadType=load_type)
        except (TimeoutError, ConnectionError, OSError) as exc:
            try:  # a crash closes the connection a moment before the process is gone
                state = "exited with %s" % self.ast.proc.wait(3)
            except subprocess.TimeoutExpired:
                state = "did not answer (%r)" % exc
            raise AssertionError("cycle %d: module %s: Asterisk %s\n%s"
                                 % (cycle, load_type, state, self.ast.diagnostics())) from None
        self.ami.blocks.clear()
        return reply.get("Response") == "Success", reply.get("Message", "")

    def unload(self, cycle):
        """Unload until it is done. A refusal (by Asterisk: a command holds the module; or by
        the module: a door could not be shut in time) is said in the log, and is tried again."""
        deadline = time.monotonic() + UNLOAD_RETRY_S
        while True:
            done, message = self._module("unload", cycle)
            if done:
                return
            self.refused += 1
            assert time.monotonic() < deadline, ("cycle %d: the unload was refused for %d s: %s"
                                                 % (cycle, UNLOAD_RETRY_S, message))
            time.sleep(0.02)  # as an operator would, a moment before trying again

    def load(self, cycle):
        done, message = self._module("load", cycle)
        assert done, "cycle %d: %s\n%s" % (cycle, message, self.ast.log_text()[-2000:])

    def reload(self, cycle):
        done, message = self._module("reload", cycle)
        assert done, "cycle %d: %s" % (cycle, message)

    def close(self):
        self.ami.close()


def test_unload_load_and_reload_cycles_while_every_door_is_busy(
        asterisk_factory, ast_version, module_so, consul_agent, capsys):
    agent = consul_agent
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, agent, consul_timeout_ms=500, check_type="both", check_ttl="10s")
    d.load(ast)
    d.wait_service(agent, ast.eid)

    traffic = Traffic(ast)
    driver = CycleDriver(ast)
    reloads = 0
    began = time.monotonic()
    traffic.start()
    try:
        for cycle in range(CYCLES):
            driver.unload(cycle)
            assert r.module_threads(ast) == 0, "cycle %d: a thread outlived unload" % cycle
            driver.load(cycle)
            if cycle % RELOAD_EVERY == RELOAD_EVERY - 1:
                driver.reload(cycle)
                reloads += 1
                assert d.module_running(ast), ast.rx("module show like res_discovery_consul")
            assert not traffic.errors, traffic.errors
    finally:
        stuck = traffic.stop()
        driver.close()
    took = time.monotonic() - began
    refused = driver.refused

    assert not stuck, "traffic threads still blocked in Asterisk: %r" % stuck
    assert not traffic.errors, traffic.errors
    assert ast.is_running()
    # The module works at the end: registered, healthy once maintenance is off and the check on.
    ast.rx("discovery set maintenance off")
    ast.rx("discovery set check on")
    d.wait_service(agent, ast.eid, timeout=10)
    d.wait_health(agent, "Asterisk", ast.eid, "passing", timeout=15)
    assert r.registrar_threads(ast) == 1
    assert d.http_get(ast, "/res_discovery_consul/check_eid?expected_eid=" + ast.eid).status_code == 200
    stdout, log = ast.stdout_text(), ast.log_text()
    for bad in ("Segmentation", "Fatal Python error", "Traceback", "still running inside"):
        assert bad not in stdout and bad not in log, bad
    refusals_logged = log.count("stays loaded") + log.count("Soft unload failed")
    assert refusals_logged >= refused
    counts = traffic.counts
    closed = counts["ami session closed"] + counts["ami_cli session closed"]
    with capsys.disabled():
        print("\n[Asterisk %s] %d unload/load cycles and %d reloads in %.1f s; unloads refused "
              "(and retried): %d; real answers during the cycles: CLI %d, CLI over AMI %d, AMI "
              "actions %d, HTTP %d; AMI sessions closed by Asterisk: %d; every count: %s"
              % (ast.version, CYCLES, reloads, took, refused, counts["cli"], counts["ami_cli"],
                 counts["ami"], counts["http"], closed, dict(sorted(counts.items()))))
    # Each kind of door got real answers from the module (not only the gate's "not loaded").
    for kind in ("cli", "ami_cli", "ami", "http"):
        assert counts[kind] > 0, "no real %s answer during the cycles: %s" % (kind, dict(counts))
    assert closed == 0, "AMI sessions closed by Asterisk: %d (%s)" % (closed, dict(counts))
    assert counts["ami (permission denied)"] + counts["ami_cli (permission denied)"] == 0, counts
    # The gate never needs to refuse an unload.
    assert refused == 0, "unloads refused (and retried): %d" % refused
