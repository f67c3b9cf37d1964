"""What an operator sees of the running versions, and how the package tells that a newer one was
installed over it (the shim's init code then imports it anew at the next load)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import asterisk_consul
from asterisk_consul import __version__
from asterisk_consul.render import show_settings_text
from tests.standin import StatusView
from integration_tests.testbed.registrar_kit import settings_for


def test_settings_name_the_shim_and_package_versions_and_where_the_package_is():
    text = show_settings_text(StatusView(settings_for(8500), None))
    package_dir = str(Path(asterisk_consul.__file__).parent)
    assert f"Version: C shim {__version__}, Python package {__version__} ({package_dir})" in text
    assert "MISMATCH" not in text


def test_a_shim_of_another_version_is_called_a_mismatch():
    view = StatusView(settings_for(8500), None)
    view.host.shim = "0.0.1"
    assert "C shim 0.0.1, Python package %s" % __version__ in show_settings_text(view)
    assert "MISMATCH" in show_settings_text(view)


def _ask_a_copy(tmp_path: Path, edit) -> str:
    """Import a copy of the package in a fresh Python, apply edit(copy dir), and return what
    installed_files_changed() says then."""
    copy = tmp_path / "site" / "asterisk_consul"
    shutil.copytree(Path(asterisk_consul.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(copy.parent)!r})
        import asterisk_consul
        assert asterisk_consul.__file__.startswith({str(copy)!r})
        print(asterisk_consul.installed_files_changed(), flush=True)
        sys.stdin.readline()  # the test edits the copy now
        print(asterisk_consul.installed_files_changed())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    before = proc.stdout.readline().strip()
    edit(copy)
    after, _ = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 0
    return before + " " + after.strip()


def test_an_unchanged_package_is_not_imported_again(tmp_path):
    assert _ask_a_copy(tmp_path, lambda copy: None) == "False False"


def test_a_package_installed_over_the_imported_one_is_noticed(tmp_path):
    def upgrade(copy):
        init = copy / "__init__.py"
        init.write_text(init.read_text().replace(__version__, __version__ + ".post1"))
    assert _ask_a_copy(tmp_path, upgrade) == "False True"


def test_a_module_added_by_an_upgrade_is_noticed(tmp_path):
    assert _ask_a_copy(tmp_path, lambda copy: (copy / "added.py").write_text("")) == "False True"
