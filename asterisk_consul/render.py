"""The text of `discovery show settings` and `discovery show status`."""

from __future__ import annotations

import os
import time
from typing import Optional

from . import __file__ as _package_init, __version__
from .health import BUSY_RELEASE
from .settings import settings_report


def _when(timestamp: Optional[float]) -> str:
    if not timestamp:
        return "never"
    ago = max(0, int(time.time() - timestamp))
    return "%s (%ss ago)" % (time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp)), ago)


def _table(rows, indent="  ") -> str:
    # Indented rows (a check's output, KV keys) do not widen the table: a long key only
    # pushes its own value to the right.
    width = max(len(r[0]) for r in rows if not r[0].startswith(" ")) + 2
    return "".join("%s%s%s\n" % (indent, (r[0] + ":").ljust(width) if len(r[0]) < width
                                  else r[0] + ": ", r[1]) for r in rows)


def versions_text(app) -> str:
    """What runs: the C shim's version (built in) and the Python package's (imported), which
    unload + load keeps in step after an upgrade."""
    shim = app.host.shim_version()
    text = "C shim %s, Python package %s (%s)" % (shim, __version__, os.path.dirname(_package_init))
    if shim != __version__:
        text += "; MISMATCH: install the module and the package from one version"
    return text


def show_settings_text(app) -> str:
    settings = app.settings
    if settings is None:
        return "res_discovery_consul has no settings loaded.\n  Version: %s\n" % versions_text(app)
    rows = settings_report(settings)
    w1 = max(len(r[0]) for r in rows) + 2
    w2 = min(max(len(r[1]) for r in rows) + 2, 48)
    lines = ["res_discovery_consul settings (%s):\n" % ("enabled" if settings.enabled else "disabled"),
             "  Version: %s\n" % versions_text(app),
             "  %s%s%s\n" % ("Option".ljust(w1), "Value".ljust(w2), "From")]
    # A value wider than the column (a certificate path) keeps two spaces before its source.
    lines += ["  %s%s%s\n" % (o.ljust(w1), (v + "  ").ljust(w2), src) for o, v, src in rows]
    return "".join(lines)


def show_status_text(app) -> str:
    registrar = app.registrar
    settings = app.settings
    if registrar is None:
        if settings is not None and not settings.enabled:
            return "res_discovery_consul: disabled ([general] enabled = no); nothing is registered.\n"
        return "res_discovery_consul: not running.\n"
    s = registrar.status(timeout=app.timeout_s)
    if s.agent_reachable is None:
        agent = "%s (not contacted yet)" % s.agent_url
    elif s.agent_reachable:
        agent = "%s (reachable%s)" % (s.agent_url, ", Consul " + s.agent_version if s.agent_version else "")
    else:
        agent = "%s (UNREACHABLE)" % s.agent_url
    rows = [
        ("Version", versions_text(app)),
        ("Agent", agent),
        ("Token", _token_text(s)),
        ("Service", "%s (name %s) at %s:%s" % (s.service_id, s.service_name, s.address, s.port)),
        ("Instance", s.instance or "(none)"),
        ("Registered", _registered_text(s)),
        ("In catalog", _catalog_text(s)),
        ("Health", s.health or "unknown"),
        ("Asterisk", s.verdict or "unknown"),
        ("SIP", _sip_text(s)),
        ("Load", _load_text(s)),
        ("Maintenance", _maintenance_text(s)),
        ("Drain", _drain_text(s)),
    ]
    rows += _check_rows(s)
    rows += _kv_rows(s)
    rows.append(("Last sync", "%s%s" % (_when(s.last_sync), ": " + s.last_sync_result if s.last_sync_result else "")))
    rows.append(("Last error", s.last_error or "none"))
    if settings is not None and s.agent_url.startswith("https:"):
        rows.insert(1, ("TLS", tls_text(settings)))
    if s.events:
        rows.append(("Events", _events_text(s)))
        if s.last_event_error:
            rows.append(("Last event error", s.last_event_error))
    text = "res_discovery_consul status:\n" + _table(rows)
    if s.stale:
        text += "  (Consul did not answer within %d ms: this is the last known state)\n" % int(app.timeout_s * 1000)
    return text


_CHECK_LABELS = {"http": "EID check", "ttl": "TTL check"}


def _check_rows(s) -> list:
    by = ("set by 'discovery set check %s'; kept until the check options change"
          % ("on" if s.checks_on else "off")) if s.checks_set_by != "config" else "config"
    if not s.checks_on:
        rows = [("Check", "off (%s)" % by)]
    else:
        rows = [("Check", "on, type %s (%s)" % (s.check_type, by))]
        if s.check_problem:
            rows.append(("  warning", "the EID check cannot pass: " + s.check_problem))
    for kind, cid, status, output in s.checks:
        rows.append((_CHECK_LABELS[kind], "%s: %s" % (cid, status or "unknown")))
        if output:
            rows.append(("  output", output.strip().replace("\n", " ")))
    if s.ttl_error:
        rows.append(("  TTL report error", s.ttl_error))
    return rows


def _kv_rows(s) -> list:
    if not s.kv_wanted and not s.kv_keys:
        return []
    where = (s.kv_prefix + "/") if s.kv_prefix else "/"
    if s.kv_session:
        session = "session %s, renewed %s" % (s.kv_session, _when(s.kv_renewed))
    else:
        session = "no session yet"
    rows = [("KV", "%d of %d keys under %s in Consul (%s)" % (len(s.kv_keys), s.kv_wanted,
                                                             where, session))]
    rows += [("  " + key, value if len(value) <= 80 else value[:79] + "…") for key, value in s.kv_keys]
    if s.kv_error:
        rows.append(("  KV error", s.kv_error))
    return rows


def tls_text(settings) -> str:
    """How the connection to the agent is secured, in one line."""
    if not settings.tls_verify:
        text = "HTTPS, certificate NOT verified (tls_verify = no)"
    else:
        cas = " + ".join(p for p in (settings.ca_file, settings.ca_path) if p) or "the system's CAs"
        text = "HTTPS, certificate verified against %s" % cas
        if settings.tls_server_name:
            text += " as %s" % settings.tls_server_name
    text += ", client certificate %s" % (settings.client_cert or "none")
    return text


def _events_text(s) -> str:
    text = "on: %d fired, %d failed" % (s.events_fired, s.events_failed)
    if s.last_event:
        text += "; last: %s" % s.last_event
    return text


_TOKEN_STANDING = {"": "not used yet", "accepted": "accepted",
                   "ACL not found": "REJECTED: ACL not found (deleted or expired)",
                   "Permission denied": "Permission denied (the token lacks the policy: "
                                        "docs/operations.md)"}


def _clock_ms(timestamp: float) -> str:
    return "%s.%03d" % (time.strftime("%H:%M:%S", time.localtime(timestamp)),
                        int(timestamp * 1000) % 1000)


def _token_text(s) -> str:
    """Where the token came from, when it was read, what Consul makes of it; never the token."""
    if not s.token_from:
        return "none (no ACL token is sent)"
    text = "from %s" % s.token_from
    if s.token_read_at:
        text += ", read %s" % _when(s.token_read_at)
    text += "; Consul: %s" % _TOKEN_STANDING.get(s.token_standing, s.token_standing)
    if s.token_problem:
        text += "; the file gives no token now (%s): the one in use stays" % s.token_problem
    seen, in_use, registered = (tuple(s.token_rotation) + (None, None, None))[:3]
    if seen and in_use:
        text += "; last rotation: read %s, in use +%d ms" % (_clock_ms(seen),
                                                            (in_use - seen) * 1000)
        text += (", re-registered +%d ms" % ((registered - seen) * 1000) if registered
                 else ", not re-registered yet")
    return text


def _registered_text(s) -> str:
    if not s.registered:
        return "no"
    text = "yes, since %s" % _when(s.registered_since)
    if s.agent_reachable is False:
        text += " (as last seen: the agent does not answer now)"
    return text


def _catalog_text(s) -> str:
    """Whether consumers can see the registration: the agent may hold what it cannot sync."""
    if not s.registered:
        return "no (not registered)"
    if s.in_catalog:
        return "yes, since %s" % _when(s.catalog_since)
    if s.in_catalog is False:
        return ("NO: the agent holds the service but has not synced it to the servers (its own "
                "ACL token may lack node write), or the module's token lacks node:read to see it")
    return "not known yet" + (" (%s)" % s.catalog_error if s.catalog_error else "")


def _sip_text(s) -> str:
    if s.sip_check == "no":
        return "not checked (sip_check = no)"
    if not s.sip_on:
        return "not checked yet (sip_check = auto: no SIP channel driver seen loaded)"
    text = "%s since %s: %s" % (s.sip_status.upper() or "NOT PROBED YET", _when(s.sip_since),
                                s.sip_reason or "-")
    if s.sip_last:
        rtt = " (round trip %.1f ms)" % (s.sip_rtt_s * 1000) if s.sip_rtt_s is not None else ""
        text += "; last probe at %s%s: %s" % (_when(s.sip_probed_at), rtt, s.sip_last)
    return text


def _load_text(s) -> str:
    text = "%d active channels" % s.channels
    if not s.busy_channels:
        return text
    idle_below = int(s.busy_channels * BUSY_RELEASE + 0.999)  # BusyState's release, in channels
    text += "; busy at %d, idle below %d" % (s.busy_channels, idle_below)
    return text + ("; BUSY since %s (the checks say warning)" % _when(s.busy_since)
                   if s.busy else "; not busy")


def _drain_text(s) -> str:
    if not s.drain:
        return "off"
    text = "ON since %s (%s): %s; " % (_when(s.drain_since), s.drain_by,
                                     s.drain_reason or "no reason given")
    if s.drained_at:
        return text + "drained at %s" % _when(s.drained_at)
    return text + "%d channels left" % s.channels


def _maintenance_text(s) -> str:
    """What was asked for, and whether Consul shows it: a request Consul has not accepted
    yet must not read as done."""
    if s.maintenance:
        text = "on: %s" % (s.maintenance_reason or "(no reason given)")
        if s.maintenance_in_agent is not True:
            text += " (requested; not applied in Consul yet)"
        return text
    if s.maintenance_in_agent:
        return "ON in Consul (not set by this module, or its 'off' is not applied yet)"
    return "off"
