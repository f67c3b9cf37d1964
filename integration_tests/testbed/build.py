"""Build res_discovery_consul.so for a test bed Asterisk, in copies outside the work tree.

    build_module("16") -> host path of the .so (Asterisk 16 headers, the host venv's Python)
    build_module("22") -> host path of the .so (built in the sid chroot with its venv's Python)
    build_module("16", app=PROBE_APP) -> the shim built around the bridge tests' probe app

16: copy the tree to $CACHE/build/asterisk-consul-16, `$CACHE/venv/bin/pip install --no-deps
    --force-reinstall <copy>`, then `make -C <copy> PYTHON=$CACHE/venv/bin/python
    ASTINCDIR=$CACHE/ast16/usr/include`.
22: copy the tree to $SID/build/asterisk-consul, then in the chroot
    `/opt/asterisk-consul/venv/bin/pip install --no-deps --no-build-isolation --force-reinstall .`
    and `make PYTHON=/opt/asterisk-consul/venv/bin/python ASTINCDIR=/usr/include`.
The tree copied is what git would commit (tracked + untracked-not-ignored files), without .git.
Builds are serialized by a lock in the cache; each result is copied to a private temp dir so a
later build (another test session) cannot change a .so a test is using.

Runnable: python3 -m integration_tests.testbed.build 16 22
"""

import contextlib
import fcntl
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import paths, runtime
from .asterisk import sid_command

MODULE = "res_discovery_consul.so"
# The bridge tests' stand-in application (integration_tests/apps/probe.py).
PROBE_APP = "probe:Application"
# Installed next to the module (the HTTP gate, cbridge/gate.h).
MODULE_FILES_DIR = "res_discovery_consul.d"
_built = {}


class BuildError(Exception):
    pass


def source_files(repo=None):
    """Relative paths of the files git would see (tracked + untracked, not ignored)."""
    repo = Path(repo or paths.repo_root())
    try:
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard",
                              "-z"], check=True, capture_output=True).stdout
        files = sorted({f for f in out.decode().split("\0") if f})
    except (subprocess.CalledProcessError, FileNotFoundError):
        files = None
    if files is None:  # not a git checkout: everything but the obvious build litter
        skip = {".git", "build", "__pycache__", ".pytest_cache", ".hypothesis"}
        files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*")
                       if p.is_file() and not (set(p.relative_to(repo).parts) & skip)
                       and not p.name.endswith(".so"))
    return [f for f in files if (repo / f).is_file() or (repo / f).is_symlink()]


def copy_tree(dest, repo=None):
    repo = Path(repo or paths.repo_root())
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel in source_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target, follow_symlinks=False)
    return dest


@contextlib.contextmanager
def _build_lock():
    paths.cache_dir().mkdir(parents=True, exist_ok=True)
    with open(paths.cache_dir() / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _run(argv, log, what, env=None, cwd=None):
    log.write(f"$ {' '.join(map(str, argv))}\n")
    log.flush()
    proc = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=log,
                          stderr=subprocess.STDOUT, env=env, cwd=cwd)
    if proc.returncode != 0:
        log.flush()
        raise BuildError(f"{what} failed (exit {proc.returncode}); log {log.name}:\n"
                         + "\n".join(Path(log.name).read_text(errors="replace")
                                     .splitlines()[-40:]))


def _publish(so_path, version):
    """Copy the built .so and its files dir to a private temp dir (removed at exit)."""
    out = Path(tempfile.mkdtemp(prefix=f"acso{version}-"))
    runtime.register_cleanup(("build", str(out)), lambda: shutil.rmtree(out, ignore_errors=True))
    dest = out / MODULE
    shutil.copy2(so_path, dest)
    beside = Path(so_path).parent / MODULE_FILES_DIR
    if beside.is_dir():
        shutil.copytree(beside, out / MODULE_FILES_DIR)
    return dest


def build_module(version, repo=None, force=False, app=None, app_path=None):
    """Build the module for Asterisk version ("16"/"22"), around `app` (MODULE:CLASS from
    integration_tests/apps, or from app_path: a directory as Asterisk sees it, searched
    before the installed package) instead of the real application if given; return the host
    path of the .so. Memoized per process unless force."""
    version = str(version)
    key = (version, app, app_path)
    if not force and key in _built and _built[key].exists():
        return _built[key]
    if version == "16":
        so = _build16(repo, app, app_path)
    elif version == "22":
        so = _build22(repo, app, app_path)
    else:
        raise ValueError(f"unknown Asterisk version {version!r}")
    _built[key] = so
    return so


def _app_variables(app, tree, app_path=None):
    """make variables that build the shim around `app`, imported from app_path (default:
    tree's apps dir)."""
    if not app:
        return []
    return [f"RDC_APP={app}", f"RDC_APP_PATH={app_path or str(tree) + '/integration_tests/apps'}"]


def _build16(repo, app, app_path=None):
    venv_python = paths.host_venv_python()
    incdir = paths.ast16_prefix() / "usr/include"
    if not venv_python.exists():
        raise BuildError(f"{venv_python} missing: run `make -C integration_tests test-setup`")
    if not (incdir / "asterisk.h").exists():
        raise BuildError(f"{incdir}/asterisk.h missing: run `make -C integration_tests test-setup`")
    with _build_lock():
        work = paths.cache_dir() / "build" / "asterisk-consul-16"
        copy_tree(work, repo)
        with open(paths.cache_dir() / "build" / "build-16.log", "w") as log:
            _run([paths.host_venv() / "bin/pip", "install", "--disable-pip-version-check", "-q",
                  "--no-deps", "--force-reinstall", str(work)], log,
                 "pip install of the asterisk_consul package into the host venv", cwd=work)
            _run(["make", "-C", str(work), f"PYTHON={venv_python}", f"ASTINCDIR={incdir}",
                  *_app_variables(app, work, app_path)], log, "make (Asterisk 16)")
        so = work / MODULE
        if not so.exists():
            raise BuildError(f"make succeeded but {so} does not exist")
        return _publish(so, "16")


def _build22(repo, app, app_path=None):
    root = paths.sid_root()
    if not (root / paths.SID_VENV.lstrip("/") / "bin/python").exists():
        raise BuildError(f"the sid chroot venv is missing under {root}: run "
                         "`make -C integration_tests test-setup`")
    with _build_lock():
        work = root / paths.SID_BUILD_DIR.lstrip("/")
        copy_tree(work, repo)
        pip = paths.SID_VENV + "/bin/pip"
        script = (f"set -e; cd {paths.SID_BUILD_DIR}; "
                  f"{pip} install --disable-pip-version-check -q --no-deps --no-build-isolation "
                  f"--force-reinstall .; "
                  f"make PYTHON={paths.sid_venv_python()} ASTINCDIR=/usr/include "
                  + " ".join(_app_variables(app, paths.SID_BUILD_DIR, app_path)))
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "LANG": "C.UTF-8"}
        (paths.cache_dir() / "build").mkdir(parents=True, exist_ok=True)
        with open(paths.cache_dir() / "build" / "build-22.log", "w") as log:
            _run(sid_command(["sh", "-c", script]), log, "pip install + make in the sid chroot "
                 "(Asterisk 22)", env=env)
        so = work / MODULE
        if not so.exists():
            raise BuildError(f"make succeeded but {so} does not exist")
        return _publish(so, "22")


RIVAL_SOURCE = "integration_tests/apps/rival_ami.c"
CC_FLAGS = ["-shared", "-fPIC", "-pthread", "-D_GNU_SOURCE", "-D_REENTRANT", "-O2", "-g", "-Wall",
            "-Wno-unused-function"]


def build_rival_module(version, repo=None):
    """Build integration_tests/apps/rival_ami.c (an Asterisk module owning one of the module's AMI
    action names) against the same headers as the module: the dpkg -x'ed Asterisk 16 headers with
    the host's gcc, or /usr/include in the sid chroot for 22. Returns the host path of
    rival_ami.so (memoized per process)."""
    version = str(version)
    key = (version, "rival")
    if key in _built and _built[key].exists():
        return _built[key]
    source = Path(repo or paths.repo_root()) / RIVAL_SOURCE
    (paths.cache_dir() / "build").mkdir(parents=True, exist_ok=True)
    with _build_lock(), open(paths.cache_dir() / "build" / f"build-rival-{version}.log", "w") as log:
        if version == "16":
            incdir = paths.ast16_prefix() / "usr/include"
            if not (incdir / "asterisk.h").exists():
                raise BuildError(f"{incdir}/asterisk.h missing: run `make -C integration_tests "
                                 "test-setup`")
            out_dir = paths.cache_dir() / "build" / "rival-16"
            out_dir.mkdir(parents=True, exist_ok=True)
            so = out_dir / "rival_ami.so"
            _run(["gcc", *CC_FLAGS, f"-I{incdir}", "-o", so, source], log,
                 "gcc rival_ami.c (Asterisk 16)")
        elif version == "22":
            work = paths.sid_root() / paths.SID_BUILD_DIR.lstrip("/") / "rival"
            work.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / "rival_ami.c")
            inside = paths.SID_BUILD_DIR + "/rival"
            env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOME": "/root", "LANG": "C.UTF-8"}
            _run(sid_command(["gcc", *CC_FLAGS, "-I/usr/include", "-o", inside + "/rival_ami.so",
                              inside + "/rival_ami.c"], mounts=False), log,
                 "gcc rival_ami.c in the sid chroot (Asterisk 22)", env=env)
            so = work / "rival_ami.so"
        else:
            raise ValueError(f"unknown Asterisk version {version!r}")
        if not so.exists():
            raise BuildError(f"gcc succeeded but {so} does not exist")
        out = Path(tempfile.mkdtemp(prefix=f"acrival{version}-"))
        runtime.register_cleanup(("build", str(out)), lambda: shutil.rmtree(out, ignore_errors=True))
        dest = out / "rival_ami.so"
        shutil.copy2(so, dest)
    _built[key] = dest
    return dest


def main(argv):
    for version in argv or ["16", "22"]:
        print(build_module(version))


if __name__ == "__main__":
    main(sys.argv[1:])
