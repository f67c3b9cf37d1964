"""What the registrar answers: the Result of an operator's change, and the StatusSnapshot
(made by the reconciler from each part's own view)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str


STOPPING = Result(False, "the discovery module is stopping")


@dataclass(frozen=True)
class StatusSnapshot:
    """What the module knows about its registration. Times are time.time() seconds."""

    agent_url: str
    service_id: str
    service_name: str
    address: str
    port: int
    running: bool = False
    agent_reachable: Optional[bool] = None  # None: not tried yet
    agent_version: str = ""
    state: str = "unregistered"  # the registration's named state (service.py)
    registered: bool = False
    registered_since: Optional[float] = None
    last_error: str = ""
    maintenance: bool = False  # what we want (and keep re-applying)
    maintenance_reason: str = ""
    maintenance_in_agent: Optional[bool] = None  # what the agent last reported
    health: str = ""  # aggregated: passing, warning, critical, unknown ("" = not fetched)
    checks_on: bool = False
    checks_set_by: str = "config"  # or "discovery set check" (kept until the check config changes)
    check_type: str = "http"
    check_problem: str = ""  # why the EID check cannot pass, as the load saw it
    # (kind "http"/"ttl", check ID, status, output) of each check we register
    checks: Tuple[Tuple[str, str, str, str], ...] = ()
    ttl_error: str = ""
    kv_prefix: str = ""
    kv_keys: Tuple[Tuple[str, str], ...] = ()  # (key, value) Consul holds for us
    kv_wanted: int = 0
    kv_session: str = ""
    kv_renewed: Optional[float] = None
    kv_error: str = ""
    last_sync: Optional[float] = None
    last_sync_result: str = ""
    events: bool = False  # Consul user events enabled
    events_fired: int = 0
    events_failed: int = 0
    last_event: str = ""  # "<name> at <time>" of the last one Consul took
    last_event_error: str = ""  # why the last one that failed did
    instance: str = ""  # this start's token (Meta instance, the check URL)
    in_catalog: Optional[bool] = None  # None: not known yet
    catalog_since: Optional[float] = None
    catalog_error: str = ""
    drain: bool = False
    drain_reason: str = ""
    drain_by: str = ""  # "operator" or "shutdown"
    drain_since: Optional[float] = None
    drained_at: Optional[float] = None
    channels: int = 0  # active channels when last looked at
    busy_channels: int = 0  # the threshold (0: off)
    busy: bool = False
    busy_since: Optional[float] = None
    verdict: str = ""  # what the checks say of Asterisk now
    token_from: str = ""  # where the token in use came from ("": no token)
    token_read_at: Optional[float] = None  # when the token file was read for it
    token_standing: str = ""  # "", "accepted", "ACL not found", "Permission denied"
    token_problem: str = ""  # why the token file gives no token now (the token in use stays)
    # The last rotation: (new token first read, in use, service registered with it), or ().
    token_rotation: Tuple[Optional[float], ...] = ()
    sip_check: str = "auto"  # the option
    sip_on: bool = False     # asked now (auto: once a SIP channel driver was seen)
    sip_status: str = ""     # passing, warning, critical ("" while off)
    sip_reason: str = ""
    sip_last: str = ""       # the last probe's own line (with its round trip)
    sip_rtt_s: Optional[float] = None
    sip_probed_at: Optional[float] = None
    sip_since: Optional[float] = None  # since when sip_status is what it is
    sip_drivers: str = ""    # the SIP channel drivers registered at the last look
    stale: bool = False  # True: the worker did not answer in time; this is the cached view
