#!/usr/bin/env python3
"""Render Kamailio's dispatcher list from Consul's health of a service, and reload it.

Two ways to run it. Following the service itself (recommended):

    consul-dispatcher --follow Asterisk --list /etc/kamailio/dispatcher.list

runs for good, holding a blocking query on the local agent (GET /v1/health/service/<name>
with `stale`, so any Consul server answers it and a leader election does not stop it), and
after an error asks again after a capped, jittered backoff (0.2 s doubling up to 2 s). Or run
by Consul's own watcher, which pipes the health entries (the same JSON) on stdin each time
they change:

    consul watch -type service -service Asterisk \\
        /usr/local/bin/consul-dispatcher --list /etc/kamailio/dispatcher.list

`consul watch` backs off 5 s, 20 s, 45 s ... (up to 3 min) after consecutive errors, and
its reads need a leader: a leader election (two errors in a row were seen) left Kamailio
routing from a list 20 s old, calls going to boxes already drained or unloaded. `--follow`
does not.

Each instance becomes one line `<setid> sip:<address>:<port> <flags> <priority> <attrs>`; with
`--transport tcp|tls|ws|wss` the address and port are those res_discovery_consul publishes for
that transport in the service's TaggedAddresses (`sip_tcp`, ...), the URI says
`;transport=<it>`, and a box without that transport is left out (udp, the default, falls back
to the service's Address and Port):

    passing      flags 0, rweight = its passing weight
    warning      flags 0, rweight = its warning weight (lower: fewer new calls)
    critical, maintenance, draining (a check whose output or notes say "drain")
                 flags 4 (disabled): kept in the list for the operator to see, no new call

Weights: Consul's service Weights {Passing, Warning} when they are not Consul's defaults
(1/1); otherwise Meta `weight` (res_discovery_consul's [metadata_<profile>] weight) as the
passing weight and 1 as the warning weight. Weights are relative (Kamailio's algorithm 11)
and scaled into Kamailio's 1..100. attrs carry duid=<Consul service ID> and health=<state>.

The file is replaced atomically, then `kamcmd dispatcher.reload`; Kamailio refuses a reload
within its reload_delta of the previous one ("Ongoing reload"): the reload is retried at the
next second for up to --reload-attempts seconds. Nothing is written nor reloaded when the
file already holds the rendered list and Kamailio last loaded it from this handler (a digest
in <list>.loaded). Python 3 standard library only.
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

DISABLED = 4  # Kamailio dispatcher flag: administratively disabled
ROUTED = ("passing", "warning")
CONSUL_DEFAULT_WEIGHTS = (1, 1)
_SEVERITY = {"passing": 0, "warning": 1, "critical": 2, "maintenance": 2}


def _int(value, default=None):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def state_of(entry):
    """passing, warning, critical, maintenance or draining: the worst of the entry's checks
    (node and service), maintenance and draining named as such."""
    state = "passing"
    for check in entry.get("Checks") or []:
        text = "%s %s" % (check.get("Output") or "", check.get("Notes") or "")
        if "drain" in text.lower():
            return "draining"
        check_id = check.get("CheckID") or ""
        if check_id.startswith(("_service_maintenance:", "_node_maintenance")):
            return "maintenance"
        status = check.get("Status") or "critical"
        if _SEVERITY.get(status, 2) > _SEVERITY[state]:
            state = status if status in _SEVERITY else "critical"
    return state


def weights_of(service):
    """(passing weight, warning weight) of a service entry."""
    weights = service.get("Weights") or {}
    passing = _int(weights.get("Passing"), 1)
    warning = _int(weights.get("Warning"), 1)
    if (passing, warning) == CONSUL_DEFAULT_WEIGHTS:
        meta_weight = _int((service.get("Meta") or {}).get("weight"))
        if meta_weight is not None and meta_weight > 0:
            passing = meta_weight
    return max(passing, 0), max(warning, 0)


def _attr_value(text):
    """A dispatcher attribute value: no separators Kamailio's parameter parser splits on."""
    return "".join(c if c.isalnum() or c in "._:-" else "_" for c in str(text))


TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")


def destinations(entries, transport="udp"):
    """[(address, port, service_id, state, weight, priority)] sorted for a stable file."""
    out = []
    for entry in entries:
        service = entry.get("Service") or {}
        node = entry.get("Node") or {}
        tagged = (service.get("TaggedAddresses") or {}).get("sip_" + transport) or {}
        if transport != "udp" and not tagged:
            continue  # this box does not offer that transport
        address = tagged.get("Address") or service.get("Address") or node.get("Address")
        if not address:
            continue
        port = _int(tagged.get("Port"), 0) or _int(service.get("Port"), 0) or 5060
        state = state_of(entry)
        passing, warning = weights_of(service)
        weight = {"passing": passing, "warning": warning}.get(state, 0)
        priority = _int((service.get("Meta") or {}).get("priority"), 0)
        out.append((address, port, service.get("ID") or "", state, weight, priority))
    return sorted(out, key=lambda d: (d[0], d[1], d[2]))


def scaled(weights):
    """Relative weights into Kamailio's 1..100 (the largest becomes 100 if any is over)."""
    top = max([w for w in weights if w > 0] or [1])
    factor = 100.0 / top if top > 100 else 1.0
    return [max(1, int(round(w * factor))) if w > 0 else 0 for w in weights]


def render(entries, setid=1, service="", transport="udp"):
    """The dispatcher list text for these health entries."""
    dests = destinations(entries, transport)
    uri_params = "" if transport == "udp" else ";transport=" + transport
    routed = [d for d in dests if d[3] in ROUTED and d[4] > 0]
    weights = dict(zip([d[2] for d in routed], scaled([d[4] for d in routed])))
    lines = ["# rendered by consul_dispatcher.py from Consul's health of %s: "
             "%d instance(s), %d routed" % ("service %r" % service if service else "the service",
                                            len(dests), len(weights))]
    for address, port, service_id, state, _weight, priority in dests:
        host = "[%s]" % address if ":" in address else address
        attrs = ["duid=%s" % _attr_value(service_id)]
        if service_id in weights:
            flags = 0
            attrs.append("rweight=%d" % weights[service_id])
        else:
            flags = DISABLED
        attrs.append("health=%s" % state)
        lines.append("%d sip:%s:%d%s %d %d %s" % (setid, host, port, uri_params, flags,
                                                 priority, ";".join(attrs)))
    return "\n".join(lines) + "\n"


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".dispatcher-", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def reload_kamailio(kamcmd, attempts):
    """`kamcmd dispatcher.reload`, retried at the next whole second while Kamailio answers
    "Ongoing reload" (its reload_delta). Returns (ok, last output)."""
    argv = shlex.split(kamcmd) + ["dispatcher.reload"]
    output = ""
    for attempt in range(max(1, attempts)):
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=10)
        output = proc.stdout.strip()
        refused = "ongoing reload" in output.lower()
        if proc.returncode == 0 and not refused and "error" not in output.lower():
            return True, output
        if not refused:
            return False, output
        time.sleep(1.0 - (time.time() % 1.0) + 0.01)
    return False, output


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


# -- --follow: blocking queries on the local agent -------------------------------------------
WAIT_S = 30              # the blocking query's wait (Consul adds up to wait/16)
ANSWER_LIMIT = 16 << 20  # bytes: what answers on the agent's port may not be Consul
BACKOFF_S = (0.2, 2.0)   # first and largest pause after an error (jittered)


def _token():
    """CONSUL_HTTP_TOKEN, or the file CONSUL_HTTP_TOKEN_FILE names (read at each query, so a
    rotated token is used at once)."""
    path = os.environ.get("CONSUL_HTTP_TOKEN_FILE")
    if path:
        return _read(path).strip()
    return os.environ.get("CONSUL_HTTP_TOKEN", "").strip()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the token goes to the agent only
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def query_health(http_addr, service, index, wait=WAIT_S):
    """(entries, index) from one blocking query; raises OSError or ValueError."""
    base = http_addr if "://" in http_addr else "http://" + http_addr
    url = "%s/v1/health/service/%s?stale&index=%d&wait=%ds" % (
        base.rstrip("/"), urllib.parse.quote(service, safe=""), index, wait)
    request = urllib.request.Request(url)
    token = _token()
    if token:
        request.add_header("X-Consul-Token", token)
    deadline = time.monotonic() + wait + wait / 16.0 + 10.0
    with _OPENER.open(request, timeout=wait + 10.0) as answer:
        body = b""
        while True:
            chunk = answer.read(65536)
            if not chunk:
                break
            body += chunk
            if len(body) > ANSWER_LIMIT or time.monotonic() > deadline:
                raise ValueError("the agent's answer is too large or too slow")
        new_index = _int(answer.headers.get("X-Consul-Index"), 0)
    entries = json.loads(body.decode("utf-8"))
    if not isinstance(entries, list):
        raise ValueError("expected a JSON array of health entries")
    return entries, new_index


def next_index(previous, answered):
    """Consul's rules for blocking queries: an index that went backwards (a server restored
    from a snapshot, another server answering) starts over; never block on 0."""
    if answered < previous or answered <= 0:
        return 0
    return answered


def backoff(failures, rng=random):
    first, largest = BACKOFF_S
    return min(largest, first * 2 ** (failures - 1)) * rng.uniform(0.5, 1.0)


def follow(args, out=sys.stdout, err=sys.stderr):
    """Keep Kamailio's list in step with the service's health until interrupted."""
    index, failures = 0, 0
    while True:
        try:
            entries, answered = query_health(args.http_addr, args.follow, index)
            if answered != index:
                code = apply(entries, args, args.follow, out, err)
                if code != 0:
                    raise OSError("the list was not loaded")
            index, failures = next_index(index, answered), 0
        except (OSError, ValueError, http.client.HTTPException,
                subprocess.SubprocessError) as exc:
            failures += 1
            index = 0   # ask for the current state, not for the next change
            pause = backoff(failures)
            print("consul_dispatcher: %s; again in %.1fs" % (exc, pause), file=err)
            err.flush()
            time.sleep(pause)


def apply(entries, args, service, out=sys.stdout, err=sys.stderr):
    """Render the entries into the list and have Kamailio load it; the exit code."""
    text = render(entries, args.setid, service, args.transport)
    loaded_marker = args.list + ".loaded"
    unchanged = _read(args.list) == text and _read(loaded_marker).strip() == _digest(text)
    if not unchanged:
        write_atomically(args.list, text)
    if args.no_reload:
        out.write(text)
        return 0
    if unchanged:  # what Kamailio last loaded from us, and nobody edited the file since
        return 0
    ok, output = reload_kamailio(args.kamcmd, args.reload_attempts)
    if not ok:
        # The marker stays as it was: the next change reloads again.
        print("consul_dispatcher: dispatcher.reload failed: %s" % output, file=err)
        return 1
    write_atomically(loaded_marker, _digest(text) + "\n")
    summary = text.splitlines()[0].lstrip("# ")
    print("consul_dispatcher: %s; reloaded" % summary, file=out)
    out.flush()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", required=True, help="Kamailio's dispatcher list_file")
    parser.add_argument("--setid", type=int, default=1, help="dispatcher set (1)")
    parser.add_argument("--transport", choices=TRANSPORTS, default="udp",
                        help="the SIP transport to route over (udp): its address and port "
                             "from TaggedAddresses sip_<transport>")
    parser.add_argument("--kamcmd", default="kamcmd",
                        help="kamcmd command line (e.g. 'kamcmd -s unix:/run/kamailio/"
                             "kamailio_ctl')")
    parser.add_argument("--reload-attempts", type=int, default=5,
                        help="seconds to keep retrying a reload Kamailio refused (5)")
    parser.add_argument("--follow", metavar="SERVICE",
                        help="follow this service's health on the local agent (instead of "
                             "reading one answer from consul watch on stdin)")
    parser.add_argument("--http-addr", default=os.environ.get("CONSUL_HTTP_ADDR",
                                                              "127.0.0.1:8500"),
                        help="the local Consul agent for --follow (CONSUL_HTTP_ADDR or "
                             "127.0.0.1:8500); the token from CONSUL_HTTP_TOKEN(_FILE)")
    parser.add_argument("--no-reload", action="store_true",
                        help="only write the list (and print it)")
    args = parser.parse_args(argv)

    if args.follow:
        try:
            follow(args)   # returns only by an interrupt
        except KeyboardInterrupt:
            pass
        return 0
    entries = json.load(sys.stdin)
    if not isinstance(entries, list):
        print("consul_dispatcher: expected a JSON array of health entries", file=sys.stderr)
        return 2
    service = ((entries[0].get("Service") or {}).get("Service") or "") if entries else ""
    return apply(entries, args, service)


if __name__ == "__main__":
    sys.exit(main())
