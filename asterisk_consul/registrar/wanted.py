"""What the module wants the agent to hold, as pure functions of the facts: the settings, this
Asterisk (HostFacts), the operator's choices and the verdict on Asterisk's state. No I/O.

    definition = wanted_definition(settings, facts, choices)   # PUT /v1/agent/service/register
    body = registration_body(definition, verdict)              # ...each check with its status now
"""

from __future__ import annotations

from typing import Any, Dict, List

from ..health import Verdict
from ..registration import (HostFacts, check_id, drain_check_id, our_check_ids,
                            service_definition, ttl_check_id)
from ..settings import Settings
from .choices import Choices, drain_notes


def wanted_definition(settings: Settings, facts: HostFacts, choices: Choices,
                      thresholds: bool = True) -> Dict[str, Any]:
    """The service with the checks the config (or `discovery set check`) wants, and the drain
    check while draining; `thresholds`: the agent takes the EID check's thresholds."""
    return service_definition(settings, facts, choices.checks, drain_notes(choices),
                              thresholds)


def checks_on(settings: Settings, choices: Choices) -> bool:
    return settings.check if choices.checks is None else choices.checks


def check_status(check: Dict[str, Any], verdict: Verdict, service_id: str) -> str:
    """The status a check is registered with: what is true now."""
    if check["CheckID"] == drain_check_id(service_id):
        return check["Status"]  # critical: that is what it is for
    return verdict.ttl_status if "TTL" in check else verdict.http_check_status


def registration_body(definition: Dict[str, Any], verdict: Verdict) -> Dict[str, Any]:
    """The definition, each check starting with the status true now: a new check would
    otherwise start critical until its first report or Consul's first poll (staggered up to an
    interval), and a fresh Asterisk would wait that long to be routable."""
    body = dict(definition)
    if body.get("Checks"):
        body["Checks"] = [dict(c, Status=check_status(c, verdict, definition["ID"]))
                          for c in body["Checks"]]
    return body


def wanted_checks(definition: Dict[str, Any]) -> List[Dict[str, Any]]:
    return list(definition.get("Checks") or [])


def unwanted_check_ids(definition: Dict[str, Any]) -> List[str]:
    """Our check IDs the definition does not hold (removed if the agent has them)."""
    wanted = {c["CheckID"] for c in wanted_checks(definition)}
    return [cid for cid in our_check_ids(definition["ID"]) if cid not in wanted]


def has_check(definition: Dict[str, Any], wanted_id: str) -> bool:
    return any(c["CheckID"] == wanted_id for c in wanted_checks(definition))


def has_http_check(definition: Dict[str, Any]) -> bool:
    return has_check(definition, check_id(definition["ID"]))


def has_ttl_check(definition: Dict[str, Any]) -> bool:
    return has_check(definition, ttl_check_id(definition["ID"]))
