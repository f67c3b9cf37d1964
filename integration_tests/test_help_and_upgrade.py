"""What an operator meets on a real Asterisk (16 and 22): Asterisk's own help for the module
(written from the option table, the AMI actions and the events), the running versions, an
upgrade by `module unload` + `module load` alone, defaults that load without a warning, and log
lines that name the place that logged."""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from asterisk_consul import __version__
from asterisk_consul.commands import ami_actions
from asterisk_consul.options import ROWS, default_text
from asterisk_consul.registrar.notify import AMI_EVENTS
from integration_tests import discovery as d
from integration_tests.testbed import build, paths

XMLDOC = "res_discovery_consul-en_US.xml"
REAL_APP = "asterisk_consul.module:Application"


@pytest.fixture(scope="session")
def xmldoc(tmp_path_factory):
    """The help as `make` writes it."""
    out = tmp_path_factory.mktemp("xmldoc") / XMLDOC
    subprocess.run([sys.executable, "-m", "asterisk_consul.xmldoc", str(out)], check=True,
                   cwd=paths.repo_root())
    return out


def test_asterisk_help_documents_every_option_action_and_event(
        asterisk_factory, ast_version, module_so, consul_agent, xmldoc):
    ast = asterisk_factory(ast_version, start=False, install=[module_so])
    ast.install_docs(xmldoc)
    ast.start()
    d.write_conf(ast, consul_agent)
    d.load(ast)

    sections = ast.rx("config show help res_discovery_consul")
    for section in ("general", "consul", "metadata_<profile>", "kv"):
        assert section in sections, sections
    listing = ast.rx("config show help res_discovery_consul consul")
    for row in ROWS:
        if row.parse is None:
            continue
        assert re.search(r"^%s\s+-- " % row.name, ast.rx("config show help res_discovery_consul %s"
                                                      % row.section) if row.section != "consul"
                         else listing, re.M), row.name
        detail = ast.rx("config show help res_discovery_consul %s %s" % (row.section, row.name))
        assert "%s = [" % row.name in detail and "(Default: %s)" % (default_text(row) or "")\
            in detail, detail
        assert row.doc[:40] in detail, detail

    for action in ami_actions(None):
        text = ast.rx("manager show command " + action.name)
        assert action.synopsis in text, text
        for header, _, _ in action.parameters:
            assert header in text, (action.name, header, text)
        assert action.description[:40] in text, text

    for name, (synopsis, headers) in AMI_EVENTS.items():
        text = ast.rx("manager show event " + name)
        assert synopsis[:40] in text, text
        for header, _ in headers:
            assert header in text, (name, header, text)


def _package_copy(version):
    """A copy of the package where Asterisk `version` can import it: (host dir, dir as
    Asterisk sees it)."""
    base = Path("/tmp") if version == "16" else paths.sid_root() / "tmp"
    site = Path(tempfile.mkdtemp(prefix="acup", dir=base))
    site.chmod(0o755)
    shutil.copytree(paths.repo_root() / "asterisk_consul", site / "asterisk_consul",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return site, (site if version == "16" else Path("/tmp") / site.name)


def test_unload_and_load_after_an_upgrade_run_the_new_python_package(
        asterisk_factory, ast_version, consul_agent):
    site, seen = _package_copy(ast_version)
    try:
        so = build.build_module(ast_version, app=REAL_APP, app_path=str(seen))
        ast = d.new_asterisk(asterisk_factory, ast_version, so)
        d.write_conf(ast, consul_agent)
        d.load(ast)
        shown = "C shim %s, Python package %s (%s/asterisk_consul)" % (__version__, __version__, seen)
        assert shown in ast.rx("discovery show status")
        assert shown in ast.rx("discovery show settings")

        # Nothing installed: unload + load keeps what was imported.
        since = ast.log_offset()
        ast.rx("module unload " + d.MODULE)
        d.load(ast)
        assert "imported anew" not in ast.log_text(since)

        # A newer package installed over it.
        init = site / "asterisk_consul/__init__.py"
        newer = __version__ + "+next"
        init.write_text(init.read_text().replace('"%s"' % __version__, '"%s"' % newer))
        since = ast.log_offset()
        ast.rx("module unload " + d.MODULE)
        d.load(ast)
        assert "asterisk_consul %s imported anew from %s/asterisk_consul" % (newer, seen) \
            in ast.log_text(since)
        status = ast.rx("discovery show status")
        assert "C shim %s, Python package %s" % (__version__, newer) in status, status
        assert "MISMATCH" in status  # this shim was built from the older version
        d.wait_service(consul_agent, ast.eid)
    finally:
        shutil.rmtree(site, ignore_errors=True)


def test_the_default_settings_load_without_a_warning_and_log_lines_name_their_file(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    # Only what a deployment must set; every other option at its default (checks on).
    ast.write_config(d.CONF, "[consul]\nport = %d\ncheck = yes\ncheck_http_port = %d\n"
                     % (consul_agent.http_port, ast.http_port))
    since = ast.log_offset()
    d.load(ast)
    d.wait_service(consul_agent, ast.eid)
    # The worker logs "registered" just after Consul has the entry: wait for the line.
    ast.wait_log(r"NOTICE\[\d+\] service\.py: Consul: service .* registered as", since=since)
    log = ast.log_text(since)
    assert not re.search(r"WARNING\[.*res_discovery_consul|WARNING\[\d+\] \w+\.py:", log), log
    # The worker's lines name the file that logged them, not a logging helper.
    assert re.search(r"NOTICE\[\d+\] worker\.py: Consul: registering service", log), log
