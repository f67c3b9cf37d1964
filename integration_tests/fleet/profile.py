"""Which stack the fleet runs: FLEET_ASTERISK=22 (the default) or 16.

    22  Asterisk 22 from the sid chroot (entered inside each host's network namespace) with
        PJSIP (a UDP and a TCP transport on the host's address), Kamailio from the same sid
        chroot (what a user deploying Debian's Asterisk 22 gets from the same release).
    16  Asterisk 16 from the bullseye prefix with chan_sip (UDP), Kamailio 5.6 from bookworm:
        the fleet as it was first built, kept as a second profile.

SIPp (bookworm's sip-tester, run on the machine in the caller's namespace) places calls over
UDP and TCP in both profiles; Kamailio relays them to the boxes over UDP.

    profile = current()            # from FLEET_ASTERISK
    profile.asterisk, profile.sip_stack, profile.kamailio_from
    profile.sip_check              # the module has `sip_check` (issue 21): the boxes set it
"""

import os
from dataclasses import dataclass

from asterisk_consul import options

VERSIONS = ("22", "16")
DEFAULT = "22"


@dataclass(frozen=True)
class Profile:
    asterisk: str            # "22" or "16"
    sip_stack: str           # "pjsip" or "chan_sip"
    kamailio_from: str       # "sid" (in the chroot) or "bookworm" (dpkg -x'ed)
    transports: tuple        # the caller's transports: SIPp runs one call stream on each

    @property
    def sip_check(self):
        """The module of this tree knows `sip_check` (SIP-aware health): the boxes turn it on
        (yes: a box whose SIP stack is gone must leave rotation). Without it the option would
        only be warned about as unknown, so it is left out."""
        return "sip_check" in options.BY_NAME

    @property
    def label(self):
        return (f"Asterisk {self.asterisk} + {'PJSIP' if self.sip_stack == 'pjsip' else 'chan_sip'}"
                f", Kamailio from {self.kamailio_from}, SIPp over "
                + "+".join(t.upper() for t in self.transports))


PROFILES = {
    "22": Profile("22", "pjsip", "sid", ("udp", "tcp")),
    "16": Profile("16", "chan_sip", "bookworm", ("udp", "tcp")),
}


def current(version=None):
    """The profile named by version, else by FLEET_ASTERISK, else 22."""
    version = str(version or os.environ.get("FLEET_ASTERISK") or DEFAULT)
    if version not in PROFILES:
        raise ValueError(f"FLEET_ASTERISK must be one of {', '.join(VERSIONS)}, not {version!r}")
    return PROFILES[version]
