#!/usr/bin/env python3
"""Render Kamailio's dispatcher list from Consul's health of a service, and reload it.

Run by Consul's own watcher, which calls it with the service's health entries (the JSON of
GET /v1/health/service/<name>) on stdin each time they change:

    consul watch -type service -service Asterisk \\
        /usr/local/bin/consul-dispatcher --list /etc/kamailio/dispatcher.list

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
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

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
    parser.add_argument("--no-reload", action="store_true",
                        help="only write the list (and print it)")
    args = parser.parse_args(argv)

    entries = json.load(sys.stdin)
    if not isinstance(entries, list):
        print("consul_dispatcher: expected a JSON array of health entries", file=sys.stderr)
        return 2
    service = ((entries[0].get("Service") or {}).get("Service") or "") if entries else ""
    text = render(entries, args.setid, service, args.transport)
    loaded_marker = args.list + ".loaded"
    unchanged = _read(args.list) == text and _read(loaded_marker).strip() == _digest(text)
    if not unchanged:
        write_atomically(args.list, text)
    if args.no_reload:
        sys.stdout.write(text)
        return 0
    if unchanged:  # what Kamailio last loaded from us, and nobody edited the file since
        return 0
    ok, output = reload_kamailio(args.kamcmd, args.reload_attempts)
    if not ok:
        # The marker stays as it was: the next change reloads again.
        print("consul_dispatcher: dispatcher.reload failed: %s" % output, file=sys.stderr)
        return 1
    write_atomically(loaded_marker, _digest(text) + "\n")
    summary = text.splitlines()[0].lstrip("# ")
    print("consul_dispatcher: %s; reloaded" % summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
