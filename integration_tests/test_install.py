"""`make install` and `make samples`: the files land where that Asterisk looks for them, and
`make install` needs no network.

For each version the tree is built and installed the way an operator would on that system
(Asterisk 22 inside its chroot), against the astmoddir/astetcdir of a test instance's
asterisk.conf, and the installed module is then loaded by that instance.
"""

import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from integration_tests.debian_asterisk import DebianAsterisk, NetnsConsul, fresh  # noqa: F401
from integration_tests.testbed import build, paths, runtime
from integration_tests.testbed.asterisk import sid_command

MODULE = "res_discovery_consul.so"
SAMPLE = "res_discovery_consul.conf"
XMLDOC = "res_discovery_consul-en_US.xml"
SID_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8"}


class Tree:
    """A copy of the source tree, and make run in it as on that Asterisk's system."""

    def __init__(self, version):
        self.version = version
        base = Path(tempfile.gettempdir()) if version == "16" else paths.sid_root() / "tmp"
        self.host_dir = Path(tempfile.mkdtemp(prefix="acinst", dir=base))
        build.copy_tree(self.host_dir / "src")
        # The directory as make sees it (inside the chroot for 22).
        self.dir = (self.host_dir if version == "16" else Path("/tmp") / self.host_dir.name) / "src"

    def make(self, *args, **variables):
        """make in the tree, without network (a new, empty network namespace): what the
        Makefile installs must not need to download anything."""
        if self.version == "16":
            variables.setdefault("PYTHON", paths.host_venv_python())
            variables.setdefault("ASTINCDIR", paths.ast16_prefix() / "usr/include")
        else:
            variables.setdefault("PYTHON", paths.sid_venv_python())
            variables.setdefault("ASTINCDIR", "/usr/include")
        argv = ["make", "-C", str(self.dir), *args] + ["%s=%s" % kv for kv in variables.items()]
        if self.version == "22":
            argv = sid_command(argv)
        argv = ["unshare", "--net", *argv]
        res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=300, env=SID_ENV if self.version == "22" else None)
        assert res.returncode == 0, res.stdout
        return res.stdout

    def host_path(self, path):
        """Host path of a path as make (and Asterisk) see it."""
        path = Path(path)
        return path if self.version == "16" else paths.sid_root() / str(path).lstrip("/")

    def remove(self):
        shutil.rmtree(self.host_dir, ignore_errors=True)


@pytest.fixture
def tree(ast_version):
    t = Tree(ast_version)
    yield t
    t.remove()


def test_install_and_samples_go_where_asterisk_looks(tree, asterisk_factory, ast_version, consul_agent):
    ast = asterisk_factory(ast_version, start=False)
    thirdparty = ast.use_private_datadir()  # make install writes the help there, for it alone
    etc = ast.to_asterisk_path(ast.etc_dir)  # as Asterisk (and make, on its system) see it
    out = tree.make("install", "samples", ASTETCDIR=etc)
    # astmoddir and astdatadir of that Asterisk's asterisk.conf, not hard-coded directories.
    assert (ast.module_dir / MODULE).exists(), out
    assert (thirdparty / XMLDOC).exists(), out
    assert (ast.etc_dir / SAMPLE).read_text() == (tree.host_path(tree.dir) / "res_discovery_consul.conf.sample").read_text()
    # Readable by the group Asterisk runs as where there is one (Debian's asterisk, in the
    # sid chroot), by nobody else.
    st = (ast.etc_dir / SAMPLE).stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    if ast_version == "22":
        group = next(line for line in (paths.sid_root() / "etc/group").read_text().splitlines()
                     if line.startswith("asterisk:"))
        assert st.st_gid == int(group.split(":")[2]), out

    # The installed module, configured, registers.
    ast.write_config(SAMPLE, "[consul]\nport = %d\nid = installed\n" % consul_agent.http_port)
    ast.start()
    assert "Loaded" in ast.rx("module load " + MODULE)
    consul_agent.wait_service("installed", timeout=15)
    # Asterisk read the installed help at start.
    assert "Enable" in ast.rx("manager show command DiscoverySetDrain")

    # samples never overwrites an existing config, and says so.
    out = tree.make("samples", ASTETCDIR=etc)
    assert "exists: left as it is" in out
    assert "id = installed" in (ast.etc_dir / SAMPLE).read_text()


def test_install_into_destdir(tree):
    destdir = Path("/tmp") / ("dest-" + tree.host_dir.name)
    etc = "/etc/asterisk"  # the packaged Asterisk's own config dir on that system
    astconf = tree.host_path(paths.ast16_prefix() / "etc/asterisk/asterisk.conf" if tree.version == "16"
                             else "/etc/asterisk/asterisk.conf")
    moddir, datadir = (next(line.split("=>")[1].strip() for line in astconf.read_text().splitlines()
                            if line.strip().startswith(key)) for key in ("astmoddir", "astdatadir"))
    if tree.version == "16":
        # The private prefix's asterisk.conf stands in for the system's /etc/asterisk.
        etc = str(paths.ast16_prefix() / "etc/asterisk")
    host_dest = tree.host_path(destdir)
    try:
        out = tree.make("install", "samples", DESTDIR=destdir, ASTETCDIR=etc)
        # A staged install leaves the package the running system uses where it was.
        python = paths.host_venv_python() if tree.version == "16" else paths.sid_venv_python()
        probe = [str(python), "-c", "import asterisk_consul.module"]
        res = subprocess.run(sid_command(probe) if tree.version == "22" else probe, cwd="/",
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=SID_ENV if tree.version == "22" else None)
        assert res.returncode == 0, res.stdout
        assert (host_dest / moddir.lstrip("/") / MODULE).exists(), out
        # The HTTP gate the module opens from beside itself (cbridge/gate.h).
        assert list((host_dest / moddir.lstrip("/") / "res_discovery_consul.d").glob("gate-*.so")), out
        assert (host_dest / etc.lstrip("/") / SAMPLE).exists(), out
        assert (host_dest / datadir.lstrip("/") / "documentation/thirdparty" / XMLDOC).exists(), out
        # The Python package goes under DESTDIR too, not into the running system.
        assert list(host_dest.rglob("asterisk_consul/module.py")), out
        if tree.version == "22":
            assert moddir == "/usr/lib/x86_64-linux-gnu/asterisk/modules"  # Debian multiarch
        # The systemd drop-in, then `make uninstall`: everything install put in place goes,
        # the config stays (PURGE_CONFIG=yes removes it).
        out = tree.make("install-systemd", DESTDIR=destdir)
        dropin = host_dest / "usr/lib/systemd/system/asterisk.service.d/res-discovery-consul-drain.conf"
        script = host_dest / "usr/libexec/asterisk-consul/asterisk-stop-gracefully"
        assert dropin.exists() and script.stat().st_mode & 0o777 == 0o755, out
        out = tree.make("uninstall", DESTDIR=destdir, ASTETCDIR=etc)
        for gone in [host_dest / moddir.lstrip("/") / MODULE, dropin, script,
                     host_dest / datadir.lstrip("/") / "documentation/thirdparty" / XMLDOC]:
            assert not gone.exists(), (gone, out)
        assert not list((host_dest / moddir.lstrip("/")).rglob("gate-*.so")), out
        assert (host_dest / etc.lstrip("/") / SAMPLE).exists(), out
        tree.make("uninstall", DESTDIR=destdir, ASTETCDIR=etc, PURGE_CONFIG="yes")
        assert not (host_dest / etc.lstrip("/") / SAMPLE).exists()
    finally:
        shutil.rmtree(host_dest, ignore_errors=True)


def test_readme_source_install_offline_runs_under_debians_asterisk(fresh, tmp_path):
    """The README's source install on Debian sid (the Debian-packages variant, which needs no
    network), then Debian's Asterisk started as its service runs it (user asterisk): the
    config `make samples` installed is readable and the module registers."""
    build.copy_tree(tmp_path / "src")
    fresh.copy_in(tmp_path / "src", "/usr/src/asterisk-consul")
    venv = "/opt/asterisk-consul"
    python = venv + "/bin/python"
    for argv in (["python3", "-m", "venv", "--system-site-packages", venv],
                 ["make", f"PYTHON={python}", "ASTINCDIR=/usr/include"],
                 ["make", "install", f"PYTHON={python}"],
                 ["make", "samples"]):
        # In the copy's network namespace: nothing outside is reachable.
        fresh.run(argv, net=True, cwd="/usr/src/asterisk-consul")
    assert fresh.run(["stat", "-c", "%a %G", "/etc/asterisk/" + SAMPLE]).stdout.split() == \
        ["640", "asterisk"]
    consul = NetnsConsul(fresh, tmp_path)
    ast = DebianAsterisk(fresh, tmp_path).start()
    try:
        assert ast.module_running()
        eid = ast.eid()
        runtime.wait_until(lambda: eid in consul.services(), timeout=20,
                           what="the module installed from source registering")
    finally:
        ast.stop()
