"""The SIP stack as the worker follows it (sip_check): about once a second, whether a SIP
channel driver is registered (a lock of the channel technologies, no network) and what the
listener on the service Port answers to one SIP OPTIONS (sip_probe.py, within
SIP_PROBE_TIMEOUT_S). From them comes the SipHealth the verdict takes; what follows from it
(the checks, the EID endpoint) is the reconciler's business. Runs on the worker's thread only.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from ..health import SipHealth
from ..sip_probe import ALIVE, OVERLOADED, ProbeResult, Target, probe
from ..siptransports import probe_target
from .link import AgentLink

SIP_PROBE_S = 1.0           # at most one probe a second: a box leaves the set ~1 s after SIP
SIP_PROBE_TIMEOUT_S = 0.5   # a local SIP stack answers in well under a millisecond
SIP_TECHS = (("PJSIP", "chan_pjsip"), ("SIP", "chan_sip"))
NO_DRIVER = "SIP: no SIP channel driver loaded (chan_pjsip or chan_sip)"

HasTech = Callable[[str], bool]
Probe = Callable[[Target, float], ProbeResult]


def _probe(target: Target, timeout_s: float) -> ProbeResult:
    return probe(target, timeout_s)


class SipWatch:
    def __init__(self, link: AgentLink, has_tech: HasTech, run_probe: Probe = _probe):
        self._link = link
        self._has_tech = has_tech
        self._probe = run_probe
        self.seen_driver = False  # sip_check = auto: on once a driver was seen, until a reload
        self.health: Optional[SipHealth] = None  # None: sip_check is off
        self.drivers = ""  # the drivers registered at the last look
        self.last: Optional[ProbeResult] = None
        self.probed_at: Optional[float] = None  # wall-clock time of the last probe
        self.since: Optional[float] = None      # wall-clock time health last changed
        self._due: Optional[float] = 0.0

    def due(self) -> Optional[float]:
        if self._link.settings.sip_check == "no" and self.health is None:
            return None  # off and nothing to clear: no wakeup at all
        return self._due

    def reloaded(self) -> None:
        """Settings changed: auto decides afresh, and the next look is now."""
        self.seen_driver = False
        self._due = self._link.clock.monotonic()

    @property
    def on(self) -> bool:
        mode = self._link.settings.sip_check
        return mode == "yes" or (mode == "auto" and self.seen_driver)

    def look(self) -> bool:
        """One look (when due); True when the health changed."""
        link = self._link
        self._due = link.clock.monotonic() + SIP_PROBE_S
        health: Optional[SipHealth] = None
        if link.settings.sip_check != "no":
            drivers = [name for tech, name in SIP_TECHS if self._has_tech(tech)]
            self.drivers = ", ".join(drivers)
            self.seen_driver = self.seen_driver or bool(drivers)
            if self.on:
                health = self._judge(bool(drivers))
        if health == self.health:
            return False
        before, self.health = self.health, health
        self.since = link.clock.time()
        if health is None:
            link.log(logging.INFO, "Consul: the SIP check is off")
        elif health.status == "passing":
            link.log(logging.INFO if before is not None else logging.DEBUG,
                     "Consul: %s", health.reason)
        else:
            link.log(logging.WARNING, "Consul: %s (the checks say %s)", health.reason,
                     health.status)
        return True

    def _judge(self, driver: bool) -> SipHealth:
        if not driver:
            self.last = None
            return SipHealth("critical", NO_DRIVER)
        settings = self._link.settings
        target = probe_target(settings.sip_transports, settings.discovery_port)
        if target is None:
            self.last = None
            return SipHealth("passing", f"SIP: {self.drivers} loaded (the TLS or WebSocket "
                                        f"port {settings.discovery_port} is not probed)")
        result = self._probe(target, SIP_PROBE_TIMEOUT_S)
        self.last, self.probed_at = result, self._link.clock.time()
        if result.outcome == ALIVE:
            return SipHealth("passing", f"SIP answers on {target}")
        return SipHealth("warning" if result.outcome == OVERLOADED else "critical", result.reason)
