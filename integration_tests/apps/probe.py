"""A stand-in Application for the bridge's own tests (the shim is built around it:
build_module(version, app=PROBE_APP)).

It exercises every path of the shim without Consul: CLI with completion, an HTTP route,
an AMI action with an event, a thread of its own, a shutdown hook, and handlers that raise.
"""

import json
import logging
import os
import ssl
import sys
import threading
import time

import requests

from asterisk_consul.ami import AmiAction, AmiReply
from asterisk_consul.cli import CliCommand, failure, ok
from asterisk_consul.web import HttpResponse

log = logging.getLogger("probe")


class ProbeRoute:
    """Answers with what it got; GET /probe/replayed?a=1 has a declared answer the shim replays
    without calling handle() (`probe declare <body>` changes it; `probe handled` counts)."""

    uri = "probe"
    description = "bridge probe"

    def __init__(self):
        self.handled = 0
        self.replayed_body = "declared 0"
        self.on_change = lambda: None  # set by the bridge

    def declared(self):
        return ("GET", "HEAD"), "replayed", [("a", "1")], HttpResponse(200, "OK", self.replayed_body + "\n",
                                                      headers=(("X-Declared", "yes"),))

    def declare(self, body):
        self.replayed_body = body
        self.on_change()

    def handle(self, request):
        self.handled += 1
        if request.path == "raise":
            raise RuntimeError("probe: HTTP handler raised on purpose")
        if request.path == "sleep":
            time.sleep(float(dict(request.params or []).get("s", "0.5")))
        body = json.dumps({
            "method": request.method,
            "path": request.path,
            "params": request.params,
            "headers": request.headers,
        })
        return HttpResponse(200, "OK", body, "application/json", headers=(("X-Probe", "yes"),))


class Application:
    def __init__(self, host):
        self.host = host
        self._stop = threading.Event()
        self._thread = None
        self.cli_commands = [
            CliCommand("probe echo", "Echo arguments", "Usage: probe echo <words>\n", self._echo,
                       choices=lambda pos: ["alpha", "beta", "bravo"] if pos == 2 else []),
            CliCommand("probe raise", "Raise inside Python", "Usage: probe raise\n", self._raise),
            CliCommand("probe facts", "Host facts", "Usage: probe facts\n", self._facts),
            CliCommand("probe memory", "Python heap counters", "Usage: probe memory\n", self._memory),
            CliCommand("probe threads", "Python threads", "Usage: probe threads\n", self._threads),
            CliCommand("probe fail", "Answer a failure", "Usage: probe fail\n", lambda args: failure("probe failed")),
            CliCommand("probe declare", "Declare the replayed answer", "Usage: probe declare <body>\n",
                       lambda args: self.route.declare(" ".join(args[2:])) or ok("declared")),
            CliCommand("probe handled", "HTTP requests Python handled", "Usage: probe handled\n",
                       lambda args: ok(str(self.route.handled))),
        ]
        self.ami_actions = [AmiAction("ProbeEcho", "Echo headers", self._ami_echo)]
        self.route = ProbeRoute()
        self.http_routes = [self.route]

    def load(self):
        # A test makes load fail by leaving this file in the config dir.
        if os.path.exists(os.path.join(self.host.config_dir(), "probe.fail")):
            raise RuntimeError("probe: load failed on purpose")
        log.info("probe: loaded on Python %s with %s, requests %s, json %s", sys.version.split()[0],
                 ssl.OPENSSL_VERSION, requests.__version__, json.__name__)
        self._thread = threading.Thread(target=self._tick, name="probe-worker", daemon=True)
        self._thread.start()
        return True

    def _tick(self):
        while not self._stop.wait(0.05):
            pass

    def unload(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        log.info("probe: unloaded")

    def reload(self):
        log.info("probe: reloaded")
        return True

    def shutdown(self):
        log.warning("probe: shutdown hook ran (shutting_down=%s)", self.host.is_shutting_down())

    def _echo(self, args):
        return ok("echo: " + " ".join(args[2:]))

    def _raise(self, args):
        raise ValueError("probe: CLI handler raised on purpose")

    def _facts(self, args):
        return ok(json.dumps({
            "eid": self.host.eid(), "version": self.host.version(), "config_dir": self.host.config_dir(),
            "fully_booted": self.host.is_fully_booted(), "shutting_down": self.host.is_shutting_down(),
            "channels": self.host.active_channels(), "executable": sys.executable, "prefix": sys.prefix,
            "path": sys.path,
        }))

    def _memory(self, args):
        import collections
        import gc
        gc.collect()
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
        return ok(json.dumps({
            "blocks": sys.getallocatedblocks(),
            "objects": sum(counts.values()),
            "top": counts.most_common(12),
            "Bridge": counts.get("Bridge", 0), "Application": counts.get("Application", 0),
            "FFI": counts.get("FFI", 0), "CffiHost": counts.get("CffiHost", 0),
            "functions": collections.Counter(getattr(o, "__qualname__", "?") for o in gc.get_objects()
                                             if type(o).__name__ == "function").most_common(6),
            "builtins": collections.Counter(repr(o)[:60] for o in gc.get_objects()
                                            if type(o).__name__ == "builtin_function_or_method").most_common(4),
            "tuples": collections.Counter(repr(o)[:50] for o in gc.get_objects()
                                          if type(o).__name__ == "tuple").most_common(4),
        }))

    def _threads(self, args):
        return ok(json.dumps(sorted(t.name for t in threading.enumerate())))

    def _ami_echo(self, fields):
        self.host.manager_event("ProbeEvent", [("Echo", fields.get("echo", ""))])
        return AmiReply(True, "probe echo", [("Echo", fields.get("echo", ""))])
