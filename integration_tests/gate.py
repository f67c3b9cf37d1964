"""Helpers of the gate tests (issue 19: every door through the gate, answers that expire, stops
that can be cancelled): test_gate_doors.py, test_gate_unload_paths.py, test_gate_wedged.py,
test_cancelled_stops.py and the unload stress test.

    box = shared_box(...)                 # one Consul + one Asterisk for a whole test module
    answer_kind(...)                      # is an answer real, "not loaded", a refusal...?
    polled_url(consul, ast)               # the exact URL Consul polls for the EID check

The texts the gate answers with while the module is away or stuck (issue 19, point 1 and 2).
"""

import re
import time

import requests

from integration_tests import discovery as d
from integration_tests.testbed import fixtures
from integration_tests.testbed.asterisk import AsteriskInstance
from integration_tests.testbed.consul import ConsulAgent

NOT_LOADED = "res_discovery_consul is not loaded"
NOT_RESPONDING = "not responding"
CHECK_PATH = "/res_discovery_consul/check_eid"
NAME = "Asterisk"

# Every CLI command of the module (with arguments where it takes some).
CLI_COMMANDS = (
    "discovery show settings",
    "discovery show status",
    "discovery set maintenance on gate test",
    "discovery set check on",
    "discovery set drain off",
)
# Every AMI action of the module, with fields a loaded module accepts.
AMI_ACTIONS = (
    ("DiscoverySetMaintenance", {"Enable": "no"}),
    ("DiscoverySetCheck", {"Enable": "yes"}),
    ("DiscoverySetDrain", {"Enable": "no"}),
)
# What Asterisk answers for an AMI action whose module is listed but not running: it closes
# the session afterwards.
PERMISSION_DENIED = "Permission denied"
UNKNOWN_ACTION = "Invalid/unknown command"
NO_SUCH_COMMAND = "No such command"


class Box:
    """One Consul agent and one Asterisk with the module configured for it."""

    def __init__(self, ast, consul):
        self.ast = ast
        self.consul = consul

    def ensure_loaded(self):
        """Load the module if a test left it unloaded; wait until it is registered."""
        if not d.module_running(self.ast):
            d.load(self.ast)
        d.wait_service(self.consul, self.ast.eid)
        return self.ast


def shared_box(tmp_path_factory, version, module_so, **options):
    """Start a Consul agent and an Asterisk of `version` with the module loaded (options:
    [consul] settings over discovery.default_options). Returns a Box; stop it with close_box."""
    fixtures.require_consul()
    fixtures.require_asterisk(version)
    base = tmp_path_factory.mktemp("box%s-" % version)
    consul = ConsulAgent(base / "consul")
    consul.start()
    ast = AsteriskInstance(version, artifacts_dir=base / "asterisk")
    try:
        ast.install_module(module_so)
        ast.start()
        d.write_conf(ast, consul, **options)
        d.load(ast)
    except BaseException:
        ast.cleanup()
        consul.stop()
        raise
    return Box(ast, consul)


def close_box(box):
    try:
        box.ast.cleanup()
    finally:
        box.consul.stop()


# ------------------------------------------------------------------------------- Consul
def healthy(consul, service_id, name=NAME):
    """Is service_id in /v1/health/service/<name>?passing (what consumers route to)?"""
    entries = consul.get("/v1/health/service/%s" % name, params={"passing": "1"}).json() or []
    return any(e["Service"]["ID"] == service_id for e in entries)


def wait_healthy(consul, service_id, timeout=15.0):
    d.wait_until(lambda: healthy(consul, service_id), timeout=timeout, interval=0.05,
                 what="%s in the passing set" % service_id)


def seconds_until(predicate, timeout, what, interval=0.05):
    began = time.monotonic()
    d.wait_until(predicate, timeout=timeout, interval=interval, what=what)
    return time.monotonic() - began


def eid_check(consul, ast):
    return consul.checks().get("check-asterisk-eid-%s" % ast.eid)


def polled_url(consul, ast, timeout=10.0):
    """The exact URL Consul polls for the EID check (the agent does not show an HTTP check's
    definition in 1.8.7; its output names the URL: "HTTP GET <url>: 200 OK Output: ...")."""
    def url():
        output = (eid_check(consul, ast) or {}).get("Output") or ""
        match = re.search(r"HTTP GET (\S+): ", output)
        return match and match.group(1)
    return d.wait_until(url, timeout=timeout, interval=0.05, what="the URL of Consul's EID check")


def check_url(ast):
    return ast.http_url(CHECK_PATH + "?expected_eid=" + ast.eid)


# ------------------------------------------------------------------------------- answers
def cli_kind(output):
    """'not loaded', 'no such command', or 'real' for the output of one of the module's CLI
    commands."""
    if NOT_LOADED in output:
        return "not loaded"
    if NO_SUCH_COMMAND in output:
        return "no such command"
    return "real"


def ami_kind(reply):
    """'real' (the module answered, Success or its own Error), 'not loaded' (the gate
    answered), 'permission denied' (Asterisk refused: the session is closed after it), or
    'unknown action' for one of the module's AMI actions. For a Command action the output is
    judged as the CLI's."""
    text = " ".join(str(v) for k, v in reply.items() if k not in ("ActionID",))
    if NOT_LOADED in text:
        return "not loaded"
    if PERMISSION_DENIED in reply.get("Message", ""):
        return "permission denied"
    if UNKNOWN_ACTION in reply.get("Message", ""):
        return "unknown action"
    if NO_SUCH_COMMAND in text:
        return "no such command"
    return "real"


def http_kind(response):
    """'real' (the module's own answer: 200, 429, 503 while starting...), 'not loaded' (the
    gate's 503), 'not responding' (the gate's 503 for a stuck module) or 'no such URI' (404)."""
    if response.status_code == 503 and NOT_LOADED in response.text:
        return "not loaded"
    if response.status_code == 503 and NOT_RESPONDING in response.text:
        return "not responding"
    if response.status_code == 404:
        return "no such URI"
    return "real"


def http_get(url, timeout=5.0):
    return requests.get(url, timeout=timeout)


# ------------------------------------------------------------------------------- Asterisk
def crash_signs(ast):
    """What in the process's output, log and dir says it crashed (empty when nothing)."""
    signs = []
    stdout, log = ast.stdout_text(), ast.log_text()
    for bad in ("Segmentation", "Fatal Python error", "double free or corruption",
                "still running inside"):
        if bad in stdout or bad in log:
            signs.append(bad)
    # asterisk -g with the machine's core_pattern "core": the core lands in the instance dir
    signs += ["core file %s" % p.name for p in ast.host_dir.glob("core*")]
    return signs
