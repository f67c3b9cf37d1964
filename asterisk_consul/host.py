"""What the module asks of Asterisk.

bridge.CffiHost implements this over the C shim inside Asterisk; tests use a stand-in
with the same methods. Nothing outside bridge.py knows how the answers are obtained.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

# Levels understood by Host.log, mapped by the shim onto Asterisk's logger.
LOG_DEBUG = "debug"
LOG_VERBOSE = "verbose"
LOG_NOTICE = "notice"
LOG_WARNING = "warning"
LOG_ERROR = "error"


class Host:
    """Interface to the running Asterisk. Every method is cheap and never blocks on the network."""

    def log(self, level: str, message: str, file: str = "asterisk_consul", line: int = 0,
            func: str = "") -> None:
        """A line in Asterisk's log, attributed to file:line func."""
        raise NotImplementedError

    def eid(self) -> str:
        """This instance's entity ID, lowercase 'aa:bb:cc:dd:ee:ff'."""
        raise NotImplementedError

    def version(self) -> str:
        """Asterisk's version."""
        raise NotImplementedError

    def shim_version(self) -> str:
        """The version of the package the C shim was built from (it may differ from this
        package's after an install without a rebuild)."""
        raise NotImplementedError

    def config_dir(self) -> str:
        raise NotImplementedError

    def is_fully_booted(self) -> bool:
        raise NotImplementedError

    def is_shutting_down(self) -> bool:
        raise NotImplementedError

    def is_stop_requested(self) -> bool:
        """Any `core stop|restart` was asked for, 'when convenient' included."""
        raise NotImplementedError

    def forget_stop_request(self) -> None:
        """The stop that is_stop_requested() saw was cancelled: its leftover sign (which
        Asterisk never undoes after 'when convenient') no longer counts."""
        raise NotImplementedError

    def active_channels(self) -> int:
        raise NotImplementedError

    def channel_tech(self, name: str) -> bool:
        """Whether a loaded channel driver has registered the technology `name` ("PJSIP")."""
        raise NotImplementedError

    def db_get(self, family: str, key: str) -> Optional[str]:
        """Asterisk's internal database (astdb); None when the key is absent."""
        raise NotImplementedError

    def db_put(self, family: str, key: str, value: str) -> bool:
        raise NotImplementedError

    def manager_event(self, event: str, headers: Sequence[Tuple[str, str]]) -> None:
        """Fire an AMI event in the 'system' class."""
        raise NotImplementedError
