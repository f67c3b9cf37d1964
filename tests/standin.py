"""A stand-in for the running Asterisk, for tests that need a Host without Asterisk.

Everything it is asked is answered from plain attributes that tests may set, and
everything it is told (log lines, AMI events, astdb writes) is recorded for asserts.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from asterisk_consul import __version__
from asterisk_consul.host import Host


class StandInHost(Host):
    def __init__(self, config_dir: str = "/etc/asterisk", eid: str = "02:42:ac:11:00:02",
                 version: str = "22.0.0", fully_booted: bool = True):
        self._config_dir = config_dir
        self._eid = eid
        self._version = version
        self.fully_booted = fully_booted
        self.shutting_down = False
        self.stop_requested = False
        self.channels = 0
        self.techs: set = set()  # channel technologies registered ("PJSIP", "SIP")
        self.shim = __version__
        self.astdb: Dict[Tuple[str, str], str] = {}
        self.db_put_works = True            # set False to simulate a failing astdb
        self.logs: List[Tuple[str, str]] = []
        self.events: List[Tuple[str, List[Tuple[str, str]]]] = []

    # -- settable facts --------------------------------------------------------------------

    def set_eid(self, eid: str) -> None:
        self._eid = eid

    def set_version(self, version: str) -> None:
        self._version = version

    def set_config_dir(self, config_dir: str) -> None:
        self._config_dir = config_dir

    # -- Host ------------------------------------------------------------------------------

    def log(self, level: str, message: str, file: str = "asterisk_consul", line: int = 0,
            func: str = "") -> None:
        self.logs.append((level, message))

    def eid(self) -> str:
        return self._eid

    def version(self) -> str:
        return self._version

    def shim_version(self) -> str:
        return self.shim

    def config_dir(self) -> str:
        return self._config_dir

    def is_fully_booted(self) -> bool:
        return self.fully_booted

    def is_shutting_down(self) -> bool:
        return self.shutting_down

    def is_stop_requested(self) -> bool:
        return self.stop_requested or self.shutting_down

    def forget_stop_request(self) -> None:
        self.stop_requested = False
        self.stops_forgotten = getattr(self, "stops_forgotten", 0) + 1

    def active_channels(self) -> int:
        return self.channels

    def channel_tech(self, name: str) -> bool:
        return name in self.techs

    def db_get(self, family: str, key: str) -> Optional[str]:
        return self.astdb.get((family, key))

    def db_put(self, family: str, key: str, value: str) -> bool:
        if not self.db_put_works:
            return False
        self.astdb[(family, key)] = value
        return True

    def manager_event(self, event: str, headers: Sequence[Tuple[str, str]]) -> None:
        self.events.append((event, list(headers)))

    # -- helpers for asserts ---------------------------------------------------------------

    def logged(self, level: Optional[str] = None) -> List[str]:
        """Messages logged (at `level` only, when given)."""
        return [message for lvl, message in self.logs if level is None or lvl == level]

    def events_named(self, event: str) -> List[List[Tuple[str, str]]]:
        return [headers for name, headers in self.events if name == event]


class StatusView:
    """What `discovery show status` and `show settings` read of the Application."""

    def __init__(self, settings, registrar, timeout_s: float = 2.0):
        self.settings, self.registrar, self.timeout_s = settings, registrar, timeout_s
        self.host = StandInHost()
