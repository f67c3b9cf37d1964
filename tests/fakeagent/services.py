"""The agent's own view: services, their checks, maintenance, health, the blocking query on
a service, and the catalog that mirrors them (at once, unless a test switches sync off)."""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any, Dict, List, Optional, Tuple

from .acl import Access
from .model import (CHECK_DEFINITION_FIELDS, SERVICE_CHECK_FIELDS, SERVICE_FIELDS, STATUSES,
                    ApiError, as_list, catalog_entry, check_type, check_view, content_hash,
                    decode_json, duration_s, fields, health_check_view, service_view, typed,
                    validate_check, validate_meta)
from .state import Core

MAINTENANCE_NOTES = ("Maintenance mode is enabled for this service, but no reason was "
                     "provided. This is a default message.")
HEALTH_CODES = {"passing": 200, "warning": 429, "critical": 503, "maintenance": 503}
_GO_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
             **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}
_ID_FILTER = re.compile(r'^ServiceID == "((?:[^"\\]|\\.)*)"$')


def maintenance_id(service_id: str) -> str:
    return f"_service_maintenance:{service_id}"


class Services:
    def __init__(self, core: Core):
        self.core = core
        self.services: Dict[str, Dict[str, Any]] = {}
        self.checks: Dict[str, Dict[str, Any]] = {}
        self.catalog: Dict[str, Tuple[Dict[str, Any], int]] = {}

    # -- services ------------------------------------------------------------------------

    def register(self, body: bytes, replace: bool, access: Access) -> None:
        values = fields(decode_json(body), SERVICE_FIELDS)
        name = typed(values, "Name", str, "")
        service = {"ID": typed(values, "ID", str, "") or name, "Service": name,
                   "Tags": typed(values, "Tags", list, []),
                   "Meta": typed(values, "Meta", dict, {}),
                   "Port": typed(values, "Port", int, 0),
                   "Address": typed(values, "Address", str, ""),
                   "TaggedAddresses": typed(values, "TaggedAddresses", dict, {}),
                   "Weights": typed(values, "Weights", dict, {}) or {"Passing": 1, "Warning": 1},
                   "EnableTagOverride": typed(values, "EnableTagOverride", bool, False)}
        given = ([values["Check"]] if values.get("Check") else []) + as_list(values.get("Checks"))
        checks = [fields(check, SERVICE_CHECK_FIELDS) for check in given]
        if not name:
            raise ApiError(400, "Missing service name")
        validate_meta(service["Meta"])
        for check in checks:
            if check.get("Status") and check["Status"] not in STATUSES:
                raise ApiError(400, "Status for checks must 'passing', 'warning', 'critical'")
            validate_check(check)
        access.write(f"service:write on {name}")
        sid = service["ID"]
        for number, check in enumerate(checks, 1):
            suffix = f":{number}" if len(checks) > 1 else ""  # 1.8.7 numbers them from 1
            check.setdefault("CheckID", f"service:{sid}{suffix}")
            check["Name"] = check.get("Name") or f"Service '{name}' check"
        with self.core.lock:
            wanted = {check["CheckID"] for check in checks}
            if replace:  # the maintenance check too: it is not in any definition
                for cid in [c for c, v in self.checks.items() if v["ServiceID"] == sid]:
                    if cid not in wanted:
                        del self.checks[cid]
            self.services[sid] = service
            for check in checks:
                self._put_check(check, check["CheckID"], sid)
            self._changed()

    def deregister(self, service_id: str, access: Access) -> None:
        if not service_id:
            raise ApiError(500, "ServiceID missing")
        with self.core.lock:
            service = self._known_service(service_id, access)
            if service is None:
                return  # 1.8.7 without ACLs: 200 for an ID it does not know
            del self.services[service_id]
            for cid in [c for c, v in self.checks.items() if v["ServiceID"] == service_id]:
                del self.checks[cid]
            self._changed()

    def get(self, service_id: str, query: Dict[str, str], access: Access
            ) -> Tuple[Dict[str, Any], Dict[str, str]]:
        """One service with its ContentHash; with ?hash= a blocking query: it returns once the
        definition no longer has that hash, the service is gone or ?wait= passed."""
        access.read()
        try:
            wait_s = duration_s(query["wait"]) if "wait" in query else 300.0
        except ValueError:
            raise ApiError(400, "Invalid wait time") from None
        with self.core.lock:
            known = query.get("hash")
            if known and service_id in self.services:
                self.core.changed.wait_for(
                    lambda: self.core.stopping or service_id not in self.services
                    or content_hash(self.services[service_id]) != known,
                    timeout=min(wait_s, 600.0))
            service = self.services.get(service_id)
            if service is None:
                raise ApiError(404, f"unknown service ID: {service_id}")
            view = dict(service_view(service), ContentHash=content_hash(service))
            return view, {"X-Consul-ContentHash": view["ContentHash"]}

    def listed(self, access: Access) -> Dict[str, Any]:
        with self.core.lock:
            if access.filtered():
                return {}
            return {sid: service_view(s) for sid, s in sorted(self.services.items())}

    # -- checks --------------------------------------------------------------------------

    def register_check(self, body: bytes, access: Access) -> None:
        values = fields(decode_json(body), CHECK_DEFINITION_FIELDS)
        if not typed(values, "Name", str, ""):
            raise ApiError(400, "Missing check name")
        if values.get("Status") and values["Status"] not in STATUSES:
            raise ApiError(400, "Bad check status")
        validate_check(values)
        sid = typed(values, "ServiceID", str, "")
        with self.core.lock:
            owner = self.services.get(sid)
            access.write(f"service:write on {owner['Service']}" if owner
                         else f"node:write on {self.core.node['Name']}")
            if sid and owner is None:
                raise ApiError(500, f'ServiceID "{sid}" does not exist')
            self._put_check(values, values.get("ID") or values["Name"], sid)
            self._changed()

    def deregister_check(self, check_id: str, access: Access) -> None:
        with self.core.lock:
            if self._known_check(check_id, access) is not None:
                del self.checks[check_id]
                self._changed()

    def update_ttl(self, check_id: str, body: bytes, access: Access) -> None:
        update = decode_json(body)
        status = update.get("Status") if isinstance(update, dict) else None
        if status not in STATUSES:
            raise ApiError(400, f"Invalid check status: '{status or ''}'")
        with self.core.lock:
            check = self._known_check(check_id, access)
            if check is None or check["Type"] != "ttl":
                raise ApiError(500, f'CheckID "{check_id}" does not have associated TTL')
            self._set_status(check, status, str(update.get("Output") or ""))

    def set_status(self, check_id: str, status: str, output: str) -> None:
        """A test control: what polling an HTTP check would have found."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        with self.core.lock:
            self._set_status(self.checks[check_id], status, output)

    def listed_checks(self, access: Access) -> Dict[str, Any]:
        with self.core.lock:
            if access.filtered():
                return {}
            return {cid: check_view(c, self.core.node["Name"])
                    for cid, c in sorted(self._live_checks().items())}

    # -- maintenance and health -----------------------------------------------------------

    def maintenance(self, service_id: str, query: Dict[str, str], access: Access) -> None:
        if "enable" not in query or query["enable"] == "":
            raise ApiError(400, "Missing value for enable")
        enable = _GO_BOOLS.get(query["enable"])
        if enable is None:
            raise ApiError(400, f'Invalid value for enable: "{query["enable"]}"')
        with self.core.lock:
            service = self._known_service(service_id, access)
            if service is None:
                raise ApiError(404, f'No service registered with ID "{service_id}"')
            cid = maintenance_id(service_id)
            if enable and cid not in self.checks:  # already on: the reason stays as it was
                self.checks[cid] = {
                    "CheckID": cid, "Name": "Service Maintenance Mode", "Status": "critical",
                    "Notes": query.get("reason") or MAINTENANCE_NOTES, "Output": "",
                    "ServiceID": service_id, "ServiceName": service["Service"],
                    "ServiceTags": list(service["Tags"]), "Type": "maintenance", "TTL": None}
            elif not enable:
                self.checks.pop(cid, None)
            self._changed()

    def health(self, service_id: str, access: Access) -> Tuple[int, Any, str]:
        """(status code, body, X-Consul-Reason): node checks count as the service's."""
        if not service_id:
            raise ApiError(500, "Bad request: Missing serviceID")
        access.read()
        with self.core.lock:
            service = self.services.get(service_id)
            if service is None:
                return (404, {"AggregatedStatus": "critical", "Service": None, "Checks": None},
                        f"ServiceId {service_id} not found")
            own = [c for cid, c in sorted(self._live_checks().items())
                   if c["ServiceID"] in (service_id, "")]
            statuses = {"maintenance" if c["Type"] == "maintenance" else c["Status"] for c in own}
            status = next((s for s in ("maintenance", "critical", "warning") if s in statuses),
                          "passing")
            node = self.core.node["Name"]
            return (HEALTH_CODES[status],
                    {"AggregatedStatus": status, "Service": service_view(service),
                     "Checks": [health_check_view(c, node) for c in own]}, status)

    # -- catalog ---------------------------------------------------------------------------

    def catalog_service(self, name: str, query: Dict[str, str], access: Access
                        ) -> List[Dict[str, Any]]:
        wanted_id: Optional[str] = None
        if query.get("filter"):
            match = _ID_FILTER.match(query["filter"])
            if match is None:  # the fake knows the one filter the module sends
                raise ApiError(500, f"fake agent: unsupported filter {query['filter']!r}")
            wanted_id = json.loads(f'"{match.group(1)}"')
        with self.core.lock:
            if access.filtered():
                return []
            return [catalog_entry(s, self.core.node, index)
                    for s, index in self.catalog.values()
                    if s["Service"] == name and wanted_id in (None, s["ID"])]

    def sync_catalog(self) -> None:
        """The catalog takes the agent's services (what anti-entropy does), unless sync is off."""
        with self.core.lock:
            if not self.core.catalog_sync:
                return
            synced = {}
            for sid, service in self.services.items():
                old = self.catalog.get(sid)
                same = old is not None and old[0] == service
                synced[sid] = old if same else (copy.deepcopy(service), self.core.index)
            self.catalog = synced

    # -- helpers ---------------------------------------------------------------------------

    def _changed(self) -> None:
        self.core.touch()
        self.sync_catalog()

    def _known_service(self, service_id: str, access: Access) -> Optional[Dict[str, Any]]:
        """The service, after the ACL check; with ACLs on, 1.8.7 refuses an unknown ID (500)."""
        service = self.services.get(service_id)
        if service is not None:
            access.write(f"service:write on {service['Service']}")
        elif self.core.acl:
            raise ApiError(500, f'Unknown service {{"{service_id}" {{}}}}')
        return service

    def _known_check(self, check_id: str, access: Access) -> Optional[Dict[str, Any]]:
        check = self.checks.get(check_id)
        if check is not None:
            access.write(f"service:write on {check['ServiceName']}" if check["ServiceID"]
                         else f"node:write on {self.core.node['Name']}")
        elif self.core.acl:
            raise ApiError(500, f'Unknown check "{check_id}"')
        return check

    def _put_check(self, definition: Dict[str, Any], check_id: str, service_id: str) -> None:
        """Add or update a check; one that exists keeps its status and output (1.8.7 does)."""
        service = self.services.get(service_id) or {"Service": "", "Tags": []}
        old = self.checks.get(check_id)
        ttl = duration_s(definition["TTL"]) if definition.get("TTL") else None
        self.checks[check_id] = {
            "CheckID": check_id, "Name": definition["Name"],
            "Status": old["Status"] if old else definition.get("Status") or "critical",
            "Notes": definition.get("Notes") or "", "Output": old["Output"] if old else "",
            "ServiceID": service_id, "ServiceName": service["Service"],
            "ServiceTags": list(service["Tags"]), "Type": check_type(definition), "TTL": ttl,
            "Expires": old.get("Expires") if old else (time.monotonic() + ttl if ttl else None)}

    def _set_status(self, check: Dict[str, Any], status: str, output: str) -> None:
        check["Status"], check["Output"] = status, output
        if check.get("TTL"):
            check["Expires"] = time.monotonic() + check["TTL"]
        self.core.touch()

    def _live_checks(self) -> Dict[str, Dict[str, Any]]:
        """The checks, a TTL check not reported within its TTL turned critical first."""
        now = time.monotonic()
        for check in self.checks.values():
            if check.get("Expires") and now > check["Expires"] and check["Output"] != "TTL expired":
                check["Status"], check["Output"] = "critical", "TTL expired"
        return self.checks
