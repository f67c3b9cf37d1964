"""The sample config and the options table of docs/configuration.md say what the option table
says: every option, in its section, with its default; nothing they list is unknown to the
module."""

from __future__ import annotations

import re
from pathlib import Path

from asterisk_consul.options import ROWS, default_text

ROOT = Path(__file__).resolve().parents[1]
PARSED_SECTIONS = ("general", "consul")
OPTIONS = {row.name: row for row in ROWS if row.parse and row.section in PARSED_SECTIONS}


def readme_options(text: str):
    """option -> (section, default as the README writes it, "" for —), from its table."""
    found, section = {}, None
    table = text.split("| section / option | default | meaning |", 1)[1].split("\n\n", 1)[0]
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        heading = re.match(r"`\[([^\]]+)\]\s*([^`]*)`", cells[0])
        if heading:
            section = heading.group(1)
        names = [n for n in re.findall(r"`([^`]+)`", cells[0]) if not n.startswith("[")]
        if heading and heading.group(2):
            names.insert(0, heading.group(2).strip())
        defaults = re.findall(r"`([^`]*)`", cells[1]) or [""]
        for i, name in enumerate(names):
            assert name not in found, f"README lists {name} twice"
            found[name] = (section, defaults[i] if len(defaults) == len(names) else defaults[0])
    return found


def sample_options(text: str):
    """option -> (section, value as the sample writes it), '[x]' and ';[x]' opening sections."""
    found, section = {}, None
    for line in text.splitlines():
        heading = re.fullmatch(r";?\[([^\]]+)\].*", line.strip())
        if heading:
            section = heading.group(1)
            continue
        setting = re.fullmatch(r";?([a-z_]+) = ?([^;]*?)\s*(;.*)?", line.strip())
        if setting and section in PARSED_SECTIONS:
            found.setdefault(setting.group(1), (section, setting.group(2)))
    return found


def test_readme_options_table_matches_the_option_table():
    listed = readme_options((ROOT / "docs" / "configuration.md").read_text())
    documented = {name: spec for name, spec in listed.items() if spec[0] in PARSED_SECTIONS}
    assert set(documented) == set(OPTIONS), (
        f"missing from the README: {sorted(set(OPTIONS) - set(documented))}; "
        f"unknown to the module: {sorted(set(documented) - set(OPTIONS))}")
    for name, (section, default) in documented.items():
        row = OPTIONS[name]
        assert section == row.section, f"README puts {name} in [{section}], not [{row.section}]"
        assert default == default_text(row), (
            f"README says {name} defaults to {default!r}; the module says {default_text(row)!r}")


def test_sample_config_matches_the_option_table():
    listed = sample_options((ROOT / "res_discovery_consul.conf.sample").read_text())
    assert set(listed) == set(OPTIONS), (
        f"missing from the sample: {sorted(set(OPTIONS) - set(listed))}; "
        f"unknown to the module: {sorted(set(listed) - set(OPTIONS))}")
    for name, (section, value) in listed.items():
        row = OPTIONS[name]
        assert section == row.section, f"the sample puts {name} in [{section}], not [{row.section}]"
        if default_text(row):  # options without a default show an example value
            assert value == default_text(row), (
                f"the sample says {name} = {value!r}; the module's default is {default_text(row)!r}")


def test_asterisks_help_is_written_from_the_option_action_and_event_tables():
    import xml.etree.ElementTree as ET

    from asterisk_consul import xmldoc
    from asterisk_consul.commands import ami_actions
    from asterisk_consul.registrar.notify import AMI_EVENTS

    docs = ET.fromstring(xmldoc.document())
    assert docs.tag == "docs"  # Asterisk skips a file whose root is anything else
    [info] = docs.findall("configInfo[@name='res_discovery_consul']")
    for name, row in OPTIONS.items():
        [option] = info.findall(f"configFile/configObject[@name='{row.section}']"
                                f"/configOption[@name='{name}']")
        assert option.get("default") == default_text(row), name
        assert option.findtext("synopsis") == row.doc
    for action in ami_actions(None):
        [manager] = docs.findall(f"manager[@name='{action.name}']")
        params = {p.get("name"): p.get("required") for p in manager.findall("syntax/parameter")}
        assert params == {"ActionID": None, **{name: "true" if required else None
                                               for name, required, _ in action.parameters}}
    for name, (_, headers) in AMI_EVENTS.items():
        [event] = docs.findall(f"managerEvent[@name='{name}']/managerEventInstance")
        assert [p.get("name") for p in event.findall("syntax/parameter")] == [h for h, _ in headers]
