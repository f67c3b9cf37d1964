"""Asterisk's help for the module, written from the tables that define it.

`python -m asterisk_consul.xmldoc OUT.xml` writes the XML documentation Asterisk reads at
start from <astdatadir>/documentation/thirdparty/*-en_US.xml: `config show help
res_discovery_consul` (from the option table), `manager show command Discovery...` (from the
AMI actions) and `manager show event Discovery...` (from the events the registrar fires). Run
at build time only; nothing here is imported inside Asterisk.
"""

from __future__ import annotations

import sys
from typing import Iterable, List, Tuple
from xml.sax.saxutils import escape, quoteattr

from .commands import ami_actions
from .loader import CONFIG_FILE, METADATA_KEYS
from .options import ROWS, Option, default_text
from .registrar.notify import AMI_EVENTS

MODULE = "res_discovery_consul"
# [section] objects of the config file, in the file's order: (name in the help, synopsis).
OBJECTS = (
    ("general", "Whether the module runs at all."),
    ("consul", "The agent, the service, its checks, drain and load, events and KV."),
    ("metadata_<profile>", "Service Meta added when [consul] metadata_profile names the profile."),
    ("kv", "Keys written to Consul's KV store under kv_prefix, held by a session."),
)
ACTION_ID = ("ActionID", False, "ActionID for this transaction. Will be returned.")


def _para(text: str) -> str:
    return "<para>%s</para>" % escape(text)


def _type_of(row: Option) -> str:
    value = row.default
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Unsigned Integer"
    if isinstance(value, tuple):
        return "List"
    return "Duration" if type(value).__name__ == "Duration" else "String"


def _option(name: str, default: str, kind: str, synopsis: str, notes: Iterable[str]) -> str:
    # Asterisk's help shows "name = [type] (Default: ...)" from these attributes.
    paras = "".join(_para(note) for note in notes)
    description = "        <description>%s</description>\n" % paras if paras else ""
    return ("      <configOption name=%s default=%s type=%s>\n        <synopsis>%s</synopsis>\n"
            "%s      </configOption>\n"
            % (quoteattr(name), quoteattr(default), quoteattr(kind), escape(synopsis), description))


# What a value of each kind looks like, for the description.
KIND_NOTES = {"Boolean": "yes or no.", "Duration": "A duration such as 500ms, 15s, 1m30s or 2h.",
              "List": "A comma-separated list."}


def _notes(row: Option) -> List[str]:
    notes = [row.doc.rstrip(".") + "."]
    if _type_of(row) in KIND_NOTES:
        notes.append(KIND_NOTES[_type_of(row)])
    if row.env:
        notes.append("When not set, the Consul CLI's environment variable %s is used." % row.env)
    if row.secret:
        notes.append("Never shown or logged; `discovery show settings` says only whether it is set.")
    return notes


def _options_of(section: str) -> str:
    if section == "metadata_<profile>":
        return "".join(_option(key, "", "String", "sent in the service's Meta as %s" % key,
                               ["Sent in the service's Meta as %s, when [consul] metadata_profile "
                                "names this section." % key])
                       for key in METADATA_KEYS)
    if section == "kv":
        [row] = [r for r in ROWS if r.section == "kv"]
        return _option("<key>", "", "String", row.doc,
                       [row.doc + ".", "The key goes under kv_prefix. Key, prefix and value may use ${ID}, ${NAME}, ${EID}, "
                        "${ADDRESS}, ${PORT} and ${VERSION}; $$ is a '$'."])
    return "".join(_option(row.name, default_text(row), _type_of(row), row.doc, _notes(row))
                   for row in ROWS if row.section == section and row.parse)


def config_info() -> str:
    objects = "".join(
        "    <configObject name=%s>\n      <synopsis>%s</synopsis>\n%s    </configObject>\n"
        % (quoteattr(name), escape(synopsis), _options_of(name)) for name, synopsis in OBJECTS)
    return ("  <configInfo name=%s language=\"en_US\">\n"
            "    <synopsis>Consul service discovery: registers this Asterisk in Consul</synopsis>\n"
            "    <configFile name=%s>\n%s    </configFile>\n  </configInfo>\n"
            % (quoteattr(MODULE), quoteattr(CONFIG_FILE), objects))


def _parameters(parameters: Iterable[Tuple[str, bool, str]]) -> str:
    return "".join("      <parameter name=%s%s>%s</parameter>\n"
                   % (quoteattr(name), ' required="true"' if required else "", _para(text))
                   for name, required, text in parameters)


def manager_actions() -> str:
    return "".join(
        "  <manager name=%s language=\"en_US\">\n    <synopsis>%s</synopsis>\n"
        "    <syntax>\n%s    </syntax>\n    <description>%s</description>\n  </manager>\n"
        % (quoteattr(action.name), escape(action.synopsis),
           _parameters((ACTION_ID,) + action.parameters), _para(action.description))
        for action in ami_actions(None))


def manager_events() -> str:
    return "".join(
        "  <managerEvent language=\"en_US\" name=%s>\n"
        "    <managerEventInstance class=\"EVENT_FLAG_SYSTEM\">\n"
        "      <synopsis>%s</synopsis>\n      <syntax>\n%s      </syntax>\n"
        "    </managerEventInstance>\n  </managerEvent>\n"
        % (quoteattr(name), escape(synopsis),
           "".join("  " + line for line in _parameters(
               (header, False, text) for header, text in headers).splitlines(True)))
        for name, (synopsis, headers) in AMI_EVENTS.items())


def document() -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            "<!-- Written by asterisk_consul/xmldoc.py from the module's tables: edit those. -->\n"
            "<docs>\n%s%s%s</docs>\n" % (config_info(), manager_actions(), manager_events()))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m asterisk_consul.xmldoc OUT.xml")
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write(document())
