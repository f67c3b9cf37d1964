"""The operator's commands: `discovery ...` on the CLI, DiscoverySetMaintenance,
DiscoverySetCheck and DiscoverySetDrain on AMI.

Each command reads the Application's current state and asks the Registrar, which answers
within the Consul timeout; nothing here waits longer than that. The text shown is render.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from .ami import AmiAction, AmiReply
from .cli import USAGE, CliCommand, CliResult, failure, ok
from .registrar.choices import CHECK, DRAIN, MAINTENANCE, Change
from .render import show_settings_text, show_status_text

_BOOL_WORDS = {"yes": True, "true": True, "on": True, "1": True,
               "no": False, "false": False, "off": False, "0": False}


@dataclass(frozen=True)
class Switch:
    """One kind of operator's change, as the CLI and AMI offer it (one path for all)."""
    kind: str                 # choices.MAINTENANCE, CHECK or DRAIN
    words: Tuple[str, str]    # what the answer says it is: on, off
    not_done: str             # what did not happen, '{service}' and '{word}' filled in
    takes_reason: bool


SWITCHES = {
    "maintenance": Switch(MAINTENANCE, ("set", "unset"),
                          "Maintenance mode for service {service} is NOT {word}", True),
    "check": Switch(CHECK, ("on", "off"),
                    "Health check for service {service} is NOT switched {word}", False),
    "drain": Switch(DRAIN, ("on", "off"), "Drain for service {service} is NOT switched {word}",
                    True),
}


def switch(app, name: str, enable: bool, reason: str = ""):
    """An operator's change through the Registrar, within the Consul timeout. Returns (done,
    text)."""
    registrar, how = app.registrar, SWITCHES[name]
    if registrar is None:
        return False, "res_discovery_consul is not running (disabled or not configured); nothing to change"
    result = registrar.change(Change(how.kind, enable, reason if how.takes_reason else ""),
                              timeout=app.timeout_s)
    if result.ok:
        return True, result.message
    # The registrar's reason names the Consul call that failed, which may be another one
    # (a registration still pending): say first what did not happen.
    service_id = app.settings.service_id if app.settings is not None else "?"
    word = how.words[0 if enable else 1]
    return False, "%s: %s" % (how.not_done.format(service=service_id, word=word), result.message)


def _show_settings(app, args: List[str]) -> CliResult:
    if len(args) != 3:
        return USAGE
    return ok(show_settings_text(app))


def _show_status(app, args: List[str]) -> CliResult:
    if len(args) != 3:
        return USAGE
    return ok(show_status_text(app))


def _set(app, name: str, args: List[str]) -> CliResult:
    """discovery set <name> {on|off} [reason...]"""
    takes_reason = SWITCHES[name].takes_reason
    if len(args) < 4 or args[3].lower() not in ("on", "off") or (len(args) > 4 and not takes_reason):
        return USAGE
    done, message = switch(app, name, args[3].lower() == "on", " ".join(args[4:]))
    return ok(message) if done else failure(message)


def cli_commands(app) -> List[CliCommand]:
    return [
        CliCommand("discovery show settings", "Show the Consul discovery settings",
                   "Usage: discovery show settings\n"
                   "       Every effective setting of res_discovery_consul and where it came from.\n",
                   lambda args: _show_settings(app, args)),
        CliCommand("discovery show status", "Show the Consul registration status",
                   "Usage: discovery show status\n"
                   "       The Consul agent, this service's registration, its check and maintenance state.\n",
                   lambda args: _show_status(app, args)),
        CliCommand("discovery set maintenance", "Put the service in or out of Consul maintenance",
                   "Usage: discovery set maintenance {on|off} [reason...]\n"
                   "       Maintenance makes Consul report this service critical, so consumers\n"
                   "       stop sending it traffic. Kept and re-applied until turned off.\n",
                   lambda args: _set(app, "maintenance", args),
                   choices=lambda pos: ["on", "off"] if pos == 3 else []),
        CliCommand("discovery set check", "Add or remove this service's Consul health check",
                   "Usage: discovery set check {on|off}\n"
                   "       Adds or removes the health check(s) of check_type without re-registering\n"
                   "       the service. Kept across resyncs and reloads until the check options\n"
                   "       in res_discovery_consul.conf change.\n",
                   lambda args: _set(app, "check", args),
                   choices=lambda pos: ["on", "off"] if pos == 3 else []),
        CliCommand("discovery set drain", "Stop new calls to this Asterisk, or let them in again",
                   "Usage: discovery set drain {on|off} [reason...]\n"
                   "       on: the service leaves Consul's healthy set at once (a critical drain\n"
                   "       check), stays registered, and the calls up are followed until they end\n"
                   "       (AMI event DiscoveryDrained). off: back in the healthy set at once.\n"
                   "       Not maintenance: either can be on or off without the other.\n",
                   lambda args: _set(app, "drain", args),
                   choices=lambda pos: ["on", "off"] if pos == 3 else []),
    ]


def _ami_switch(app, fields, name: str, header: str) -> AmiReply:
    """An on/off action: its Enable (and Reason) header, and the reply with ServiceID and
    `header: on|off`."""
    enable = _BOOL_WORDS.get(fields.get("enable", "").strip().lower())
    if enable is None:
        return AmiReply(False, "Enable: must be yes or no")
    done, message = switch(app, name, enable, fields.get("reason", ""))
    service_id = app.settings.service_id if app.settings is not None else ""
    return AmiReply(done, message, [("ServiceID", service_id), (header, "on" if enable else "off")])


_ENABLE = ("Enable", True, "yes or no (also on/off, true/false, 1/0).")
_ANSWER = (" The answer comes once Consul took the change or refused it, within consul_timeout_ms;"
           " it names the ServiceID.")


def ami_actions(app) -> List[AmiAction]:
    """The AMI actions (app may be None when only their documentation is wanted)."""
    return [AmiAction("DiscoverySetMaintenance", "Set Consul maintenance mode",
                      lambda fields: _ami_switch(app, fields, "maintenance", "Maintenance"),
                      (_ENABLE, ("Reason", False, "Why, shown in Consul (with Enable: yes).")),
                      "The service stays registered but leaves Consul's healthy set while "
                      "maintenance is on; kept across resyncs, reloads and agent restarts."
                      + _ANSWER + " Event: DiscoverySetMaintenance."),
            AmiAction("DiscoverySetCheck", "Add or remove the Consul health check",
                      lambda fields: _ami_switch(app, fields, "check", "Check"),
                      (_ENABLE,),
                      "Adds or removes the health check(s) of check_type without re-registering "
                      "the service; kept until the check options in res_discovery_consul.conf "
                      "change." + _ANSWER + " Event: DiscoverySetCheck."),
            AmiAction("DiscoverySetDrain", "Drain this Asterisk (no new calls) or end the drain",
                      lambda fields: _ami_switch(app, fields, "drain", "Drain"),
                      (_ENABLE, ("Reason", False, "Why, shown in the drain check's notes.")),
                      "Yes: the service leaves Consul's healthy set at once (a critical drain "
                      "check), stays registered, and DiscoveryDrained follows when no channel is "
                      "left. No: back in the healthy set at once." + _ANSWER
                      + " Event: DiscoverySetDrain.")]
