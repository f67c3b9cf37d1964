"""What we register with Consul, as pure functions of Settings and facts about this Asterisk.

`service_definition` builds the body of PUT /v1/agent/service/register; `drift` compares it
with what the agent reports and says what (if anything) no longer matches. No I/O here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote

from .settings import Settings
from .siptransports import tagged_addresses

CHECK_NAME = "Asterisk Instance EID Verification"
TTL_CHECK_NAME = "Asterisk Instance Liveness"
DRAIN_CHECK_NAME = "Asterisk Draining"
CHECK_PATH = "/res_discovery_consul/check_eid"
META_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # whole key: use fullmatch
# Consul's own limits on service metadata (it rejects the whole registration otherwise).
META_MAX_PAIRS = 64
META_MAX_VALUE_CHARS = 512
META_RESERVED_PREFIX = "consul-"
TAGGED_PREFIX = "sip_"  # our TaggedAddresses keys; Consul adds lan, wan... of its own
_CONSUL_WEIGHTS = {"Passing": 1, "Warning": 1}  # what Consul stores when none are given


@dataclass(frozen=True)
class HostFacts:
    """Facts about the running Asterisk that go into the registration."""

    eid: str
    version: str
    instance: str = ""  # a random token made at each module start: tells starts apart


def check_id(service_id: str) -> str:
    """The HTTP EID check's ID."""
    return f"check-asterisk-eid-{service_id}"


def ttl_check_id(service_id: str) -> str:
    """The TTL check's ID: the module reports its status to Consul."""
    return f"check-asterisk-ttl-{service_id}"


def drain_check_id(service_id: str) -> str:
    """The critical check that keeps a draining service out of the healthy set."""
    return f"check-asterisk-drain-{service_id}"


def our_check_ids(service_id: str) -> Tuple[str, str, str]:
    return check_id(service_id), ttl_check_id(service_id), drain_check_id(service_id)


def maintenance_check_id(service_id: str) -> str:
    """The critical check Consul adds while a service is in maintenance mode."""
    return f"_service_maintenance:{service_id}"


def _host_in_url(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def check_url(settings: Settings, facts: HostFacts) -> str:
    """URL Consul polls to verify that the Asterisk answering is the one registered.

    It carries the instance EID, not the service ID: a new container that reuses the IP of a
    dead one must fail this check; and this start's instance token: a restarted or cloned
    Asterisk with the same EID at the same address fails an earlier start's check.
    """
    prefix = settings.http_prefix.strip("/")
    path = (f"/{prefix}" if prefix else "") + CHECK_PATH
    url = (f"{settings.check_scheme}://{_host_in_url(settings.discovery_ip)}:"
           f"{settings.check_http_port}{path}?expected_eid={quote(facts.eid, safe=':')}")
    return url + (f"&instance={facts.instance}" if facts.instance else "")


def check_definition(settings: Settings, facts: HostFacts, thresholds: bool = True
                     ) -> Dict[str, Any]:
    """The HTTP EID check, as it goes into the service's Checks; `thresholds`: with the
    polls in a row it takes to change status (for an agent that knows the fields)."""
    definition: Dict[str, Any] = {
        "CheckID": check_id(settings.service_id),
        "Name": CHECK_NAME,
        "HTTP": check_url(settings, facts),
        "Method": "GET",
        "Interval": settings.check_interval,
        "Timeout": settings.check_timeout,
        "DeregisterCriticalServiceAfter": settings.check_deregister_after,
    }
    if settings.check_scheme == "https":
        # Sent only when set: Consul 1.8 refuses a body naming TLSServerName at all.
        if settings.check_tls_skip_verify:
            definition["TLSSkipVerify"] = True
        if settings.check_tls_server_name:
            definition["TLSServerName"] = settings.check_tls_server_name
    if thresholds:
        # Sent only when set: the TTL check ignores them (1.8.7: a report sets the status at
        # once), and the drain and maintenance checks must act at once.
        if settings.check_success_before_passing:
            definition["SuccessBeforePassing"] = settings.check_success_before_passing
        if settings.check_failures_before_critical:
            definition["FailuresBeforeCritical"] = settings.check_failures_before_critical
    return definition


def ttl_report_interval_s(settings: Settings) -> float:
    """How often the TTL check is reported: a third of its TTL, so one lost report is harmless."""
    return max(settings.check_ttl.seconds / 3.0, 0.3)


def ttl_check_definition(settings: Settings) -> Dict[str, Any]:
    """The TTL check; its Status is added when registering (it is the state at that moment)."""
    return {
        "CheckID": ttl_check_id(settings.service_id),
        "Name": TTL_CHECK_NAME,
        "TTL": settings.check_ttl,
        "Notes": (f"Reported by res_discovery_consul every {ttl_report_interval_s(settings):g} s: "
                  f"passing when Asterisk is fully booted, warning while it starts, critical "
                  f"while it shuts down or when the reports stop"),
        "DeregisterCriticalServiceAfter": settings.check_deregister_after,
    }


def check_definitions(settings: Settings, facts: HostFacts, thresholds: bool = True
                      ) -> List[Dict[str, Any]]:
    """The checks of check_type, in the order they are registered."""
    checks = []
    if settings.http_check:
        checks.append(check_definition(settings, facts, thresholds))
    if settings.ttl_check:
        checks.append(ttl_check_definition(settings))
    return checks


def drain_check_definition(service_id: str, notes: str) -> Dict[str, Any]:
    """Registered critical while the service drains (whatever check_type is): consumers that
    read the healthy set stop sending new calls. No DeregisterCriticalServiceAfter: a long
    drain must not make Consul remove the service."""
    return {"CheckID": drain_check_id(service_id), "Name": DRAIN_CHECK_NAME, "TTL": "24h",
            "Status": "critical", "Notes": notes}


def meta_problems(settings: Settings) -> List[str]:
    """Why profile metadata entries will be left out of Meta, one line each (for the log)."""
    return _build_meta(settings, HostFacts(eid="", version=""))[1]


def meta(settings: Settings, facts: HostFacts) -> Dict[str, str]:
    return _build_meta(settings, facts)[0]


def _build_meta(settings: Settings, facts: HostFacts) -> Tuple[Dict[str, str], List[str]]:
    # Our own keys come first and cannot be overridden by a profile: a wrong eid would make
    # consumers trust the wrong box.
    result = {
        "eid": facts.eid,
        "asterisk_version": facts.version,
        "ari_port": str(settings.ari_port),
        "ari_scheme": settings.ari_scheme,
    }
    if facts.instance:
        result["instance"] = facts.instance
    problems = []
    for key, value in settings.metadata:
        key, value = str(key), str(value)
        if key in result:
            problems.append(f"metadata key '{key}' is reserved by the module; ignored")
        elif not META_KEY_PATTERN.fullmatch(key):
            problems.append(f"metadata key '{key}' is not valid for Consul "
                            "(letters, digits, '_' and '-', at most 128); ignored")
        elif key.startswith(META_RESERVED_PREFIX):
            problems.append(f"metadata key '{key}': prefix 'consul-' is reserved by Consul; "
                            "ignored")
        elif len(value) > META_MAX_VALUE_CHARS:
            problems.append(f"metadata '{key}' is longer than {META_MAX_VALUE_CHARS} "
                            "characters; ignored")
        elif len(result) >= META_MAX_PAIRS:
            problems.append(f"metadata '{key}': Consul allows at most {META_MAX_PAIRS} "
                            "entries; ignored")
        else:
            result[key] = value
    return result, problems


def service_definition(settings: Settings, facts: HostFacts, checks_on: Optional[bool] = None,
                       drain_notes: Optional[str] = None, thresholds: bool = True
                       ) -> Dict[str, Any]:
    """The body of PUT /v1/agent/service/register for these settings; `checks_on` overrides
    the config's `check` (discovery set check on|off); `drain_notes` adds the drain check."""
    definition: Dict[str, Any] = {
        "ID": settings.service_id,
        "Name": settings.name,
        "Tags": list(settings.tags),
        "Address": settings.discovery_ip,
        "Port": int(settings.discovery_port),
        "Meta": meta(settings, facts),
        "Weights": {"Passing": settings.weight_passing, "Warning": settings.weight_warning},
    }
    tagged = tagged_addresses(settings.sip_transports, settings.discovery_port,
                              settings.discovery_ip)
    if tagged:
        definition["TaggedAddresses"] = tagged
    checks = check_definitions(settings, facts, thresholds) if (
        settings.check if checks_on is None else checks_on) else []
    if drain_notes is not None:
        checks.append(drain_check_definition(settings.service_id, drain_notes))
    if checks:
        definition["Checks"] = checks
    return definition


def standalone_check(check: Mapping[str, Any], service_id: str,
                     status: Optional[str] = None) -> Dict[str, Any]:
    """A service's check as the body of PUT /v1/agent/check/register (ID, bound to the service)."""
    body = {("ID" if key == "CheckID" else key): value for key, value in check.items()}
    body["ServiceID"] = service_id
    if status:
        body["Status"] = status
    return body


def drift(definition: Mapping[str, Any], agent_service: Optional[Mapping[str, Any]],
          agent_checks: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """What no longer matches between our definition and the agent's view; [] = in sync.

    `agent_service` is GET /v1/agent/service/<id> (None when absent), `agent_checks` is
    GET /v1/agent/checks. Only fields we set are compared: Consul adds its own
    (ContentHash…, TaggedAddresses lan/wan: of those only our sip_* keys count), and 1.8.7
    reports no check definition, so a check is compared by ID, name, owner and type.
    """
    service_id = definition["ID"]
    if agent_service is None:
        return [f"service {service_id} is not registered"]
    differences = []
    expected = {
        "Service": definition["Name"],
        "Tags": list(definition.get("Tags") or []),
        "Address": definition.get("Address", ""),
        "Port": definition.get("Port", 0),
        "Meta": dict(definition.get("Meta") or {}),
        "Weights": dict(definition.get("Weights") or _CONSUL_WEIGHTS),
        "TaggedAddresses": _ours(definition.get("TaggedAddresses")),
    }
    actual = {
        "Service": agent_service.get("Service"),
        "Tags": list(agent_service.get("Tags") or []),
        "Address": agent_service.get("Address", ""),
        "Port": agent_service.get("Port", 0),
        "Meta": dict(agent_service.get("Meta") or {}),
        "Weights": dict(agent_service.get("Weights") or _CONSUL_WEIGHTS),
        "TaggedAddresses": _ours(agent_service.get("TaggedAddresses")),
    }
    for field_name, want in expected.items():
        if actual[field_name] != want:
            differences.append(f"{field_name} is {actual[field_name]!r}, expected {want!r}")

    differences += check_drift(definition, agent_checks)
    return differences


def _ours(tagged: Optional[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The TaggedAddresses this module sets (sip_*), as {"Address", "Port"}."""
    return {key: {"Address": value.get("Address", ""), "Port": value.get("Port", 0)}
            for key, value in (tagged or {}).items()
            if key.startswith(TAGGED_PREFIX) and isinstance(value, Mapping)}


def check_drift(definition: Mapping[str, Any],
                agent_checks: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """How the agent's checks of our service differ from the definition's; [] = in sync."""
    service_id = definition["ID"]
    wanted = {c["CheckID"]: c for c in definition.get("Checks") or []}
    differences = []
    for our_check_id in our_check_ids(service_id):
        present = agent_checks.get(our_check_id)
        wanted_check = wanted.get(our_check_id)
        if wanted_check:
            kind = "ttl" if "TTL" in wanted_check else "http"
            if present is None:
                differences.append(f"check {our_check_id} is missing")
            elif (present.get("ServiceID") != service_id
                  or present.get("Name") != wanted_check["Name"]
                  or present.get("Type", kind) != kind
                  or _thresholds_differ(wanted_check, present.get("Definition") or {})):
                differences.append(f"check {our_check_id} differs")
        elif present is not None and present.get("ServiceID") == service_id:
            differences.append(f"check {our_check_id} is registered but switched off")
    return differences


def _thresholds_differ(wanted: Mapping[str, Any], reported: Mapping[str, Any]) -> bool:
    """The polls-in-a-row thresholds, compared only where the agent reports them (1.8.7
    reports an empty Definition: nothing to compare)."""
    return any(name in reported and (reported[name] or 0) != wanted.get(name, 0)
               for name in ("SuccessBeforePassing", "FailuresBeforeCritical"))


# -- the Consul user events' payload ------------------------------------------------------------

#: Consul refuses a user event whose encoding is over 512 bytes; the encoding holds the
#: payload, the event's name twice and some 100 bytes of its own (ID, version, filters):
#: measured on Consul 1.8.7, payload + 2 x name may reach 414 to 416 bytes.
EVENT_SIZE_LIMIT = 512
EVENT_ROOM = 400  # payload + 2 x name, with a margin


def event_payload(service_id: str, name: str, eid: str, address: str, port: Any,
                  version: str, maintenance: bool) -> bytes:
    return json.dumps({"id": service_id, "name": name, "eid": eid, "address": address,
                       "port": int(port), "version": version, "maintenance": bool(maintenance)},
                      separators=(",", ":")).encode("utf-8")


def event_too_large(event_name: str, payload: bytes) -> Optional[str]:
    """Why Consul would refuse this event (its size), or None."""
    size = len(payload) + 2 * len(event_name.encode("utf-8"))
    if size <= EVENT_ROOM:
        return None
    return (f"its payload ({len(payload)} bytes) and its name ({len(event_name)} characters) "
            f"are over what fits in Consul's {EVENT_SIZE_LIMIT}-byte limit for a user event "
            f"(payload + 2 x name at most {EVENT_ROOM}): a shorter id, name or event name")
