"""The operator's commands: `discovery ...` on the CLI, DiscoverySetMaintenance,
DiscoverySetCheck and DiscoverySetDrain on AMI.

Each command reads the Application's current state and asks the Registrar, which answers
within the Consul timeout; nothing here waits longer than that. The text shown is render.py's.
"""

from __future__ import annotations

from typing import List

from .ami import AmiAction, AmiReply
from .cli import USAGE, CliCommand, CliResult, failure, ok
from .render import show_settings_text, show_status_text

_BOOL_WORDS = {"yes": True, "true": True, "on": True, "1": True,
               "no": False, "false": False, "off": False, "0": False}


def _change(app, ask, not_done: str):
    """An operator's change: `ask(registrar)` gives the Registrar's Result. Returns (done,
    text); `not_done` says what did not happen, '{service}' standing for the service ID."""
    registrar = app.registrar
    if registrar is None:
        return False, "res_discovery_consul is not running (disabled or not configured); nothing to change"
    result = ask(registrar)
    if result.ok:
        return True, result.message
    # The registrar's reason names the Consul call that failed, which may be another one
    # (a registration still pending): say first what did not happen.
    service_id = app.settings.service_id if app.settings is not None else "?"
    return False, "%s: %s" % (not_done.format(service=service_id), result.message)


def set_maintenance(app, enable: bool, reason: str):
    return _change(app, lambda registrar: registrar.set_maintenance(enable, reason, timeout=app.timeout_s),
                   "Maintenance mode for service {service} is NOT %s" % ("set" if enable else "unset"))


def set_check(app, enable: bool):
    return _change(app, lambda registrar: registrar.set_checks(enable, timeout=app.timeout_s),
                   "Health check for service {service} is NOT switched %s" % ("on" if enable else "off"))


def set_drain(app, enable: bool, reason: str):
    return _change(app, lambda registrar: registrar.set_drain(enable, reason, timeout=app.timeout_s),
                   "Drain for service {service} is NOT switched %s" % ("on" if enable else "off"))


def _show_settings(app, args: List[str]) -> CliResult:
    if len(args) != 3:
        return USAGE
    return ok(show_settings_text(app))


def _show_status(app, args: List[str]) -> CliResult:
    if len(args) != 3:
        return USAGE
    return ok(show_status_text(app))


def _set_maintenance(app, args: List[str]) -> CliResult:
    if len(args) < 4 or args[3].lower() not in ("on", "off"):
        return USAGE
    done, message = set_maintenance(app, args[3].lower() == "on", " ".join(args[4:]))
    return ok(message) if done else failure(message)


def _set_drain(app, args: List[str]) -> CliResult:
    if len(args) < 4 or args[3].lower() not in ("on", "off"):
        return USAGE
    done, message = set_drain(app, args[3].lower() == "on", " ".join(args[4:]))
    return ok(message) if done else failure(message)


def _set_check(app, args: List[str]) -> CliResult:
    if len(args) != 4 or args[3].lower() not in ("on", "off"):
        return USAGE
    done, message = set_check(app, args[3].lower() == "on")
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
                   lambda args: _set_maintenance(app, args),
                   choices=lambda pos: ["on", "off"] if pos == 3 else []),
        CliCommand("discovery set check", "Add or remove this service's Consul health check",
                   "Usage: discovery set check {on|off}\n"
                   "       Adds or removes the health check(s) of check_type without re-registering\n"
                   "       the service. Kept across resyncs and reloads until the check options\n"
                   "       in res_discovery_consul.conf change.\n",
                   lambda args: _set_check(app, args),
                   choices=lambda pos: ["on", "off"] if pos == 3 else []),
        CliCommand("discovery set drain", "Stop new calls to this Asterisk, or let them in again",
                   "Usage: discovery set drain {on|off} [reason...]\n"
                   "       on: the service leaves Consul's healthy set at once (a critical drain\n"
                   "       check), stays registered, and the calls up are followed until they end\n"
                   "       (AMI event DiscoveryDrained). off: back in the healthy set at once.\n"
                   "       Not maintenance: either can be on or off without the other.\n",
                   lambda args: _set_drain(app, args),
                   choices=lambda pos: ["on", "off"] if pos == 3 else []),
    ]


def _ami_switch(app, fields, switch, header: str) -> AmiReply:
    """An on/off action: its Enable header, `switch(enable)` -> (done, text), and the reply
    with ServiceID and `header: on|off`."""
    enable = _BOOL_WORDS.get(fields.get("enable", "").strip().lower())
    if enable is None:
        return AmiReply(False, "Enable: must be yes or no")
    done, message = switch(enable)
    service_id = app.settings.service_id if app.settings is not None else ""
    return AmiReply(done, message, [("ServiceID", service_id), (header, "on" if enable else "off")])


_ENABLE = ("Enable", True, "yes or no (also on/off, true/false, 1/0).")
_ANSWER = (" The answer comes once Consul took the change or refused it, within consul_timeout_ms;"
           " it names the ServiceID.")


def ami_actions(app) -> List[AmiAction]:
    """The AMI actions (app may be None when only their documentation is wanted)."""
    return [AmiAction("DiscoverySetMaintenance", "Set Consul maintenance mode",
                      lambda fields: _ami_switch(
                          app, fields, lambda on: set_maintenance(app, on, fields.get("reason", "")),
                          "Maintenance"),
                      (_ENABLE, ("Reason", False, "Why, shown in Consul (with Enable: yes).")),
                      "The service stays registered but leaves Consul's healthy set while "
                      "maintenance is on; kept across resyncs, reloads and agent restarts."
                      + _ANSWER + " Event: DiscoverySetMaintenance."),
            AmiAction("DiscoverySetCheck", "Add or remove the Consul health check",
                      lambda fields: _ami_switch(app, fields, lambda on: set_check(app, on), "Check"),
                      (_ENABLE,),
                      "Adds or removes the health check(s) of check_type without re-registering "
                      "the service; kept until the check options in res_discovery_consul.conf "
                      "change." + _ANSWER + " Event: DiscoverySetCheck."),
            AmiAction("DiscoverySetDrain", "Drain this Asterisk (no new calls) or end the drain",
                      lambda fields: _ami_switch(
                          app, fields, lambda on: set_drain(app, on, fields.get("reason", "")),
                          "Drain"),
                      (_ENABLE, ("Reason", False, "Why, shown in the drain check's notes.")),
                      "Yes: the service leaves Consul's healthy set at once (a critical drain "
                      "check), stays registered, and DiscoveryDrained follows when no channel is "
                      "left. No: back in the healthy set at once." + _ANSWER
                      + " Event: DiscoverySetDrain.")]
