"""Calls: SIPp places them from the caller host through the proxy; this module counts them.

    run = CallRun(net, uac_ns, proxy_address, workdir, "kill9", rate=10, hold_ms=2000)
    run.start(); ...disrupt the fleet...; run.stop()      # SIGUSR1: no new call, let calls end
    tally = Tally(run, proxy.routes(), answers)              # attempted, failed, per box ...

SIPp runs the scenario uac.xml: each call logs START and END (-trace_logs), so a call with a
START and no END failed, whatever SIPp's own statistics call it. Every run is bounded: at
most `max_calls` calls and `-timeout` seconds, so it stops by itself.

A run places its calls over each of `transports` ("udp", "tcp"): one SIPp per transport, the
rate shared between them (SIPp's -t u1 / t1: one socket to the proxy).
"""

import collections
import signal
import subprocess
import time
from pathlib import Path

from integration_tests.testbed import paths, runtime

from .proxy import tool_env

SCENARIO = Path(__file__).resolve().parent / "uac.xml"
EXTENSION = "100"
SIPP_TRANSPORT = {"udp": "u1", "tcp": "t1"}


class _Sipp:
    """One SIPp placing calls over one transport."""

    def __init__(self, run, transport, rate):
        self.run = run
        self.transport = transport
        self.rate = rate
        self.dir = run.dir / transport
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None

    @property
    def calls_log(self):
        return self.dir / "calls.log"

    def command(self):
        run = self.run
        max_calls = int(self.rate * run.max_seconds) + 1
        return run.net.wrap(run.ns, [
            paths.sipp_binary(), "-sf", SCENARIO, "-t", SIPP_TRANSPORT[self.transport],
            "-i", run.ns.address, "-p", "5060",
            "-s", EXTENSION, "-r", self.rate, "-d", run.hold_ms, "-m", max_calls,
            "-timeout", f"{run.max_seconds + 60}s", "-recv_timeout", "20000",
            # A provisional response relayed after the final one (Kamailio's workers can
            # forward Asterisk 22's 100 Trying after its 200 OK) arrives while the call is
            # held: RFC 3261 has the UAC ignore it, SIPp would abort the call.
            "-pause_msg_ign",
            "-nostdin", "-trace_logs", "-log_file", self.calls_log,
            "-trace_err", "-error_file", self.dir / "errors.log",
            "-trace_stat", "-stf", self.dir / "stat.csv",
            f"{run.proxy_address}:5060"])

    def start(self):
        self.proc = runtime.spawn(self.command(), log_path=self.dir / "sipp.out",
                                  env=tool_env(), cwd=str(self.dir))

    def lines(self, word):
        try:
            text = self.calls_log.read_text(errors="replace")
        except OSError:
            return []
        return [line.split(" ", 1)[1] for line in text.splitlines()
                if line.startswith(word + " ")]


class CallRun:
    def __init__(self, net, ns, proxy_address, workdir, name, rate=10.0, hold_ms=2000,
                 max_seconds=300, transports=("udp",)):
        self.net = net
        self.ns = ns
        self.proxy_address = proxy_address
        self.dir = Path(workdir) / f"calls-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.rate = rate
        self.hold_ms = hold_ms
        self.max_seconds = max_seconds
        self.transports = tuple(transports)
        self.sipps = [_Sipp(self, t, rate / len(self.transports)) for t in self.transports]
        self.started = self.stopped = None

    def start(self):
        self.started = time.time()
        for sipp in self.sipps:
            sipp.start()
        # The first START line of each: every SIPp is placing calls.
        runtime.wait_until(lambda: all(s.proc.poll() is None and s.lines("START")
                                       for s in self.sipps),
                           timeout=10, what=f"SIPp ({self.name}) placing calls over "
                           + " and ".join(self.transports))
        return self

    def stop(self, timeout=60.0):
        """No new calls (SIGUSR1: SIPp's soft stop); wait for the calls under way."""
        if all(s.proc is None for s in self.sipps):
            return
        self.stopped = time.time()
        for sipp in self.sipps:
            if sipp.proc is not None and sipp.proc.poll() is None:
                sipp.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        for sipp in self.sipps:
            if sipp.proc is None:
                continue
            try:
                sipp.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                runtime.reap(sipp.proc, timeout=5, sig=signal.SIGKILL)
            runtime.forget(sipp.proc)

    def _lines(self, word):
        return [line for sipp in self.sipps for line in sipp.lines(word)]

    def starts(self):
        return self._lines("START")

    def ends(self):
        return self._lines("END")

    def by_transport(self):
        """{transport: (calls started, calls ended)}."""
        return {s.transport: (len(s.lines("START")), len(s.lines("END"))) for s in self.sipps}


class Tally:
    """One scenario's calls, counted from SIPp (attempted, failed), Kamailio (where each
    INVITE was routed, when) and the Asterisk boxes (who answered, routed as what)."""

    def __init__(self, run, routes, answers):
        started = set(run.starts())
        ended = set(run.ends())
        self.by_transport = run.by_transport()
        self.attempted = len(started)
        self.failed_ids = started - ended
        self.failed = len(self.failed_ids)
        self.routes = [r for r in routes if r.call_id in started]
        self.answers = [a for a in answers if a.call_id in started and not a.refused]
        # INVITEs a box refused as routed to another registration (the proxy failed them
        # over): they reached the wrong box, which did not take them.
        self.refused = [a for a in answers if a.call_id in started and a.refused]

    def routed_to(self, service_id):
        """Times of the INVITE branches routed to service_id."""
        return sorted(r.time for r in self.routes if r.service == service_id)

    def answered_by(self):
        """{eid: number of calls answered}."""
        return dict(collections.Counter(a.eid for a in self.answers))

    def wrong_box(self):
        """Answers by an Asterisk other than the registration the call was routed as."""
        return [a for a in self.answers if a.wrong_box]
