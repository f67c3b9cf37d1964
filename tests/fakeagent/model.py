"""What the fake agent accepts and how it shows it: decoding and validating definitions as
Consul 1.8.7 does (its error texts included), and the JSON views of services, checks,
catalog entries, sessions and KV entries, shaped as 1.8.7 answers them."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from typing import Any, Dict, List, Optional


class ApiError(Exception):
    """An answer other than 2xx: the status and Consul's text body."""

    def __init__(self, status: int, text: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(f"{status} {text}")
        self.status, self.text, self.headers = status, text, headers or {}


STATUSES = ("passing", "warning", "critical")

# The fields 1.8.7 decodes (Go's decoder matches them ignoring case and refuses any other:
# TLSServerName, H2PING... came later).
_CHECK_COMMON = {"Name", "Status", "Notes", "ScriptArgs", "HTTP", "Header", "Method", "Body",
                 "TCP", "Interval", "AliasNode", "AliasService", "DockerContainerID", "Shell",
                 "GRPC", "GRPCUseTLS", "TLSSkipVerify", "Timeout", "TTL",
                 "SuccessBeforePassing", "FailuresBeforeCritical",
                 "DeregisterCriticalServiceAfter", "OutputMaxSize"}
SERVICE_CHECK_FIELDS = _CHECK_COMMON | {"CheckID", "ProxyHTTP", "ProxyGRPC"}
CHECK_DEFINITION_FIELDS = _CHECK_COMMON | {"ID", "ServiceID", "Token"}
SERVICE_FIELDS = {"Kind", "ID", "Name", "Tags", "Address", "TaggedAddresses", "Meta", "Port",
                  "Check", "Checks", "Weights", "Token", "EnableTagOverride", "Proxy", "Connect"}

_GO_TYPES = {str: "string", int: "int", list: "[]string", dict: "map[string]string",
             bool: "bool"}
_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "bool", list: "array",
               dict: "object", type(None): "null"}


def decode_json(body: bytes) -> Any:
    """The body as Go's decoder would take it, or its error text."""
    if not body.strip():
        raise ApiError(400, "Request decode failed: EOF")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError(400, f"Request decode failed: {exc.msg}") from None


def fields(obj: Any, known: set, where: str = "") -> Dict[str, Any]:
    """obj's fields under their canonical names; unknown ones refused as 1.8.7 does."""
    if not isinstance(obj, dict):
        raise ApiError(400, f"Request decode failed: json: cannot unmarshal "
                            f"{_JSON_TYPES.get(type(obj), 'value')} into Go value{where}")
    by_lower = {name.lower(): name for name in known}
    out = {}
    for key, value in obj.items():
        name = by_lower.get(key.lower())
        if name is None:
            raise ApiError(400, f'Request decode failed: json: unknown field "{key}"')
        out[name] = value
    return out


def typed(values: Dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = values.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(400, f"Request decode failed: json: cannot unmarshal "
                            f"{_JSON_TYPES.get(type(value), 'value')} into Go struct field "
                            f".{name} of type {_GO_TYPES[kind]}")
    return value


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_s(value: Any) -> float:
    """A Go duration ("1m30s", "500ms", "0") or nanoseconds, in seconds; ValueError if not."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / 1e9
    text = str(value)
    if text in ("0", "+0", "-0"):
        return 0.0
    sign, rest = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.lstrip("+"))
    total, pos = 0.0, 0
    while pos < len(rest):
        part = _DURATION_PART.match(rest, pos)
        if part is None:
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(part.group(1)) * _UNIT_S[part.group(2)]
        pos = part.end()
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def check_type(check: Dict[str, Any]) -> str:
    """The Type an agent reports for a check definition."""
    for field_name, kind in (("TTL", "ttl"), ("HTTP", "http"), ("TCP", "tcp"), ("GRPC", "grpc"),
                             ("ScriptArgs", "script"), ("AliasService", "alias"),
                             ("AliasNode", "alias"), ("DockerContainerID", "docker")):
        if check.get(field_name):
            return kind
    return ""


def validate_check(check: Dict[str, Any]) -> None:
    """CheckType.Validate of 1.8.7: a TTL or an interval, not both, not neither."""
    try:
        interval = duration_s(check.get("Interval") or 0)
        ttl = duration_s(check.get("TTL") or 0)
    except ValueError as exc:
        raise ApiError(400, f"Request decode failed: {exc}") from None
    interval_check = any(check.get(f) for f in ("ScriptArgs", "HTTP", "TCP", "GRPC"))
    alias = bool(check.get("AliasService") or check.get("AliasNode"))
    if interval > 0 and ttl > 0:
        raise ApiError(400, "Invalid check: Interval and TTL cannot both be specified")
    if interval_check and interval <= 0:
        raise ApiError(400, "Invalid check: Interval must be > 0 for Script, HTTP, or TCP checks")
    if not interval_check and not alias and ttl <= 0:
        raise ApiError(400, "Invalid check: TTL must be > 0 for TTL checks")


_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")


def validate_meta(meta: Dict[str, Any]) -> None:
    for key, value in meta.items():
        problem = None
        if not _META_KEY.match(key):
            problem = "Key contains invalid characters"
        elif key.startswith("consul-"):
            problem = "Key prefix 'consul-' is reserved for internal use"
        elif len(str(value)) > 512:
            problem = "Value is too long (limit: 512 characters)"
        if problem:
            raise ApiError(400, f"Invalid Service Meta: Couldn't load metadata pair "
                                f"('{key}', '{value}'): {problem}")


# -- views -------------------------------------------------------------------------------------

def tagged_addresses(service: Dict[str, Any]) -> Dict[str, Any]:
    """Explicit TaggedAddresses plus the lan/wan ones 1.8.7 adds for an IP Address."""
    out = dict(service.get("TaggedAddresses") or {})
    try:
        family = "ipv4" if ipaddress.ip_address(service["Address"]).version == 4 else "ipv6"
    except ValueError:
        return out
    for side in ("lan", "wan"):
        out.setdefault(f"{side}_{family}", {"Address": service["Address"],
                                            "Port": service["Port"]})
    return out


def service_view(service: Dict[str, Any]) -> Dict[str, Any]:
    """GET /v1/agent/services' entry of one service (without ContentHash)."""
    view = {key: service[key] for key in ("ID", "Service", "Tags", "Meta", "Port", "Address")}
    tagged = tagged_addresses(service)
    if tagged:
        view["TaggedAddresses"] = tagged
    view["Weights"] = service["Weights"]
    view["EnableTagOverride"] = service["EnableTagOverride"]
    return view


def content_hash(service: Dict[str, Any]) -> str:
    """A hash of the definition: the same definition, the same hash (not 1.8.7's bytes)."""
    canonical = json.dumps(service_view(service), sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def check_view(check: Dict[str, Any], node: str) -> Dict[str, Any]:
    """GET /v1/agent/checks' entry: 1.8.7 shows an empty Definition."""
    return {"Node": node, "CheckID": check["CheckID"], "Name": check["Name"],
            "Status": check["Status"], "Notes": check["Notes"], "Output": check["Output"],
            "ServiceID": check["ServiceID"], "ServiceName": check["ServiceName"],
            "ServiceTags": list(check["ServiceTags"]), "Type": check["Type"], "Definition": {},
            "CreateIndex": 0, "ModifyIndex": 0}


def health_check_view(check: Dict[str, Any], node: str) -> Dict[str, Any]:
    """A check in /v1/agent/health/service/id/<id>: 1.8.7 leaves Type and tags out there."""
    view = check_view(check, node)
    view.update(ServiceTags=None, Type="", Definition={
        "Interval": "0s", "Timeout": "0s", "DeregisterCriticalServiceAfter": "0s", "HTTP": "",
        "Header": None, "Method": "", "Body": "", "TLSSkipVerify": False, "TCP": ""})
    return view


def catalog_entry(service: Dict[str, Any], node: Dict[str, str], index: int) -> Dict[str, Any]:
    address = node["Address"]
    entry = {"ID": node["ID"], "Node": node["Name"], "Address": address, "Datacenter": "dc1",
            "TaggedAddresses": {"lan": address, "lan_ipv4": address, "wan": address,
                                "wan_ipv4": address},
            "NodeMeta": {"consul-network-segment": ""}, "ServiceKind": "",
            "ServiceID": service["ID"], "ServiceName": service["Service"],
            "ServiceTags": service["Tags"], "ServiceAddress": service["Address"],
            "ServiceWeights": service["Weights"], "ServiceMeta": service["Meta"],
            "ServicePort": service["Port"],
            "ServiceEnableTagOverride": service["EnableTagOverride"],
            "ServiceProxy": {"MeshGateway": {}, "Expose": {}}, "ServiceConnect": {},
            "CreateIndex": index, "ModifyIndex": index}
    if tagged_addresses(service):  # only when there are some, as 1.8.7 does
        entry["ServiceTaggedAddresses"] = tagged_addresses(service)
    return entry


def kv_entry(entry: Dict[str, Any]) -> Dict[str, Any]:
    view = {"LockIndex": entry["LockIndex"], "Key": entry["Key"], "Flags": entry["Flags"],
            "Value": base64.b64encode(entry["Value"]).decode() if entry["Value"] else None}
    if entry.get("Session"):
        view["Session"] = entry["Session"]
    view.update(CreateIndex=entry["CreateIndex"], ModifyIndex=entry["ModifyIndex"])
    return view


def pretty(value: Any) -> bytes:
    """JSON as 1.8.7 writes it: indented, with a final newline."""
    return (json.dumps(value, indent=4, ensure_ascii=False) + "\n").encode()


def as_list(value: Any) -> List[Any]:
    return list(value) if isinstance(value, list) else []
