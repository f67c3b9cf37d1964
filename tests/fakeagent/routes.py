"""Which path does what: the subset of the agent API the module uses, each route a few
lines from the HTTP request to the Services or Store operation and back."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from .acl import Access
from .model import ApiError, pretty

VERSION = "1.8.7"


class Call(NamedTuple):
    """One request as the routes see it (the path URL-decoded, one value per query key)."""

    method: str
    path: str
    query: Dict[str, str]
    body: bytes
    access: Access


class Answer(NamedTuple):
    status: int
    body: bytes
    headers: Dict[str, str]


def ok(value: Any = None, status: int = 200, **headers: str) -> Answer:
    """A JSON answer; None is the empty body of 1.8.7's agent writes."""
    return Answer(status, b"" if value is None else pretty(value), dict(headers))


def _self(agent, call: Call, _: str) -> Answer:
    call.access.read()
    node = agent.core.node
    return ok({"Config": {"Datacenter": "dc1", "NodeName": node["Name"], "NodeID": node["ID"],
                          "Revision": "", "Server": True, "Version": VERSION},
               "DebugConfig": {}, "Coord": {}, "Stats": {}, "Meta": {},
               "Member": {"Name": node["Name"], "Addr": node["Address"], "Port": 8301,
                          "Tags": {"build": f"{VERSION}:", "dc": "dc1", "role": "consul"},
                          "Status": 1}})


def _register(agent, call: Call, _: str) -> Answer:
    replace = call.query.get("replace-existing-checks", "").lower() in ("true", "1", "t")
    agent.services.register(call.body, replace, call.access)
    return ok()


def _health(agent, call: Call, sid: str) -> Answer:
    status, body, reason = agent.services.health(sid, call.access)
    if call.query.get("format") == "text":
        return Answer(status, reason.encode(), {"X-Consul-Reason": reason})
    return ok(body, status, **{"X-Consul-Reason": reason})


def _kv_get(agent, call: Call, key: str) -> Answer:
    found = agent.store.get(key, call.query, call.access)
    index = str(agent.core.index)
    if found is None:
        return Answer(404, b"", {"X-Consul-Index": index})
    if isinstance(found, bytes):
        return Answer(200, found, {"X-Consul-Index": index})
    return ok(found, **{"X-Consul-Index": index})


def _service_get(agent, call: Call, sid: str) -> Answer:
    view, headers = agent.services.get(sid, call.query, call.access)
    return ok(view, **headers)


Handler = Callable[[Any, Call, str], Answer]
# (path, is a prefix whose rest is the handler's argument, {method: handler}); the first
# matching path answers, so longer prefixes come before the shorter ones they start with.
ROUTES: List[Tuple[str, bool, Dict[str, Handler]]] = [
    ("/v1/agent/self", False, {"GET": _self}),
    ("/v1/agent/service/register", False, {"PUT": _register}),
    ("/v1/agent/service/deregister/", True, {
        "PUT": lambda a, c, sid: ok(a.services.deregister(sid, c.access))}),
    ("/v1/agent/service/maintenance/", True, {
        "PUT": lambda a, c, sid: ok(a.services.maintenance(sid, c.query, c.access))}),
    ("/v1/agent/service/", True, {"GET": _service_get}),
    ("/v1/agent/services", False, {"GET": lambda a, c, _: ok(a.services.listed(c.access))}),
    ("/v1/agent/checks", False, {
        "GET": lambda a, c, _: ok(a.services.listed_checks(c.access))}),
    ("/v1/agent/check/register", False, {
        "PUT": lambda a, c, _: ok(a.services.register_check(c.body, c.access))}),
    ("/v1/agent/check/deregister/", True, {
        "PUT": lambda a, c, cid: ok(a.services.deregister_check(cid, c.access))}),
    ("/v1/agent/check/update/", True, {
        "PUT": lambda a, c, cid: ok(a.services.update_ttl(cid, c.body, c.access))}),
    ("/v1/agent/health/service/id/", True, {"GET": _health}),
    ("/v1/catalog/service/", True, {
        "GET": lambda a, c, name: ok(a.services.catalog_service(name, c.query, c.access),
                                     **{"X-Consul-Index": str(a.core.index)})}),
    ("/v1/session/create", False, {
        "PUT": lambda a, c, _: ok(a.store.create_session(c.body, c.access))}),
    ("/v1/session/renew/", True, {"PUT": lambda a, c, sid: ok(a.store.renew(sid, c.access))}),
    ("/v1/session/destroy/", True, {
        "PUT": lambda a, c, sid: ok(a.store.destroy(sid, c.access))}),
    ("/v1/session/info/", True, {
        "GET": lambda a, c, sid: ok(a.store.session_info(sid, c.access),
                                    **{"X-Consul-Index": str(a.core.index)})}),
    ("/v1/kv/", True, {
        "GET": _kv_get,
        "PUT": lambda a, c, key: ok(a.store.put(key, c.query, c.body, c.access)),
        "DELETE": lambda a, c, key: ok(a.store.delete(key, c.query, c.access))}),
    ("/v1/event/fire/", True, {
        "PUT": lambda a, c, name: ok(a.store.fire(name, c.query, c.body, c.access))}),
    ("/v1/event/list", False, {
        "GET": lambda a, c, _: ok(a.store.listed_events(c.query.get("name", ""), c.access),
                                  **{"X-Consul-Index": str(a.core.index)})}),
]


def route(agent, call: Call) -> Answer:
    """The answer to one call: a route's, 405 for a method it lacks, 404 for no route."""
    for path, is_prefix, methods in ROUTES:
        rest: Optional[str] = None
        if is_prefix and call.path.startswith(path):
            rest = call.path[len(path):]
        elif call.path == path:
            rest = ""
        if rest is None:
            continue
        handler = methods.get(call.method)
        if handler is None:
            return Answer(405, f"method {call.method} not allowed".encode(), {})
        try:
            return handler(agent, call, rest)
        except ApiError as exc:
            return Answer(exc.status, exc.text.encode(), exc.headers)
    return Answer(404, b"", {})
