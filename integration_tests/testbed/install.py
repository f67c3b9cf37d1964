#!/usr/bin/env python3
"""Install the test bed into a cache outside the work tree (stdlib only, idempotent).

    python3 integration_tests/testbed/install.py
        [--only consul,ast16,ast22,venv,docker,bench,fleet] [--force]

Cache root: $ASTERISK_CONSUL_CACHE (default ~/.cache/asterisk-consul):
    consul/   Consul 1.8.7, dpkg -x of Debian bullseye's `consul`      -> consul/usr/bin/consul
    ast16/    Asterisk 16.28 + headers + the libraries this machine lacks (bullseye, dpkg -x)
    sid/      a Debian sid minbase chroot with Asterisk 22, its headers, python3, cffi, requests,
              gcc/make, debhelper/dh-python (`make deb`), and a venv /opt/asterisk-consul/venv
              (--system-site-packages)
    venv/     a host venv with integration_tests/test-requirements.txt
    docker/   bookworm's docker.io and docker-compose (dpkg -x) and a debootstrap'ed sid base
              image tarball (see install_docker.py)
    bench/    only with --only ...,bench (for `make bench`): wrk and the libraries this machine
              lacks for it (dpkg -x of the machine's own suite, bookworm) -> bench/usr/bin/wrk,
              and bench/requirements.txt (py-spy) pip-installed into the host venv
    fleet/    Kamailio (dispatcher, ctl/kamcmd) and SIPp (Debian's sip-tester) with the libraries
              this machine lacks for them (dpkg -x, bookworm) -> fleet/usr/sbin/kamailio,
              fleet/usr/sbin/kamcmd, fleet/usr/bin/sipp (the fleet tests, `make fleet`;
              see install_fleet.py)
    apt/      private apt state (lists, caches, downloaded .debs, debootstrap)
    stamps/   one stamp file per finished component

The machine's apt sources are never changed: a private sources list with the same archive URI and
keyring as /etc/apt/sources.list.d/debian.sources is passed to apt-get with -o options. A second
run on a warm cache only verifies (stamps + a quick version check) and takes seconds.
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import install_docker  # noqa: E402
import install_fleet  # noqa: E402
import paths  # noqa: E402  (stdlib-only sibling module)

COMPONENTS = ("consul", "ast16", "ast22", "venv", "docker", "bench", "fleet")
# Installed only when named in --only (the tests do not need them).
OPTIONAL = ("bench",)
# Bump a recipe version to force that component to be rebuilt on every cache.
RECIPE = {"consul": 1, "ast16": 1, "ast22": 1, "venv": 1, "docker": 1, "bench": 1, "fleet": 1}

CONSUL_VERSION = "1.8.7"
AST16_PACKAGES = ["asterisk", "asterisk-modules", "asterisk-config", "asterisk-dev"]
AST16_VERSION_PREFIX = "16.28"
SID_PACKAGES = ["asterisk", "asterisk-modules", "asterisk-config", "asterisk-dev",
                "python3", "python3-dev", "python3-cffi", "python3-requests",
                "python3-setuptools", "python3-pip", "python3-venv",
                "gcc", "make", "libc6-dev", "ca-certificates",
                # `make deb`: Debian's packaging tools (debhelper comes with asterisk-dev)
                "build-essential", "debhelper", "dh-python", "pybuild-plugin-pyproject", "dpkg-dev",
                # the wedge tests (test_gate_wedged.py) take the embedded interpreter's GIL with
                # gdb; bookworm's gdb 13 cannot call a function on CPUs with AMX ("Couldn't
                # write extended state status"), sid's can, and it serves Asterisk 16 too
                "gdb",
                # the package's lintian check (test_deb.py: lintian --fail-on error,warning)
                "lintian",
                # the fleet's proxy on Asterisk 22 (integration_tests/fleet/proxy.py): Kamailio
                # from the same Debian release as the boxes (dispatcher, ctl and kamcmd are in
                # the main package), run inside the chroot
                "kamailio"]
AST22_VERSION_PREFIX = "22."
BENCH_SUITE = "bookworm"
BENCH_PACKAGES = ["wrk"]
DEFAULT_URI = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
HOST_SOURCES = "/etc/apt/sources.list.d/debian.sources"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SID_CA_BUNDLE = "/etc/asterisk-consul/host-ca-bundle.crt"  # chroot path
APT_NET_OPTS = ["-o", "Acquire::http::Timeout=30", "-o", "Acquire::Retries=3",
                "-o", "Acquire::Check-Valid-Until=false"]


class InstallError(Exception):
    """A step failed; the message says which and why."""


class ArchiveUnreachable(InstallError):
    pass


def log(msg):
    print(f"[testbed] {msg}", flush=True)


def run(argv, *, env=None, cwd=None, capture=False, check=True, what=None, timeout=None):
    """Run a command; on failure raise InstallError naming it, with its output tail."""
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.STDOUT if capture else None,
                              text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise InstallError(f"{what or argv[0]}: command not found: {exc.filename}") from None
    except subprocess.TimeoutExpired:
        raise InstallError(f"{what or ' '.join(argv)}: timed out after {timeout}s") from None
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-30:]) if capture else ""
        raise InstallError(f"{what or ' '.join(argv)} failed with exit code {proc.returncode}"
                           + (f":\n{tail}" if tail else " (see output above)"))
    return proc


# ----------------------------------------------------------------------------- stamps / lock
def stamp_path(name):
    return paths.stamp_dir() / f"{name}.json"


def read_stamp(name):
    try:
        return json.loads(stamp_path(name).read_text())
    except (OSError, ValueError):
        return None


def write_stamp(name, data):
    paths.stamp_dir().mkdir(parents=True, exist_ok=True)
    tmp = stamp_path(name).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(stamp_path(name))


def clear_stamp(name):
    with contextlib.suppress(FileNotFoundError):
        stamp_path(name).unlink()


@contextlib.contextmanager
def cache_lock():
    """One installer per cache at a time (others wait)."""
    root = paths.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another installer is working on {root}; waiting for it ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# ----------------------------------------------------------------------------- private apt
def host_archive():
    """(URI, keyring) of the machine's main Debian archive, from its deb822 sources file."""
    uri, keyring = DEFAULT_URI, DEFAULT_KEYRING
    override = os.environ.get("ASTERISK_CONSUL_DEBIAN_URI")  # e.g. to test an unreachable one
    try:
        text = Path(HOST_SOURCES).read_text()
    except OSError:
        text = ""
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if m:
                fields[m.group(1).lower()] = m.group(2).strip()
        uris = fields.get("uris", "").split()
        if uris and "security" not in uris[0]:
            uri = uris[0]
            keyring = fields.get("signed-by", keyring).split()[0]
            break
    return (override or uri).rstrip("/"), keyring


_unreachable = set()  # archive URIs that failed in this run: fail fast afterwards


class PrivateApt:
    """apt-get with its own sources list, lists dir and cache for one suite."""

    def __init__(self, suite):
        self.suite = suite
        self.uri, self.keyring = host_archive()
        self.root = paths.apt_dir() / suite
        self.sources = self.root / "sources.list"
        self.lists = self.root / "lists"
        self.cache = self.root / "cache"
        self.debs = self.root / "debs"

    def opts(self):
        return ["-o", f"Dir::Etc::sourcelist={self.sources}", "-o", "Dir::Etc::sourceparts=-",
                "-o", f"Dir::State::Lists={self.lists}", "-o", f"Dir::Cache={self.cache}",
                "-o", "APT::Get::List-Cleanup=0", "-o", "Debug::NoLocking=1", *APT_NET_OPTS]

    def update(self, max_age=6 * 3600):
        for d in (self.lists / "partial", self.cache / "archives" / "partial", self.debs):
            d.mkdir(parents=True, exist_ok=True)
        line = f"deb [signed-by={self.keyring}] {self.uri} {self.suite} main\n"
        marker = self.lists / ".updated"
        if (marker.exists() and self.sources.exists() and self.sources.read_text() == line
                and any(self.lists.glob("*_Packages*"))
                and time.time() - marker.stat().st_mtime < max_age):
            return
        if self.uri in _unreachable:
            raise ArchiveUnreachable(f"cannot reach the Debian archive {self.uri} "
                                     "(failed earlier in this run)")
        self.sources.write_text(line)
        log(f"apt-get update ({self.uri} {self.suite}, private lists in {self.lists})")
        proc = run(["apt-get", *self.opts(), "update"], capture=True, check=False)
        failed = proc.returncode != 0 or re.search(r"^(E:|W: Failed to fetch|Err:)", proc.stdout,
                                                    re.M)
        if failed or not any(self.lists.glob("*_Packages*")):
            _unreachable.add(self.uri)
            raise ArchiveUnreachable(
                f"cannot reach the Debian archive {self.uri} (suite {self.suite}): "
                f"apt-get update could not fetch its index (exit code {proc.returncode}):\n"
                + "\n".join(proc.stdout.splitlines()[-15:]))
        (self.lists / ".updated").touch()

    def simulate_install(self, packages):
        """[(package, version)] that `apt-get -s install` against the machine's own installed
        packages would install: the packages plus whatever this machine lacks for them."""
        proc = run(["apt-get", *self.opts(), "-s", "-q", "--no-install-recommends", "install",
                    *packages], capture=True, check=False, what=f"apt-get -s install ({self.suite})")
        if proc.returncode != 0:
            raise InstallError(f"apt-get -s install {' '.join(packages)} ({self.suite}) failed:\n"
                               + "\n".join(proc.stdout.splitlines()[-30:]))
        found = re.findall(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+)", proc.stdout, re.M)
        if not found:
            raise InstallError(f"apt-get -s install {' '.join(packages)} planned nothing:\n"
                               + proc.stdout[-2000:])
        return found

    def download(self, pkgs):
        """Download [(name, version)] into self.debs (skipping ones already there); return paths."""
        self.debs.mkdir(parents=True, exist_ok=True)
        want, result = [], []
        for name, version in pkgs:
            quoted = version.replace(":", "%3a")
            hits = list(self.debs.glob(f"{name}_{quoted}_*.deb"))
            if hits:
                result.append(hits[0])
            else:
                want.append((name, version))
        if want:
            log(f"downloading {len(want)} package(s) from {self.uri} {self.suite}")
            proc = run(["apt-get", *self.opts(), "-q", "download",
                        *[f"{n}={v}" for n, v in want]], cwd=self.debs, capture=True, check=False)
            if proc.returncode != 0:
                raise ArchiveUnreachable(
                    f"apt-get download from {self.uri} {self.suite} failed "
                    f"(exit {proc.returncode}):\n" + "\n".join(proc.stdout.splitlines()[-15:]))
            for name, version in want:
                quoted = version.replace(":", "%3a")
                hits = list(self.debs.glob(f"{name}_{quoted}_*.deb"))
                if not hits:
                    raise InstallError(f"apt-get download did not produce {name} {version}")
                result.append(hits[0])
        return result


def candidate_version(apt, package):
    proc = run(["apt-cache", *apt.opts(), "policy", package], capture=True, check=False)
    m = re.search(r"Candidate:\s*(\S+)", proc.stdout or "")
    if not m or m.group(1) == "(none)":
        raise InstallError(f"package {package} not found in {apt.uri} {apt.suite}")
    return m.group(1)


def dpkg_extract(debs, dest):
    for deb in debs:
        run(["dpkg-deb", "-x", deb, dest], what=f"dpkg -x {Path(deb).name}")


def replace_dir(tmp, final):
    """Move a finished tmp dir into place (removing an older one)."""
    if final.exists():
        remove_tree(final)
    tmp.rename(final)


def publish(tmp, final, verify, failure):
    """Move a finished tmp dir into place and check it: verify()'s findings, or InstallError
    with `failure` (what was extracted where, and what does not answer)."""
    replace_dir(tmp, final)
    found = verify()
    if not found:
        raise InstallError(failure)
    return found


def mounts_under(path):
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            target = line.split()[1].replace("\\040", " ")
            if target == path or target.startswith(path + "/"):
                found.append(target)
    return found


def remove_tree(path):
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    mounted = mounts_under(path)
    for target in sorted(mounted, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)
    if mounts_under(path):
        raise InstallError(f"refusing to delete {path}: still has mounts {mounts_under(path)}")
    shutil.rmtree(path)


def fresh_dir(path):
    remove_tree(path)
    path.mkdir(parents=True)
    return path


# ----------------------------------------------------------------------------- consul
def verify_consul():
    binary = paths.consul_binary()
    if not binary.exists():
        return None
    proc = run([binary, "version"], capture=True, check=False)
    m = re.search(r"Consul v(\S+)", proc.stdout or "")
    if proc.returncode != 0 or not m or m.group(1) != CONSUL_VERSION:
        return None
    return f"Consul {m.group(1)} ({binary})"


def install_consul():
    found = verify_consul()
    if found:  # e.g. extracted by hand before: verified, keep it
        return found
    apt = PrivateApt("bullseye")
    apt.update()
    version = candidate_version(apt, "consul")
    if not version.startswith(CONSUL_VERSION):
        raise InstallError(f"bullseye's consul is {version}, expected {CONSUL_VERSION}")
    debs = apt.download([("consul", version)])
    tmp = fresh_dir(paths.cache_dir() / "consul.partial")
    dpkg_extract(debs, tmp)
    return publish(tmp, paths.consul_prefix(), verify_consul,
                   f"consul extracted but `{paths.consul_binary()} version` is not {CONSUL_VERSION}")


# ----------------------------------------------------------------------------- asterisk 16
def ast16_env():
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = paths.ast16_library_path()
    return env


def verify_ast16(deep=False):
    prefix = paths.ast16_prefix()
    binary = paths.ast16_binary()
    needed = [binary, prefix / "usr/include/asterisk.h", prefix / "usr/include/asterisk/module.h",
              prefix / "usr/lib/asterisk/modules"]
    if not all(p.exists() for p in needed):
        return None
    proc = run([binary, "-V"], env=ast16_env(), capture=True, check=False)
    out = (proc.stdout or "").strip()
    if proc.returncode != 0 or not out.startswith(f"Asterisk {AST16_VERSION_PREFIX}"):
        return None
    if deep:
        missing = ldd_missing([binary, *sorted((prefix / "usr/lib/asterisk/modules").glob("*.so"))])
        if missing:
            raise InstallError("Asterisk 16 libraries still missing after install:\n"
                               + "\n".join(missing[:20]))
    return f"{out} ({binary})"


def ldd_missing(files):
    missing = []
    env = ast16_env()
    for chunk in range(0, len(files), 50):
        proc = run(["ldd", *files[chunk:chunk + 50]], env=env, capture=True, check=False)
        current = None
        for line in proc.stdout.splitlines():
            if not line.startswith("\t"):
                current = line.rstrip(":")
            elif "not found" in line:
                missing.append(f"{current}: {line.strip()}")
    return missing


def install_ast16():
    apt = PrivateApt("bullseye")
    apt.update()
    plan = apt.simulate_install(AST16_PACKAGES)
    names = dict(plan)
    if not names.get("asterisk", "").split(":")[-1].startswith(AST16_VERSION_PREFIX):
        raise InstallError(f"bullseye's asterisk is {names.get('asterisk')}, "
                           f"expected {AST16_VERSION_PREFIX}")
    log(f"Asterisk 16: {len(plan)} packages (the 4 asterisk ones + libraries this machine lacks)")
    debs = apt.download(plan)
    tmp = fresh_dir(paths.cache_dir() / "ast16.partial")
    dpkg_extract(debs, tmp)
    (tmp / "packages.txt").write_text("".join(f"{n} {v}\n" for n, v in plan))
    return publish(tmp, paths.ast16_prefix(), lambda: verify_ast16(deep=True),
                   f"Asterisk 16 extracted to {paths.ast16_prefix()} but `asterisk -V` does not "
                   f"answer {AST16_VERSION_PREFIX}")


# ----------------------------------------------------------------------------- sid chroot
def in_sid(root, argv, *, mounts=True, env_extra=None, **kw):
    """Run argv inside the chroot at `root`. With mounts, /proc and /dev (recursively, so also
    /dev/pts) are mounted in a private mount namespace that dies with the command: no mount is
    ever left on the machine."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
           "TERM": os.environ.get("TERM", "dumb")}
    env.update(env_extra or {})
    if mounts:
        script = ('set -e; mount -t proc proc "$1/proc"; mount --rbind /dev "$1/dev"; '
                  'r="$1"; shift; exec chroot "$r" "$@"')
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
               str(root), *argv]
    else:
        cmd = ["chroot", str(root), *argv]
    return run(cmd, env=env, **kw)


def sid_python_version(root):
    proc = in_sid(root, [paths.sid_venv_python(), "-c",
                         "import sys, cffi, requests; print(sys.version.split()[0], "
                         "cffi.__version__, requests.__version__)"],
                  mounts=False, capture=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def verify_ast22():
    root = paths.sid_root()
    needed = [root / "usr/sbin/asterisk", root / "usr/include/asterisk.h",
              root / "usr/lib/x86_64-linux-gnu/asterisk/modules",
              root / paths.SID_VENV.lstrip("/") / "bin/python"]
    if not all(p.exists() for p in needed):
        return None
    proc = in_sid(root, ["/usr/sbin/asterisk", "-V"], mounts=False, capture=True, check=False)
    out = (proc.stdout or "").strip()
    if proc.returncode != 0 or not out.startswith(f"Asterisk {AST22_VERSION_PREFIX}"):
        return None
    py = sid_python_version(root)
    if not py:
        return None
    pyver, cffi_v, req_v = py.split()
    return (f"{out} (chroot {root}); chroot venv {paths.SID_VENV}: Python {pyver}, "
            f"cffi {cffi_v}, requests {req_v}")


def get_debootstrap():
    """debootstrap itself, from sid, via apt-get download + dpkg -x (not installed)."""
    apt = PrivateApt("sid")
    apt.update()
    version = candidate_version(apt, "debootstrap")
    dest = paths.apt_dir() / "debootstrap"
    marker = dest / ".version"
    if not (marker.exists() and marker.read_text() == version):
        debs = apt.download([("debootstrap", version)])
        fresh_dir(dest)
        dpkg_extract(debs, dest)
        marker.write_text(version)
    return dest, apt


def debootstrap_sid(tmp):
    """A minbase Debian sid into the empty dir tmp; returns the PrivateApt of its archive."""
    dbs, apt = get_debootstrap()
    log(f"debootstrap --variant=minbase sid into {tmp} (takes a while)")
    env = dict(os.environ)
    env["DEBOOTSTRAP_DIR"] = str(dbs / "usr/share/debootstrap")
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    dcache = paths.apt_dir() / "sid" / "debootstrap-cache"
    dcache.mkdir(parents=True, exist_ok=True)
    # In a private mount namespace: the /proc and /sys debootstrap mounts die with it.
    proc = run(["unshare", "--mount", "--propagation", "private",
                dbs / "usr/sbin/debootstrap", "--variant=minbase", f"--keyring={apt.keyring}",
                f"--cache-dir={dcache}", "sid", tmp, apt.uri],
               env=env, capture=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        if re.search(r"Failed getting release file|couldn't download|Couldn't download|"
                     r"Temporary failure|Could not resolve|unable to resolve", proc.stdout):
            raise ArchiveUnreachable(f"debootstrap could not reach the Debian archive "
                                     f"{apt.uri} (sid):\n{tail}")
        raise InstallError(f"debootstrap failed (exit {proc.returncode}):\n{tail}")
    return apt


def install_ast22():
    root = paths.sid_root()
    tmp = paths.cache_dir() / "sid.partial"
    remove_tree(tmp)
    tmp.mkdir(parents=True)
    apt = debootstrap_sid(tmp)

    # Networking and trust inside the chroot.
    for name in ("resolv.conf", "hosts"):
        src = Path("/etc") / name
        if src.exists():
            shutil.copyfile(src, tmp / "etc" / name)
    (tmp / "etc/apt/sources.list").write_text(f"deb {apt.uri} sid main\n")
    (tmp / "etc/apt/apt.conf.d/99asterisk-consul").write_text(
        'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n'
        'Acquire::http::Timeout "30";\nAcquire::Retries "3";\n')
    policy = tmp / "usr/sbin/policy-rc.d"  # never start services inside the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    copy_ca_bundle(tmp)

    log("apt-get install inside the chroot: " + " ".join(SID_PACKAGES))
    try:
        in_sid(tmp, ["apt-get", "-o", "Acquire::Check-Valid-Until=false", "-q", "update"],
               capture=True, what="apt-get update inside the sid chroot")
    except InstallError as exc:
        raise ArchiveUnreachable(f"cannot reach the Debian archive {apt.uri} (sid) from the "
                                 f"chroot: {exc}") from None
    in_sid(tmp, ["apt-get", "-o", "Acquire::Check-Valid-Until=false", "-q", "-y",
                 "--no-install-recommends", "install", *SID_PACKAGES],
           capture=True, what="apt-get install inside the sid chroot")
    copy_ca_bundle(tmp)  # ca-certificates may have rewritten the bundle
    in_sid(tmp, ["python3", "-m", "venv", "--system-site-packages", paths.SID_VENV],
           capture=True, what="python3 -m venv inside the sid chroot")
    in_sid(tmp, ["apt-get", "clean"], capture=True, check=False)
    (tmp / paths.SID_BUILD_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
    replace_dir(tmp, root)
    found = verify_ast22()
    if not found:
        raise InstallError(f"the sid chroot at {root} was built but Asterisk 22 / its venv do "
                           "not answer")
    return found


def copy_ca_bundle(root):
    """The machine's CA bundle (which may include local CAs) for pip and requests in the chroot."""
    if not Path(HOST_CA_BUNDLE).exists():
        return
    dest = root / SID_CA_BUNDLE.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOST_CA_BUNDLE, dest)
    (root / "etc/pip.conf").write_text(f"[global]\ncert = {SID_CA_BUNDLE}\n")
    certs = root / "etc/ssl/certs"
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOST_CA_BUNDLE, certs / "ca-certificates.crt")


def refresh_sid_files():
    """Cheap per-run refresh of host files the chroot borrows (DNS, CA bundle)."""
    root = paths.sid_root()
    for name in ("resolv.conf", "hosts"):
        src = Path("/etc") / name
        if src.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(src, root / "etc" / name)
    with contextlib.suppress(OSError):
        copy_ca_bundle(root)


# ----------------------------------------------------------------------------- host venv
def requirements_file():
    return paths.repo_root() / "integration_tests" / "test-requirements.txt"


def host_python():
    """The machine's python3 for the host venv: $ASTERISK_CONSUL_HOST_PYTHON, else Debian's
    /usr/bin/python3 (stable, with python3-dev/venv), else the python3 on PATH."""
    env = os.environ.get("ASTERISK_CONSUL_HOST_PYTHON")
    if env:
        return env
    if Path("/usr/bin/python3").exists():
        return "/usr/bin/python3"
    return shutil.which("python3") or sys.executable


def venv_inputs():
    req = requirements_file()
    digest = hashlib.sha256(req.read_bytes()).hexdigest() if req.exists() else "none"
    return {"requirements_sha256": digest, "python": host_python()}


def verify_venv():
    py = paths.host_venv_python()
    if not py.exists():
        return None
    code = ("import sys, cffi, requests, pytest, hypothesis, mypy.version; "
            "print(sys.version.split()[0], cffi.__version__, requests.__version__, "
            "pytest.__version__, hypothesis.__version__, mypy.version.__version__)")
    proc = run([py, "-c", code], capture=True, check=False)
    if proc.returncode != 0:
        return None
    v = proc.stdout.split()
    return (f"host venv {paths.host_venv()}: Python {v[0]}, cffi {v[1]}, requests {v[2]}, "
            f"pytest {v[3]}, hypothesis {v[4]}, mypy {v[5]}")


def install_venv():
    req = requirements_file()
    if not req.exists():
        raise InstallError(f"{req} is missing")
    venv = paths.host_venv()
    tmp = paths.cache_dir() / "venv.partial"
    remove_tree(tmp)
    # Build in place at the final path (venv scripts embed their path), but only after the old
    # one is gone; the stamp marks completion.
    remove_tree(venv)
    run([host_python(), "-m", "venv", venv], what=f"{host_python()} -m venv {venv}")
    pip = [venv / "bin/python", "-m", "pip", "--disable-pip-version-check", "-q"]
    proc = run([*pip, "install", "-r", req], capture=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        if re.search(r"NewConnectionError|Max retries|Could not find a version|SSLError|"
                     r"Temporary failure", proc.stdout):
            raise ArchiveUnreachable(f"pip could not reach PyPI to install {req}:\n{tail}")
        raise InstallError(f"pip install -r {req} failed:\n{tail}")
    found = verify_venv()
    if not found:
        raise InstallError(f"host venv {venv} was made but cannot import its test requirements")
    return found


# ----------------------------------------------------------------------------- bench tools
def bench_env():
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = paths.bench_library_path()
    return env


def bench_requirements_file():
    return paths.repo_root() / "bench" / "requirements.txt"


def bench_inputs():
    req = bench_requirements_file()
    digest = hashlib.sha256(req.read_bytes()).hexdigest() if req.exists() else "none"
    return {"packages": BENCH_PACKAGES, "suite": BENCH_SUITE, "requirements_sha256": digest}


def verify_bench():
    """wrk answers from the cache with its private libraries, and the host venv has the bench's
    Python requirements (the venv component may have rebuilt the venv since)."""
    wrk = paths.wrk_binary()
    if not wrk.exists():
        return None
    # `wrk -v` prints its version and usage and exits 1.
    proc = run([wrk, "-v"], env=bench_env(), capture=True, check=False)
    m = re.search(r"^wrk (\S+)", proc.stdout or "", re.M)
    if not m or "error while loading shared libraries" in (proc.stdout or ""):
        return None
    found = f"wrk {m.group(1)} ({wrk})"
    req = bench_requirements_file()
    if req.exists():
        venv_py = paths.host_venv_python()
        if not venv_py.exists():
            return None
        spy = paths.host_venv() / "bin" / "py-spy"
        probe = run([spy, "--version"], capture=True, check=False) if spy.exists() else None
        if probe is None or probe.returncode != 0:
            return None
        found += f"; {probe.stdout.strip()} in {paths.host_venv()}"
    return found


def install_bench():
    apt = PrivateApt(BENCH_SUITE)
    apt.update()
    # What this machine lacks for wrk; wrk itself even if the machine happens to have it.
    proc = run(["apt-get", *apt.opts(), "-s", "-q", "--no-install-recommends", "install",
                *BENCH_PACKAGES], capture=True, check=False,
               what=f"apt-get -s install ({BENCH_SUITE})")
    if proc.returncode != 0:
        raise InstallError(f"apt-get -s install {' '.join(BENCH_PACKAGES)} ({BENCH_SUITE}) "
                           "failed:\n" + "\n".join(proc.stdout.splitlines()[-30:]))
    plan = dict(re.findall(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+)", proc.stdout, re.M))
    for name in BENCH_PACKAGES:
        plan.setdefault(name, candidate_version(apt, name))
    plan = sorted(plan.items())
    log(f"bench: {len(plan)} package(s) from {BENCH_SUITE}: "
        + ", ".join(f"{n} {v}" for n, v in plan))
    debs = apt.download(plan)
    tmp = fresh_dir(paths.cache_dir() / "bench.partial")
    dpkg_extract(debs, tmp)
    (tmp / "packages.txt").write_text("".join(f"{n} {v}\n" for n, v in plan))
    replace_dir(tmp, paths.bench_prefix())
    req = bench_requirements_file()
    if req.exists():
        if not paths.host_venv_python().exists():
            raise InstallError(f"{paths.host_venv()} is missing: install the venv component first")
        proc = run([paths.host_venv_python(), "-m", "pip", "--disable-pip-version-check", "-q",
                    "install", "-r", req], capture=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-15:])
            if re.search(r"NewConnectionError|Max retries|Could not find a version|SSLError|"
                         r"Temporary failure", proc.stdout):
                raise ArchiveUnreachable(f"pip could not reach PyPI to install {req}:\n{tail}")
            raise InstallError(f"pip install -r {req} into {paths.host_venv()} failed:\n{tail}")
    found = verify_bench()
    if not found:
        raise InstallError(f"wrk extracted to {paths.bench_prefix()} but `wrk -v` does not answer"
                           " (or py-spy is missing from the host venv)")
    return found


# ----------------------------------------------------------------------------- driver
INSTALLERS = {"consul": (install_consul, verify_consul),
              "ast16": (install_ast16, verify_ast16),
              "ast22": (install_ast22, verify_ast22),
              "venv": (install_venv, verify_venv),
              "docker": (lambda: install_docker.install(sys.modules[__name__]),
                         install_docker.verify),
              "bench": (install_bench, verify_bench),
              "fleet": (lambda: install_fleet.install(sys.modules[__name__]),
                        install_fleet.verify)}


def inputs_for(name):
    data = {"recipe": RECIPE[name]}
    if name == "venv":
        data.update(venv_inputs())
    elif name == "ast16":
        data["packages"] = AST16_PACKAGES
    elif name == "ast22":
        data["packages"] = SID_PACKAGES
    elif name == "bench":
        data.update(bench_inputs())
    elif name == "docker":
        data.update(install_docker.inputs())
    elif name == "fleet":
        data.update(install_fleet.inputs())
    return data


def upgrade_ast22():
    """The package list changed but the chroot works: install into it in place (a running
    Asterisk 22 of another test session keeps its files)."""
    root = paths.sid_root()
    refresh_sid_files()
    in_sid(root, ["apt-get", "-o", "Acquire::Check-Valid-Until=false", "-q", "update"],
           capture=True, what="apt-get update inside the sid chroot")
    in_sid(root, ["apt-get", "-o", "Acquire::Check-Valid-Until=false", "-q", "-y",
                  "--no-install-recommends", "install", *SID_PACKAGES],
           capture=True, what="apt-get install inside the sid chroot")
    copy_ca_bundle(root)
    in_sid(root, ["apt-get", "clean"], capture=True, check=False)
    return verify_ast22()


def upgrade_venv():
    """The requirements changed but the venv works: pip install into it in place."""
    req = requirements_file()
    proc = run([paths.host_venv_python(), "-m", "pip", "--disable-pip-version-check", "-q",
                "install", "-r", req], capture=True, check=False)
    if proc.returncode != 0:
        raise InstallError(f"pip install -r {req} into {paths.host_venv()} failed:\n"
                           + "\n".join(proc.stdout.splitlines()[-15:]))
    return verify_venv()


def upgrade_ast16():
    """The package list changed but the prefix works: extract only what is not there yet."""
    apt = PrivateApt("bullseye")
    apt.update()
    plan = apt.simulate_install(AST16_PACKAGES)
    listing = paths.ast16_prefix() / "packages.txt"
    have = set()
    if listing.exists():
        have = {tuple(line.split()) for line in listing.read_text().splitlines() if line.strip()}
    missing = [p for p in plan if tuple(p) not in have]
    if missing:
        log(f"Asterisk 16: extracting {len(missing)} more package(s)")
        dpkg_extract(apt.download(missing), paths.ast16_prefix())
        listing.write_text("".join(f"{n} {v}\n" for n, v in sorted(have | set(plan))))
    return verify_ast16(deep=True)


UPGRADERS = {"ast16": upgrade_ast16, "ast22": upgrade_ast22, "venv": upgrade_venv}


def ensure(name, force=False):
    install, verify = INSTALLERS[name]
    wanted = inputs_for(name)
    stamp = read_stamp(name)
    if not force and stamp:
        if name == "ast22":
            refresh_sid_files()
        found = verify()
        if found and stamp.get("inputs") == wanted:
            log(f"{name}: ok (cached) - {found}")
            return found
        if found and name in UPGRADERS and stamp.get("inputs", {}).get("recipe") == RECIPE[name]:
            log(f"{name}: inputs changed; updating in place ...")
            found = UPGRADERS[name]()
            if found:
                write_stamp(name, {"inputs": wanted, "found": found, "installed_at": time.time()})
                log(f"{name}: updated - {found}")
                return found
        log(f"{name}: {'inputs changed' if found else 'verification failed'}; reinstalling")
    clear_stamp(name)
    start = time.monotonic()
    log(f"{name}: installing ...")
    found = install()
    write_stamp(name, {"inputs": wanted, "found": found, "installed_at": time.time()})
    log(f"{name}: installed in {time.monotonic() - start:.0f}s - {found}")
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(c for c in COMPONENTS if c not in OPTIONAL),
                        help="comma-separated subset of " + ",".join(COMPONENTS)
                        + " (default: all but " + ",".join(OPTIONAL) + ")")
    parser.add_argument("--force", action="store_true", help="reinstall even if stamped")
    args = parser.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in only if c not in COMPONENTS]
    if unknown:
        parser.error(f"unknown component(s): {', '.join(unknown)}")
    if os.geteuid() != 0 and any(c in only for c in ("ast22", "docker")):
        log("warning: building the sid chroot and the docker base image needs root (chroot, "
            "mount namespaces)")
    log(f"cache: {paths.cache_dir()}")
    start = time.monotonic()
    failures = []
    with cache_lock():
        for name in COMPONENTS:
            if name not in only:
                continue
            try:
                ensure(name, force=args.force)
            except ArchiveUnreachable as exc:
                failures.append(name)
                log(f"{name}: FAILED - network: {exc}")
            except InstallError as exc:
                failures.append(name)
                log(f"{name}: FAILED - {exc}")
    took = time.monotonic() - start
    if failures:
        log(f"FAILED: {', '.join(failures)} (after {took:.1f}s); cache {paths.cache_dir()}")
        return 1
    log(f"all ok: {', '.join(only)} in {took:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
