"""The README, docs/ and the CHANGELOG say what the code and the package do: every link leads
somewhere, every `make` target, CLI command, AMI name, option and log line they name exists,
the versions agree, the systemd drop-in they show is the one shipped, and the wrong-box guard
in contrib/ makes the fleet's test. (The option table itself: test_docs_match_the_option_table.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import asterisk_consul
from asterisk_consul.commands import ami_actions, cli_commands
from asterisk_consul.options import ROWS
from asterisk_consul.registrar.notify import AMI_EVENTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "contrib/kamailio/README.md", *DOCS]
DROPIN = ROOT / "contrib/systemd/asterisk.service.d/res-discovery-consul-drain.conf"


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def anchors(path: Path) -> set:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for line in text(path).splitlines():
        match = re.match(r"#{1,6} (.*)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            found.add(title.replace(" ", "-"))
    return found


def test_the_readme_says_the_one_command_demo_and_the_one_command_tests():
    readme = text(ROOT / "README.md")
    assert re.search(r"^make demo$", readme, re.M) and re.search(r"^make test$", readme, re.M)
    assert "make demo-stop" in readme
    # The README is the administrator's entry point: short, with the docs behind it.
    assert len(readme.splitlines()) < 300
    for page in DOCS:
        assert f"(docs/{page.name}" in readme, f"the README does not link {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    prose = re.sub(r"`[^`\n]*`", "", text(page))  # code spans hold no links ([name](!))
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target}: no {dest}"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: link to {target}: no such heading"


def make_targets() -> set:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text(ROOT / "Makefile"), re.M)) | \
        set(re.findall(r"^([a-z][a-z0-9-]*):", text(ROOT / "integration_tests/Makefile"), re.M))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_named_exists(page):
    targets = make_targets()
    for target in re.findall(r"\bmake ([a-z][a-z0-9-]*)\b", text(page)):
        if target in ("the", "sure", "it", "a", "them", "its", "test-setup"):
            assert target != "test-setup" or "test-setup" in targets
            continue
        assert target in targets, f"{page.name}: `make {target}` is not a target"


def test_every_cli_command_and_ami_name_named_exists():
    commands = {c.command for c in cli_commands(None)}
    ami = {a.name for a in ami_actions(None)} | set(AMI_EVENTS)
    for page in PAGES:
        body = text(page)
        for command in re.findall(r"`(discovery (?:show|set) [a-z]+)", body):
            assert command in commands, f"{page.name}: `{command}` is not a CLI command"
        for name in re.findall(r"\b(Discovery[A-Z][A-Za-z]+)\b", body):
            if name in ("DiscoverySet",):
                continue
            assert name in ami, f"{page.name}: {name} is neither an AMI action nor an event"
    # The AMI permission the docs state is the one the gate registers the actions with.
    gate = text(ROOT / "cbridge/gate.c")
    assert "ast_manager_register2(name, EVENT_FLAG_SYSTEM" in gate
    assert "`write = system`" in text(ROOT / "docs/operations.md")


# Keys written `key = value` in the docs that are not the module's options: http.conf,
# asterisk.conf, manager.conf, modules.conf, systemd, the metadata profile, examples.
NOT_OURS = {"enabled", "bindaddr", "bindport", "tlsenable", "tlsbindaddr", "tlsbindport",
            "prefix", "entityid", "autoload", "secret", "read", "write", "policy", "group",
            "priority", "weight", "max_calls", "flags", "role", "price", "verify_incoming_https",
            "astmoddir", "astdatadir", "load", "key"}


@pytest.mark.parametrize("page", [p for p in PAGES if "kamailio/README" not in str(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_option_written_is_an_option(page):
    options = {row.name for row in ROWS} | {"debug", "register_url", "deregister_url"}
    for name in re.findall(r"`([a-z_]+) =>? [^`]*`", text(page)):
        assert name in options or name in NOT_OURS, f"{page.name}: `{name} = ...` is no option"


def source_text() -> str:
    return "\n".join(text(p) for p in [*ROOT.glob("asterisk_consul/**/*.py"),
                                       *ROOT.glob("cbridge/*.c")])


def test_the_log_lines_the_operations_page_quotes_are_the_modules():
    page = re.sub(r"\s+", " ", text(ROOT / "docs/operations.md"))
    source = source_text()
    for fragment in ["res_discovery_consul not loaded: fix %s and load it again",
                     "Consul: service %s (%s) registered as %s:%s",
                     "Consul: service %s deregistered",
                     "Consul: could not deregister service %s: %s",
                     "the EID check will fail"]:
        assert fragment in source, fragment
    assert "res_discovery_consul not loaded: fix res_discovery_consul.conf and load it again" \
        in page
    assert "registered as <address>:<port>" in page
    assert "the EID check cannot pass: " in source_text()
    assert "warning: the EID check cannot pass: " in page


def test_the_acl_policy_names_every_right_the_docs_mention():
    page = text(ROOT / "docs/operations.md")
    policy = page.split("## The Consul ACL policy", 1)[1]
    for rule in ['service "Asterisk"', "node_prefix", "agent_prefix", "key_prefix",
                 "session_prefix", "event_prefix"]:
        assert rule in policy, rule
    for right in ("service:write", "node:read", "agent:read", "key:write", "session:write",
                  "event:write"):
        assert right in policy, right


def changelog_versions():
    return re.findall(r"^## (\d+\.\d+\.\d+)\b", text(ROOT / "CHANGELOG.md"), re.M)


def test_the_changelog_the_package_and_the_module_say_the_same_version():
    top = changelog_versions()[0]
    assert top == asterisk_consul.__version__
    assert re.match(rf"asterisk-consul \({re.escape(top)}\) ", text(ROOT / "debian/changelog"))
    assert "## Versioning policy" in text(ROOT / "CHANGELOG.md")
    assert changelog_versions() == sorted(changelog_versions(), key=lambda v: [
        int(x) for x in v.split(".")], reverse=True)


def test_the_drop_in_the_docs_show_is_the_one_shipped():
    shipped = [line for line in text(DROPIN).splitlines() if line and not line.startswith("#")]
    shown = text(ROOT / "docs/install.md").split("res-discovery-consul-drain.conf\n", 1)[1]
    shown = shown.split("```", 1)[0]
    assert [line for line in shown.splitlines() if line] == shipped
    exec_stop = next(line for line in shipped if line.startswith("ExecStop="))
    script = exec_stop.split("=", 1)[1].split()[0]
    assert script == "/usr/libexec/asterisk-consul/asterisk-stop-gracefully"
    makefile = text(ROOT / "Makefile")
    assert "LIBEXECDIR ?= /usr/libexec/asterisk-consul" in makefile
    assert "contrib/systemd/asterisk-stop-gracefully" in makefile
    assert "install-systemd" in text(ROOT / "debian/rules")
    # The drain bound leaves systemd's SIGTERM time: TimeoutStopSec is above the script's bound.
    bound = int(exec_stop.split()[-1])
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", text(DROPIN), re.M).group(1))
    assert bound + 10 <= timeout


def test_the_fleet_runs_the_wrong_box_guard_of_contrib():
    from integration_tests.fleet.host import EXTENSIONS, MODULES

    guard = text(ROOT / "contrib/kamailio/wrong-box-guard.conf")
    assert EXTENSIONS.startswith(guard) and "GoSub(consul-wrong-box-guard,s,1)" in EXTENSIONS
    assert "GoSub(consul-wrong-box-guard,s,1)" in text(ROOT / "docs/kamailio.md")
    assert {"app_stack.so", "func_channel.so"} <= set(MODULES)
    assert "Hangup(34)" in guard and "X-Consul-Service" in guard
    assert "X-Consul-Service" in text(ROOT / "contrib/kamailio/kamailio.cfg")
