"""Building the module: a missing prerequisite fails the build with a message that says
what to install or set, before the compiler produces a wall of errors."""

import subprocess
import sys

import pytest

from integration_tests.testbed import build, paths


@pytest.fixture
def tree(tmp_path):
    build.copy_tree(tmp_path / "src")
    return tmp_path / "src"


def make(tree, **variables):
    argv = ["make", "-C", str(tree)] + ["%s=%s" % kv for kv in variables.items()]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def test_builds_against_the_asterisk_16_headers(tree):
    res = make(tree, PYTHON=paths.host_venv_python(), ASTINCDIR=paths.ast16_prefix() / "usr/include")
    assert res.returncode == 0, res.stdout
    assert (tree / "res_discovery_consul.so").exists()


@pytest.mark.parametrize("astincdir", ["/nonexistent/include", "/usr/include/linux"])
def test_missing_or_wrong_astincdir_says_what_to_install(tree, astincdir):
    res = make(tree, PYTHON=paths.host_venv_python(), ASTINCDIR=astincdir)
    assert res.returncode != 0
    assert "%s/asterisk.h not found" % astincdir in res.stdout
    assert "asterisk-dev" in res.stdout and "ASTINCDIR" in res.stdout
    assert not (tree / "res_discovery_consul.so").exists()


def test_python_without_cffi_says_what_to_install(tree, tmp_path):
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = bare / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import cffi"], capture_output=True).returncode != 0
    res = make(tree, PYTHON=python, ASTINCDIR=paths.ast16_prefix() / "usr/include")
    assert res.returncode != 0
    assert "cannot import cffi" in res.stdout
    assert "%s -m pip install cffi" % python in res.stdout  # a venv: pip is the way
    assert not (tree / "res_discovery_consul.so").exists()


def test_debian_python_without_cffi_is_pointed_to_apt_not_pip(tree):
    """Debian refuses `pip install` into its own Python (externally managed): the hint is apt
    or a virtualenv."""
    python = "/usr/bin/python3"
    probe = subprocess.run([python, "-c", "import cffi"], capture_output=True)
    marker = subprocess.run([python, "-c", "import os, sysconfig, sys; sys.exit(not os.path.exists("
                             "os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"])
    if probe.returncode == 0 or marker.returncode != 0:
        pytest.skip(f"{python} has cffi or is not externally managed on this machine")
    res = make(tree, PYTHON=python, ASTINCDIR=paths.ast16_prefix() / "usr/include")
    assert res.returncode != 0
    assert "apt install python3-cffi" in res.stdout and "venv" in res.stdout
    assert "pip install cffi" not in res.stdout.replace("DIR/bin/pip install cffi", "")


def test_missing_python_says_what_to_set(tree):
    res = make(tree, PYTHON="/nonexistent/python3", ASTINCDIR=paths.ast16_prefix() / "usr/include")
    assert res.returncode != 0
    assert "PYTHON=/nonexistent/python3 not found" in res.stdout
