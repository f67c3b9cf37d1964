"""The ways out of the module that used to reach freed or unmapped memory (issue 19, point 1),
on Asterisk 16 and 22:

- `module unload -h` while a `discovery` command is inside (waiting on an agent that never
  answers): the unload returns, Asterisk lives on, the doors answer "not loaded", and a later
  `module load` works;
- a graceful shutdown while a command is inside: a clean exit, without the 5 s stall;
- a load declined because another module owns one of its AMI action names, then loaded
  without restarting Asterisk once that module is gone.
"""

import re
import subprocess
import threading
import time

import pytest

from integration_tests import discovery as d
from integration_tests import gate as g
from integration_tests.testbed import build
from integration_tests.testbed.peers import StandInPeer

COMMAND = "discovery set maintenance on inside the module"
COMMAND_TIMEOUT_MS = 2000
HANGS = "/v1/agent/service/maintenance/"  # the agent (a stand-in) never answers these


class CommandInside:
    """A `discovery` command run beside the test; it waits on the agent for its timeout."""

    def __init__(self, ast, command=COMMAND):
        self.ast = ast
        self.command = command
        self.output = None
        self.error = None
        self.ended = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            res = self.ast._rx_raw(self.command, timeout=30)
            self.output = res.stdout if res is not None else None
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        self.ended = time.monotonic()

    def start(self, peer):
        """Start the command; return once it is inside, its request held by `peer`."""
        since = time.monotonic()
        self.thread.start()
        d.wait_until(lambda: peer.calls(since, HANGS), timeout=5, interval=0.01,
                     what="the command's request to the agent")
        self.inside_at = time.monotonic()
        return self

    def left(self):
        """Seconds the command still waits at most (its timeout from its request)."""
        return max(0.0, COMMAND_TIMEOUT_MS / 1000 - (time.monotonic() - self.inside_at))


@pytest.fixture
def hanging_agent(consul_agent):
    """A stand-in agent that forwards to a real one but never answers maintenance calls."""
    with StandInPeer(agent=consul_agent, hang=(HANGS,)) as peer:
        yield peer


def loaded_behind(asterisk_factory, ast_version, module_so, peer, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, peer, consul_timeout_ms=COMMAND_TIMEOUT_MS, check="no")
    d.load(ast)
    d.wait_service(consul_agent, ast.eid)
    return ast


def test_hard_unload_while_a_command_is_inside_returns_and_doors_say_not_loaded(
        asterisk_factory, ast_version, module_so, hanging_agent, consul_agent, capsys):
    ast = loaded_behind(asterisk_factory, ast_version, module_so, hanging_agent, consul_agent)
    inside = CommandInside(ast).start(hanging_agent)

    left = inside.left()
    out, took = d.timed_rx(ast, "module unload -h " + d.MODULE)
    assert took < left + 3, "module unload -h took %.1f s (%.1f s were left of the " \
        "command's wait): %s" % (took, left, out)
    inside.thread.join(10)
    assert not inside.thread.is_alive(), "the command never came back"
    assert inside.output is not None, inside.error
    assert ast.is_running(), ast.diagnostics()
    assert not d.module_running(ast), ast.rx("module show like res_discovery_consul")

    # The doors answer (a CLI lookup or an AMI action into an unmapped module would crash).
    status = ast.rx("discovery show status")
    assert g.NOT_LOADED in status, status
    reply = ast.ami("DiscoverySetMaintenance", Enable="no")
    assert reply.get("Response") == "Error" and reply.get("Message") == g.NOT_LOADED, reply
    assert ast.is_running() and not g.crash_signs(ast), g.crash_signs(ast)

    # A later load works and registers.
    d.write_conf(ast, consul_agent, check="no")
    d.load(ast)
    d.wait_service(consul_agent, ast.eid, Port=5060)
    assert g.NOT_LOADED not in ast.rx("discovery show status")
    assert not g.crash_signs(ast), g.crash_signs(ast)
    with capsys.disabled():
        print("\n[Asterisk %s] module unload -h with a command inside (%.1f s left of its "
              "wait): returned after %.1f s; the command answered %r"
              % (ast.version, left, took, (inside.output or "").strip()[:80]))


def test_graceful_shutdown_while_a_command_is_inside_exits_cleanly_without_a_stall(
        asterisk_factory, ast_version, module_so, hanging_agent, consul_agent, capsys):
    ast = loaded_behind(asterisk_factory, ast_version, module_so, hanging_agent, consul_agent)
    inside = CommandInside(ast).start(hanging_agent)
    left = inside.left()

    began = time.monotonic()
    stopper = threading.Thread(target=ast._rx_raw, args=("core stop gracefully", 30), daemon=True)
    stopper.start()
    try:
        code = ast.proc.wait(left + 6)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - began
    assert code is not None, "Asterisk still running %.1f s after `core stop gracefully` with a " \
        "command inside (%.1f s left of its wait)\n%s" % (took, left, ast.diagnostics())
    assert code == 0, "exit code %s\n%s" % (code, ast.diagnostics())
    assert not g.crash_signs(ast), g.crash_signs(ast)
    # No stall: the exit follows the command's own end (its timeout), not a 5 s door wait.
    assert took < left + 2.5, "the exit took %.1f s (%.1f s were left of the command's " \
        "wait)" % (took, left)
    with capsys.disabled():
        print("\n[Asterisk %s] core stop gracefully with a command inside (%.1f s left of its "
              "wait): exit %s after %.1f s" % (ast.version, left, code, took))


RIVAL = "rival_ami.so"
TAKEN_ACTION = "DiscoverySetCheck"  # the rival owns it (integration_tests/apps/rival_ami.c)


@pytest.fixture(scope="session")
def rival_so(ast_version):
    try:
        return build.build_rival_module(ast_version)
    except build.BuildError as exc:
        pytest.fail("building rival_ami.so for Asterisk %s failed: %s" % (ast_version, exc),
                    pytrace=False)


def test_load_declined_on_a_taken_ami_name_then_loaded_once_the_rival_is_gone(
        asterisk_factory, ast_version, module_so, rival_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    ast.install_module(rival_so)
    d.write_conf(ast, consul_agent)
    ast.rx("module load " + RIVAL)
    assert re.search(r"rival_ami\.so\s.*Running", ast.rx("module show like rival_ami")), \
        ast.rx("module show like rival_ami")
    assert ast.ami(TAKEN_ACTION, Enable="yes").get("Message") == "rival_ami owns this action"

    log = d.load_declined(ast)
    named = [line for line in log.splitlines()
             if TAKEN_ACTION in line and "manager.c" not in line]
    assert named, "no line of the module's names the taken action %s:\n%s" % (TAKEN_ACTION,
                                                                             log[-3000:])
    assert ast.is_running()
    assert ast.eid not in consul_agent.services()
    # The rival still owns its action: the declined load took nothing from it.
    assert ast.ami(TAKEN_ACTION, Enable="yes").get("Message") == "rival_ami owns this action"

    ast.rx("module unload " + RIVAL)
    assert "rival_ami" not in ast.rx("module show like rival_ami").split("\n", 1)[-1]
    since = ast.log_offset()
    out = ast.rx("module load " + d.MODULE)
    assert d.module_running(ast), "%s\n%s" % (out, ast.log_text(since)[-3000:])
    d.wait_service(consul_agent, ast.eid)
    reply = ast.ami(TAKEN_ACTION, Enable="yes")
    assert reply.get("Response") == "Success" and reply.get("Message") != \
        "rival_ami owns this action", reply
    assert not g.crash_signs(ast), g.crash_signs(ast)
