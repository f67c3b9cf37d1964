"""`module unload` never lets Asterisk reach into an unmapped module, on Asterisk 16 and 22.

500 unload/load cycles (and a reload every 20) of the real module against a real Consul agent,
while other threads keep every door into the module busy: each CLI command of the module and
tab completion (through `asterisk -rx` and through AMI's Command action), the AMI actions, and
HTTP requests to the EID check over kept-alive and fresh connections. Every unload must either
be done or refused with a message, Asterisk must never crash or hang, and at the end the module
works and runs exactly one worker thread.
"""

import subprocess
import threading
import time
from collections import Counter

import requests

from integration_tests import discovery as d
from integration_tests import resilience as r

CYCLES = 500
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
                self.ast.rx(command, timeout=RX_TIMEOUT_S)
                self.count("cli")
            except TimeoutError:
                self.fail("CLI hung: %s" % command)
                return
            except RuntimeError:
                self.count("cli")  # a non-zero exit of `asterisk -rx` is an answer too

    def _ami_actions(self):
        self._ami_loop("ami", AMI_ACTIONS)

    def _ami_cli(self):
        self._ami_loop("ami_cli", [("Command", {"Command": c}) for c in CLI_COMMANDS])

    def _ami_loop(self, what, actions):
        """Send actions in turn over one AMI session. Asterisk hangs up a session whose action
        was unregistered between its lookup and its run ("Permission denied", then closed):
        log in again, and count it."""
        i = 0
        while not self._stop.is_set():
            try:
                with d.ami(self.ast) as ami:
                    while not self._stop.is_set():
                        name, fields = actions[i % len(actions)]
                        i += 1
                        ami.action(name, timeout=RX_TIMEOUT_S, **fields)
                        self.count(what)
                        ami.blocks.clear()  # events would pile up otherwise
                        time.sleep(AMI_PAUSE_S)
            except TimeoutError:
                self.fail("%s hung: %s" % (what, actions[(i - 1) % len(actions)]))
                return
            except (ConnectionError, OSError):
                self.count(what + " hung up by Asterisk")

    def _http(self, url, keep_alive):
        session = requests.Session()
        while not self._stop.is_set():
            try:
                if keep_alive:
                    answer = session.get(url, timeout=RX_TIMEOUT_S)
                else:
                    answer = requests.get(url, timeout=RX_TIMEOUT_S, headers={"Connection": "close"})
                self.count("http %d" % answer.status_code)
            except requests.Timeout:
                self.fail("HTTP request hung")
                return
            except requests.RequestException:
                self.count("http refused")
                session = requests.Session()


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
            assert r.registrar_threads(ast) == 0, "cycle %d: a worker outlived unload" % cycle
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
    with capsys.disabled():
        print("\n[Asterisk %s] %d unload/load cycles and %d reloads in %.1f s; unloads refused "
              "(and retried): %d; calls during the cycles: CLI %d, CLI over AMI %d, AMI actions "
              "%d (AMI sessions hung up by Asterisk: %d), HTTP %s"
              % (ast.version, CYCLES, reloads, took, refused, counts["cli"], counts["ami_cli"],
                 counts["ami"], counts["ami hung up by Asterisk"] + counts["ami_cli hung up by Asterisk"],
                 {k[5:]: v for k, v in sorted(counts.items()) if k.startswith("http")}))
