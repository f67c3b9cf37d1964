"""What the registrar answers: the Result of an operator's change, and the StatusSnapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..registration import drain_check_id


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
    stale: bool = False  # True: the worker did not answer in time; this is the cached view


def snapshot(parts, running: bool) -> StatusSnapshot:
    """The status from the worker's parts (read on the worker thread only)."""
    link, service, checks, drain = parts.link, parts.service, parts.checks, parts.drain
    asterisk, catalog, notify, kv = parts.asterisk, parts.catalog, parts.notify, parts.kv
    publisher = kv.publisher
    definition = service.definition
    shown = [c for c in definition.get("Checks") or [] if c["CheckID"] != drain_check_id(
        definition["ID"])]
    return StatusSnapshot(
        agent_url=link.settings.agent_url,
        service_id=definition["ID"],
        service_name=definition["Name"],
        address=definition["Address"],
        port=definition["Port"],
        running=running,
        agent_reachable=link.reachable,
        agent_version=link.version,
        state=service.state.value,
        registered=service.registered,
        registered_since=service.since,
        last_error=link.last_error,
        maintenance=parts.maintenance.wanted,
        maintenance_reason=parts.maintenance.reason,
        maintenance_in_agent=parts.maintenance.in_agent,
        health=service.health,
        checks_on=checks.on,
        checks_set_by="config" if checks.override is None else "discovery set check",
        check_type=link.settings.check_type,
        check_problem=link.settings.check_problem if link.settings.http_check else "",
        checks=tuple(("ttl" if "TTL" in c else "http", c["CheckID"],
                      *checks.states.get(c["CheckID"], ("", ""))) for c in shown),
        ttl_error=checks.ttl_error,
        kv_prefix=publisher.prefix,
        kv_keys=tuple((k, v.decode("utf-8", "replace")) for k, v in publisher.written.items()),
        kv_wanted=len(publisher.wanted),
        kv_session=publisher.session_id,
        kv_renewed=publisher.renewed_at,
        kv_error=kv.error,
        last_sync=service.last_sync,
        last_sync_result=service.last_sync_result,
        events=link.settings.events,
        events_fired=notify.fired,
        events_failed=notify.failed,
        last_event=notify.last_event,
        last_event_error=notify.last_error,
        instance=link.facts.instance,
        in_catalog=catalog.present,
        catalog_since=catalog.since,
        catalog_error=catalog.error,
        drain=drain.on,
        drain_reason=drain.reason,
        drain_by=drain.by,
        drain_since=drain.since,
        drained_at=drain.drained_at,
        channels=asterisk.state.channels,
        busy_channels=link.settings.busy_channels,
        busy=asterisk.busy.busy,
        busy_since=asterisk.busy_since,
        verdict=asterisk.verdict.output,
    )
