"""The module as Asterisk sees it: load, unload, reload, shutdown, and what it offers.

Read top to bottom like an Asterisk module: config -> handlers -> load/unload/reload.
The Application owns the current settings and the Registrar; the Registrar owns all Consul
state and I/O. Nothing here touches the network on Asterisk's threads.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Optional

from . import __version__, commands
from .config import ConfigError
from .eidcheck import EidCheck
from .health import AsteriskState
from .loader import CONFIG_FILE, load_settings
from .logbridge import set_secrets
from .registrar import Registrar
from .registration import HostFacts
from .settings import Settings

log = logging.getLogger(__name__)


class Application:
    def __init__(self, host):
        self.host = host
        # The instance token tells this start apart from earlier ones (and from clones).
        self.facts = HostFacts(eid=host.eid(), version=host.version(),
                               instance=os.urandom(8).hex())
        self.settings: Optional[Settings] = None
        self.registrar: Optional[Registrar] = None
        # Serializes load/reload/unload/shutdown; handlers only read the attributes.
        self._lifecycle = threading.Lock()
        self.cli_commands = commands.cli_commands(self)
        self.ami_actions = commands.ami_actions(self)
        self.eid_check = EidCheck(self.facts.eid, self.facts.instance)
        self.http_routes = [self.eid_check]

    # -- config -------------------------------------------------------------------------

    def _read_settings(self) -> Optional[Settings]:
        """The settings in the config file now, or None (with the reason logged)."""
        path = os.path.join(self.host.config_dir(), CONFIG_FILE)
        try:
            settings, warnings = load_settings(self.host, os.environ)
        except ConfigError as error:
            log.error("%s (config %s)", error, path)
            return None
        for warning in warnings:
            log.warning("%s", warning)
        return settings

    def _asterisk_state(self) -> AsteriskState:
        """A few flag reads and the channel count: no lock on Asterisk's call path."""
        host = self.host
        return AsteriskState(booted=host.is_fully_booted(), shutting_down=host.is_shutting_down(),
                             stop_requested=host.is_stop_requested(),
                             channels=host.active_channels())

    def _on_event(self, name, headers) -> None:
        self.host.manager_event(name, headers)

    def _start(self, settings: Settings) -> None:
        set_secrets(settings.token)
        self.settings = settings
        self.registrar = Registrar(settings, self.facts, self._on_event,
                                   host_state=self._asterisk_state,
                                   on_verdict=self.eid_check.show,
                                   forget_stop=self.host.forget_stop_request,
                                   on_secret=set_secrets, sip_techs=self.host.channel_tech)
        self.registrar.start()

    def vouches(self) -> bool:
        """Whether the answers the shim replays for us are still true: a worker that is alive
        and not stuck (the bridge's pulse asks about once a second)."""
        registrar = self.registrar
        return registrar is None or registrar.alive()

    def _stop(self, deregister: bool = True) -> None:
        registrar, self.registrar = self.registrar, None
        if registrar is not None:
            registrar.stop(deregister=deregister)

    # -- lifecycle ----------------------------------------------------------------------

    def load(self) -> bool:
        log.debug("asterisk_consul %s on Python %s (%s)", __version__, sys.version.split()[0], sys.executable)
        with self._lifecycle:
            settings = self._read_settings()
            if settings is None:
                log.error("res_discovery_consul not loaded: fix %s and load it again", CONFIG_FILE)
                return False
            if not settings.enabled:
                log.info("res_discovery_consul is disabled ([general] enabled = no in %s); not loading",
                         CONFIG_FILE)
                return False
            self._start(settings)
            return True

    def unload(self) -> None:
        with self._lifecycle:
            self._stop(deregister=True)

    def shutdown(self) -> None:
        """Asterisk is exiting without unloading modules (core stop now, restart, SIGTERM)."""
        with self._lifecycle:
            self._stop(deregister=True)

    def reload(self) -> bool:
        with self._lifecycle:
            settings = self._read_settings()
            if settings is None:
                log.error("reload of %s failed; the running configuration stays in use", CONFIG_FILE)
                return False
            if settings == self.settings and (self.registrar is not None) == settings.enabled:
                # Same values, but lines may have moved: 'discovery show settings' must name
                # where each value is now.
                self.settings = settings
                log.debug("%s unchanged; nothing to do", CONFIG_FILE)
                return True
            if not settings.enabled:
                log.info("res_discovery_consul disabled by reload; deregistering")
                self._stop(deregister=True)
                self.settings = settings
                return True
            if self.registrar is None:
                self._start(settings)
                return True
            set_secrets(settings.token)
            self.settings = settings
            self.registrar.apply(settings)
            return True

    # -- for the commands ---------------------------------------------------------------

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s if self.settings is not None else 2.0
