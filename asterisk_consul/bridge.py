"""The Python side of the C shim: the only module that knows cffi.

Each time Asterisk maps res_discovery_consul.so, cffi runs the module's init code, which
calls attach() with that mapping's fresh ffi/lib and the application class the shim was built
around (cbridge/build_bridge.py). attach() wires the extern "Python" entry points to a new
instance of it over a CffiHost. Every entry point catches everything: an
exception becomes a log line with its traceback and a failure status, never a crash.

The interpreter outlives the mapping, and this module with it: after unload nothing may
call into the old lib, so the host is detached once the application has stopped its threads.

While loaded, a thread of the bridge's own beats the pulse (rdc_host_pulse) about once a
second: the shim enters Python only while the pulse says the interpreter can run, and replays
the declared answers only while the application vouches for them (a live worker).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

from . import host as hostapi
from .logbridge import detach_log_handler, install_log_handler, redact
from .threads import start_thread
from .web import HttpRequest

log = logging.getLogger(__name__)

PULSE_S = 1.0        # how often the pulse beats
PULSE_THREAD_NAME = "consul-pulse"
ALIVE_MS = 5000      # how long after a beat the shim still enters Python
ANSWERS_MS = 4000    # how long after a beat the shim still replays the declared answers
# The methods a declared answer answers, as the shim's bits.
_METHOD_BITS = {"GET": "RDC_HTTP_GET", "HEAD": "RDC_HTTP_HEAD"}

# The C enum rdc_log_level, by the names host.py gives the levels.
_LEVEL_NAMES = {
    hostapi.LOG_DEBUG: "RDC_LOG_DEBUG",
    hostapi.LOG_VERBOSE: "RDC_LOG_VERBOSE",
    hostapi.LOG_NOTICE: "RDC_LOG_NOTICE",
    hostapi.LOG_WARNING: "RDC_LOG_WARNING",
    hostapi.LOG_ERROR: "RDC_LOG_ERROR",
}


def _text(ffi, ptr) -> str:
    return ffi.string(ptr).decode("utf-8", "replace") if ptr else ""


class CffiHost(hostapi.Host):
    """Host over one mapping of the shim.

    Every call into the library holds a lock that detach() takes too: once detach() returns,
    no thread is inside the library through this host, and later calls do nothing (a thread
    that outlived the unload cannot reach an unmapped library, nor its ffi type tables)."""

    def __init__(self, ffi, lib):
        self._ffi = ffi
        self._lib = lib
        self._lock = threading.Lock()
        self._levels = {name: getattr(lib, enum) for name, enum in _LEVEL_NAMES.items()}

    def detach(self) -> None:
        with self._lock:
            self._lib = None

    def log(self, level: str, message: str, file: str = "asterisk_consul", line: int = 0, func: str = "") -> None:
        with self._lock:
            lib = self._lib
            if lib is None:
                return
            lib.rdc_host_log(
                self._levels.get(level, lib.RDC_LOG_ERROR),
                file.encode("utf-8", "replace"),
                line,
                func.encode("utf-8", "replace"),
                message.replace("\0", "\\0").encode("utf-8", "replace"),
            )

    def _text(self, read) -> str:
        with self._lock:
            return _text(self._ffi, read(self._lib)) if self._lib is not None else ""

    def eid(self) -> str:
        with self._lock:
            if self._lib is None:
                return ""
            buf = self._ffi.new("char[]", 32)
            self._lib.rdc_host_eid(buf, 32)
            return self._ffi.string(buf).decode("ascii").lower()

    def version(self) -> str:
        return self._text(lambda lib: lib.rdc_host_version())

    def shim_version(self) -> str:
        return self._text(lambda lib: lib.rdc_host_shim_version())

    def config_dir(self) -> str:
        return self._text(lambda lib: lib.rdc_host_config_dir())

    def is_fully_booted(self) -> bool:
        with self._lock:
            return self._lib is not None and bool(self._lib.rdc_host_fully_booted())

    def is_shutting_down(self) -> bool:
        with self._lock:
            return self._lib is not None and bool(self._lib.rdc_host_shutting_down())

    def is_stop_requested(self) -> bool:
        with self._lock:
            return self._lib is not None and bool(self._lib.rdc_host_stop_requested())

    def forget_stop_request(self) -> None:
        with self._lock:
            if self._lib is not None:
                self._lib.rdc_host_forget_stop_request()

    def pulse(self, alive_ms: int, answers_ms: int) -> None:
        with self._lock:
            if self._lib is not None:
                self._lib.rdc_host_pulse(alive_ms, answers_ms)

    def active_channels(self) -> int:
        with self._lock:
            return int(self._lib.rdc_host_active_channels()) if self._lib is not None else 0

    def channel_tech(self, name: str) -> bool:
        with self._lock:
            return self._lib is not None and bool(
                self._lib.rdc_host_channel_tech(name.encode("utf-8")))

    def db_get(self, family: str, key: str) -> Optional[str]:
        with self._lock:
            if self._lib is None:
                return None
            buf = self._ffi.new("char[]", 1024)
            if self._lib.rdc_host_db_get(family.encode(), key.encode(), buf, 1024) != self._lib.RDC_OK:
                return None
            return self._ffi.string(buf).decode("utf-8", "replace")

    def db_put(self, family: str, key: str, value: str) -> bool:
        with self._lock:
            return self._lib is not None and self._lib.rdc_host_db_put(
                family.encode(), key.encode(), value.encode()) == self._lib.RDC_OK

    def declare_http_answer(self, route: int, answer) -> None:
        """The answer the shim replays to one exact request on a route ((methods, path,
        params, HttpResponse)), or None to forget it."""
        with self._lock:
            lib, ffi = self._lib, self._ffi
            if lib is None:
                return
            if answer is None:
                lib.rdc_host_http_declare(route, 0, ffi.NULL, -1, ffi.NULL, ffi.NULL, 0,
                                          ffi.NULL, ffi.NULL, ffi.NULL, 0)
                return
            methods, path, params, response = answer
            bits = 0
            for method in methods:
                bits |= getattr(lib, _METHOD_BITS[method])
            names = [ffi.new("char[]", n.encode("utf-8")) for n, _ in params]
            values = [ffi.new("char[]", v.encode("utf-8")) for _, v in params]
            reason, headers, body = response.wire()
            lib.rdc_host_http_declare(route, bits, path.encode("utf-8"), len(params),
                                      ffi.new("char *[]", names), ffi.new("char *[]", values),
                                      response.status, reason, headers, body, len(body))

    def manager_event(self, event: str, headers: Sequence[Tuple[str, str]]) -> None:
        body = redact("".join("%s: %s\r\n" % (_header_safe(k), _header_safe(v)) for k, v in headers))
        with self._lock:
            if self._lib is not None:
                self._lib.rdc_host_manager_event(event.encode(), body.encode("utf-8", "replace"))


class Pulse:
    """The bridge's own thread: tells the shim about once a second that the interpreter runs
    (it could take the GIL) and whether the application vouches for its declared answers."""

    def __init__(self, host: CffiHost, vouches, report):
        self._host = host
        self._vouches = vouches
        self._report = report
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self.beat()  # before the doors open
        self._thread = start_thread(PULSE_THREAD_NAME, self._run)

    def beat(self) -> None:
        try:
            vouched = bool(self._vouches())
        except BaseException:
            self._report("pulse")
            vouched = False
        self._host.pulse(ALIVE_MS, ANSWERS_MS if vouched else 0)

    def _run(self) -> None:
        while not self._stop.wait(PULSE_S):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None


def _header_safe(value: str) -> str:
    # A value with a line break would inject headers into AMI or HTTP.
    return str(value).replace("\r", " ").replace("\n", " ")


class Bridge:
    """The entry points of one mapping of the shim."""

    def __init__(self, ffi, lib, application):
        self.ffi = ffi
        self.lib = lib
        self.application = application
        self.host = CffiHost(ffi, lib)
        self.app = None
        self.pulse: Optional[Pulse] = None
        self.release = lambda: None  # set by attach()
        self.cli: List = []
        self.ami: List = []
        self.http: List = []

    # -- helpers -------------------------------------------------------------------------

    def _report(self, what: str) -> None:
        """Log the exception being handled, with its traceback, through Asterisk's logger."""
        try:
            # This line bypasses logging (and its masking handler): mask it here.
            text = redact("%s failed:\n%s" % (what, traceback.format_exc().rstrip()))
            self.host.log(hostapi.LOG_ERROR, text, "bridge.py", 0, what)
        except BaseException:
            pass

    # -- lifecycle -----------------------------------------------------------------------

    def load(self) -> int:
        lib = self.lib
        try:
            install_log_handler(self.host)
            app = self.application(self.host)
            if not app.load():
                app.unload()
                self._declined()
                return lib.RDC_DECLINE
            self.app = app
            self.cli = list(app.cli_commands)
            self.ami = list(app.ami_actions)
            self.http = list(app.http_routes)
            for command in self.cli:
                lib.rdc_host_declare_cli(command.command.encode(), command.summary.encode(), command.usage.encode())
            for action in self.ami:
                lib.rdc_host_declare_ami(action.name.encode(), action.synopsis.encode())
            for index, route in enumerate(self.http):
                lib.rdc_host_declare_http(route.uri.encode(), route.description.encode())
                self._declare_answers(index, route)
            vouches = getattr(app, "vouches", lambda: True)
            self.pulse = Pulse(self.host, vouches, self._report)
            self.pulse.start()
            return lib.RDC_OK
        except BaseException:
            self._report("module load")
            self._stop_app()
            self._declined()
            return lib.RDC_DECLINE

    def _declare_answers(self, index: int, route) -> None:
        """A route that knows its answer to an exact request has the shim replay it, and says
        so again each time the answer changes."""
        declared = getattr(route, "declared", None)
        if declared is None:
            return
        host = self.host

        def declare() -> None:
            host.declare_http_answer(index, declared())
        route.on_change = declare
        declare()

    def _stop_app(self) -> None:
        pulse, self.pulse = self.pulse, None
        if pulse is not None:
            pulse.stop()
        app, self.app = self.app, None
        if app is not None:
            try:
                app.unload()
            except BaseException:
                self._report("module unload")

    def unload(self, unmapping: bool = True) -> int:
        """unmapping: the module is unloaded (a graceful shutdown too); otherwise a load
        failed after Python's part and Asterisk keeps this mapping for the next load."""
        # On a graceful shutdown Asterisk unloads modules before its exit hooks run (and the
        # gate no longer reaches ours), so the shutdown work happens here.
        try:
            if unmapping and self.app is not None and self.host.is_shutting_down():
                self.app.shutdown()
        except BaseException:
            self._report("shutdown")
        self._stop_app()
        ok = self.lib.RDC_OK
        if unmapping:
            self._forget()
        else:
            self._declined()
        return ok

    def _declined(self) -> None:
        """Asterisk may keep a declined module mapped and call load again on it, so the
        library stays attached; no thread of ours runs, so nothing logs until then."""
        detach_log_handler()
        self.cli = self.ami = self.http = []

    def _forget(self) -> None:
        """The mapping is going away: nothing may touch its library any more, and nothing of
        this load should stay in memory. Calls that entered before the gate closed may still
        be running here: they keep their Bridge (and its tables) until they return."""
        detach_log_handler()
        self.host.detach()
        self.release()

    def reload(self) -> int:
        try:
            if self.app is not None and self.app.reload():
                return self.lib.RDC_OK
        except BaseException:
            self._report("module reload")
        return self.lib.RDC_DECLINE

    def shutdown(self) -> None:
        try:
            if self.app is not None:
                self.app.shutdown()
        except BaseException:
            self._report("shutdown")

    # -- CLI -----------------------------------------------------------------------------

    def run_cli(self, index, fd, argc, argv) -> int:
        ffi, lib = self.ffi, self.lib
        try:
            args = [_text(ffi, argv[i]) for i in range(argc)]
            result = self.cli[index].run(args)
            if result.text:
                lib.rdc_host_cli_write(fd, redact(result.text).encode("utf-8", "replace"))
            return {"ok": lib.RDC_OK, "usage": lib.RDC_CLI_SHOWUSAGE}.get(result.status, lib.RDC_CLI_FAILURE)
        except BaseException:
            self._report("CLI command")
            lib.rdc_host_cli_write(fd, b"res_discovery_consul: the command failed with an internal error; "
                                       b"the traceback is in the Asterisk log.\n")
            return lib.RDC_CLI_FAILURE

    def complete_cli(self, index, line, word, pos, n, out, out_len) -> int:
        ffi = self.ffi
        try:
            answer = self.cli[index].complete(_text(ffi, line), _text(ffi, word), pos, n)
            if answer is None:
                return 0
            data = answer.encode("utf-8", "replace")[: out_len - 1] + b"\0"
            ffi.memmove(out, data, len(data))
            return self.lib.RDC_OK
        except BaseException:
            self._report("CLI completion")
            return 0

    # -- HTTP ----------------------------------------------------------------------------

    def handle_http(self, index, ser, method, method_name, path, nparams, pnames, pvalues,
                    nheaders, hnames, hvalues) -> int:
        ffi, lib = self.ffi, self.lib
        try:
            request = HttpRequest(
                ffi.string(method_name).decode("ascii", "replace"),
                _text(ffi, path),
                None if nparams < 0 else [(_text(ffi, pnames[i]), _text(ffi, pvalues[i])) for i in range(nparams)],
                # Headers are decoded only if the handler asks for them.
                lambda: None if nheaders < 0 else [(_text(ffi, hnames[i]), _text(ffi, hvalues[i]))
                                                   for i in range(nheaders)],
            )
            response = self.http[index].handle(request)
        except BaseException:
            self._report("HTTP request")
            return 0
        reason, headers, body = response.wire()  # encoded once per response object
        lib.rdc_host_http_send(ser, method, response.status, reason, headers, body, len(body))
        return lib.RDC_OK

    # -- AMI -----------------------------------------------------------------------------

    def handle_ami(self, index, session, message, nheaders, headers) -> int:
        ffi, lib = self.ffi, self.lib
        try:
            fields: Dict[str, str] = {}
            for i in range(nheaders):
                name, _, value = _text(ffi, headers[i]).partition(":")
                fields.setdefault(name.strip().lower(), value.strip())
            reply = self.ami[index].run(fields)
        except BaseException:
            self._report("AMI action")
            return 0
        extra = redact("".join("%s: %s\r\n" % (_header_safe(k), _header_safe(v)) for k, v in reply.headers))
        lib.rdc_host_ami_respond(session, message, 1 if reply.success else 0,
                                 _header_safe(redact(reply.message)).encode("utf-8", "replace"),
                                 extra.encode("utf-8", "replace"))
        return lib.RDC_OK


class _Slot:
    """What the entry points of one mapping call. cffi keeps those functions for good (the
    mapping that would release them is gone), so they reach the Bridge only through this
    slot, which is emptied when the mapping goes away: the Bridge, the Application and
    everything they hold can then be freed."""

    __slots__ = ("bridge",)

    def __init__(self, bridge):
        self.bridge = bridge


def attach(ffi, lib, application, upgraded: bool = False) -> _Slot:
    """Wire this mapping's extern "Python" functions to a new Bridge around `application`
    (a class taking the host). Called by the init code, which says whether it has just
    dropped an older import of the package (`upgraded`)."""
    slot = _Slot(Bridge(ffi, lib, application))
    if upgraded:
        from . import __file__ as package_init, __version__
        slot.bridge.host.log(hostapi.LOG_NOTICE, "res_discovery_consul: the Python package changed "
                             "on disk since it was imported: asterisk_consul %s imported anew from %s"
                             % (__version__, os.path.dirname(package_init)), "bridge.py", 0, "attach")
    slot.bridge.release = lambda: setattr(slot, "bridge", None)
    # Entry points called after release (they cannot be, the shim is gone) answer "failed".
    failed = 0

    def on_error(exception, exc_value, tb):
        # Reached only if an entry point's own handler failed; keep it off stderr.
        if slot.bridge is not None:
            slot.bridge._report("entry point")

    @ffi.def_extern(name="rdc_py_load", onerror=on_error)
    def _load():
        bridge = slot.bridge
        return bridge.load() if bridge else failed

    @ffi.def_extern(name="rdc_py_unload", onerror=on_error)
    def _unload(unmapping):
        bridge = slot.bridge
        return bridge.unload(bool(unmapping)) if bridge else failed

    @ffi.def_extern(name="rdc_py_reload", onerror=on_error)
    def _reload():
        bridge = slot.bridge
        return bridge.reload() if bridge else failed

    @ffi.def_extern(name="rdc_py_shutdown", onerror=on_error)
    def _shutdown():
        bridge = slot.bridge
        if bridge:
            bridge.shutdown()

    @ffi.def_extern(name="rdc_py_cli", onerror=on_error)
    def _cli(index, fd, argc, argv):
        bridge = slot.bridge
        return bridge.run_cli(index, fd, argc, argv) if bridge else failed

    @ffi.def_extern(name="rdc_py_cli_complete", onerror=on_error)
    def _complete(index, line, word, pos, n, out, out_len):
        bridge = slot.bridge
        return bridge.complete_cli(index, line, word, pos, n, out, out_len) if bridge else failed

    @ffi.def_extern(name="rdc_py_http", onerror=on_error)
    def _http(index, ser, method, method_name, path, nparams, pnames, pvalues, nheaders, hnames, hvalues):
        bridge = slot.bridge
        if not bridge:
            return failed
        return bridge.handle_http(index, ser, method, method_name, path, nparams, pnames, pvalues,
                                  nheaders, hnames, hvalues)

    @ffi.def_extern(name="rdc_py_ami", onerror=on_error)
    def _ami(index, session, message, nheaders, headers):
        bridge = slot.bridge
        return bridge.handle_ami(index, session, message, nheaders, headers) if bridge else failed

    return slot
