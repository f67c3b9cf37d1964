"""The EID health check Consul polls:
/res_discovery_consul/check_eid?expected_eid=<EID>&instance=<this start's token>.

It answers from memory only (no network, no Asterisk calls), and says nothing but match or
mismatch, so a Consul check pointed at the wrong box (or at an earlier start of this one, whose
instance token is not this start's) turns critical without learning whose box it is. A match
is answered with the current verdict (health.py): 200, 429 while busy, 503 while starting or
shutting down; the worker shows each new verdict with show().
"""

from __future__ import annotations

import re
from typing import Optional

from .health import Verdict
from .web import HttpRequest, HttpResponse, plain

URI = "res_discovery_consul"
CHECK_PATH = "check_eid"
PARAM = "expected_eid"
INSTANCE_PARAM = "instance"

_EID = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}\Z")


def parse_eid(text: str) -> Optional[str]:
    """Asterisk's EID form 'aa:bb:cc:dd:ee:ff' (any case) normalized to lowercase, else None."""
    if not isinstance(text, str) or not _EID.match(text):
        return None
    return text.lower()


# Built once: the handler runs for every Consul poll.
_MATCH = plain(200, "OK", "EID match")
_MISMATCH = plain(404, "Not Found", "EID mismatch")
_OTHER_START = plain(404, "Not Found", "instance mismatch")
_NOT_FOUND = plain(404, "Not Found", "Not found")
_NOT_ALLOWED = HttpResponse(405, "Method Not Allowed", "Only GET and HEAD are allowed\n",
                            headers=(("Allow", "GET, HEAD"),))
_MISSING = plain(400, "Bad Request", "expected_eid is required")
_MALFORMED = plain(400, "Bad Request", "expected_eid must look like aa:bb:cc:dd:ee:ff")
_AMBIGUOUS = plain(400, "Bad Request", "expected_eid must be given once")
_AMBIGUOUS_INSTANCE = plain(400, "Bad Request", "instance must be given once")
_TOO_MANY = plain(400, "Bad Request", "too many query parameters")
_READ_METHODS = ("GET", "HEAD")


class EidCheck:
    """The HTTP route under /res_discovery_consul/ (http.conf's prefix is Asterisk's business)."""

    uri = URI
    description = "Consul health check: does this Asterisk have the expected EID"

    def __init__(self, eid: str, instance: str = ""):
        parsed = parse_eid(eid)
        if parsed is None:
            raise ValueError("this Asterisk's EID is not in aa:bb:cc:dd:ee:ff form")
        self.eid = parsed
        self.instance = instance  # this start's token ("": not checked)
        self._match = _MATCH      # replaced whole by show(): one reference, read lock-free
        self.on_change = lambda: None  # set by the bridge: the shim replays declared()

    def show(self, verdict: Verdict) -> None:
        """The answer to a match from now on: the worker's verdict (the registrar calls this
        directly, on its own thread)."""
        status, reason, body = verdict.http_status, verdict.http_reason, verdict.http_body
        if (status, reason, body + "\n") != (_MATCH.status, _MATCH.reason, _MATCH.body):
            self._match = plain(status, reason, body)
        else:
            self._match = _MATCH
        self.on_change()

    def declared(self):
        """(methods, path, params, answer) of Consul's poll, exactly as registered, for the
        shim to replay; None without an instance token (then every request comes here)."""
        if not self.instance:
            return None
        return (_READ_METHODS, CHECK_PATH, [(PARAM, self.eid), (INSTANCE_PARAM, self.instance)],
                self._match)

    def handle(self, request: HttpRequest) -> HttpResponse:
        params = request.params
        # Fast path for the poll Consul sends at every interval (our EID and instance, on the
        # check path): what the checks below would answer, without lists or the regex.
        if params and len(params) == 2 and request.path == CHECK_PATH:
            (name, value), (name2, value2) = params
            if (name == PARAM and name2 == INSTANCE_PARAM and value2 == self.instance
                    and request.method in _READ_METHODS
                    and (value == self.eid or (value.isascii() and value.lower() == self.eid))):
                return self._match
        if request.path.strip("/") != CHECK_PATH:
            return _NOT_FOUND
        if request.method not in _READ_METHODS:
            return _NOT_ALLOWED
        if params is None:
            return _TOO_MANY
        values = [value for name, value in params if name == PARAM]
        if not values or values == [""]:
            return _MISSING
        if len(values) > 1:
            return _AMBIGUOUS
        expected = parse_eid(values[0])
        if expected is None:
            return _MALFORMED
        if expected != self.eid:
            return _MISMATCH
        instances = [value for name, value in params if name == INSTANCE_PARAM]
        if len(instances) > 1:
            return _AMBIGUOUS_INSTANCE
        if instances and instances[0] != self.instance:
            return _OTHER_START  # an earlier start's registration (or a clone's)
        return self._match
