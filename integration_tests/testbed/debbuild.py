"""Build the Debian package (debian/) with debhelper inside the test bed's sid chroot.

    python3 -m integration_tests.testbed.debbuild [--out DIR] [--version VERSION]
    build_deb(out_dir, version=None) -> host path of asterisk-consul_<version>_<arch>.deb

The tree copied is what git would commit (as for the module builds), into a fresh directory
under the chroot's /build; `dpkg-buildpackage -b` runs there with Debian's python3 and
asterisk-dev, and the binary package is copied to out_dir. With version, the copy's
debian/changelog gets a new top entry first (an upgrade to test, a local rebuild).
Stdlib only: `make deb` runs it with the machine's python3.
"""

import argparse
import email.utils
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import paths
from .asterisk import sid_command
from .build import BuildError, copy_tree

PACKAGE = "asterisk-consul"
SID_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8"}
# Tools dpkg-buildpackage needs in the chroot (the installer puts them there).
NEEDED = ("usr/bin/dpkg-buildpackage", "usr/bin/dh", "usr/bin/dh_python3", "usr/bin/dh_asterisk",
          "usr/include/asterisk.h")


def changelog_version(changelog):
    """The version of the top entry of a debian/changelog."""
    m = re.match(r"^\S+ \(([^)]+)\)", Path(changelog).read_text())
    if not m:
        raise BuildError(f"{changelog}: no version in its first line")
    return m.group(1)


def add_changelog_entry(changelog, version):
    """Put a new top entry for version, by the maintainer of the current top entry."""
    text = Path(changelog).read_text()
    m = re.search(r"^ -- (.+?)  ", text, re.M)
    maintainer = m.group(1) if m else "asterisk-consul maintainers <root@localhost>"
    entry = (f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
             f"  * Local build {version}.\n\n"
             f" -- {maintainer}  {email.utils.formatdate(usegmt=False)}\n\n")
    Path(changelog).write_text(entry + text)


def build_deb(out_dir, version=None, repo=None, log=sys.stdout):
    """Build the package in the sid chroot; return the host path of the .deb in out_dir."""
    root = paths.sid_root()
    missing = [p for p in NEEDED if not (root / p).exists()]
    if missing:
        raise BuildError(f"the sid chroot at {root} lacks {', '.join(missing)}: run "
                         "`make -C integration_tests test-setup`")
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    (root / "build").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="deb", dir=root / "build"))
    try:
        src = work / PACKAGE
        copy_tree(src, repo)
        if version:
            add_changelog_entry(src / "debian/changelog", version)
        version = changelog_version(src / "debian/changelog")
        chroot_src = "/" + str(src.relative_to(root))
        log_path = out_dir / f"build-{version}.log"
        start = time.monotonic()
        with open(log_path, "w") as fh:
            # A fresh copy needs no `debian/rules clean` first (-nc); the debug symbols
            # package would be left behind anyway (noautodbgsym).
            proc = subprocess.run(sid_command(["dpkg-buildpackage", "-b", "-nc", "-us", "-uc"],
                                              cwd=chroot_src),
                                  env={**SID_ENV, "DEB_BUILD_OPTIONS": "noautodbgsym"}, stdin=subprocess.DEVNULL, stdout=fh,
                                  stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
            raise BuildError(f"dpkg-buildpackage failed (exit {proc.returncode}); log "
                             f"{log_path}:\n{tail}")
        debs = [d for d in work.glob(f"{PACKAGE}_{version}_*.deb")]
        if len(debs) != 1:
            raise BuildError(f"dpkg-buildpackage succeeded but made {debs or 'no .deb'}; "
                             f"log {log_path}")
        dest = out_dir / debs[0].name
        shutil.copyfile(debs[0], dest)
        print(f"built {dest} ({dest.stat().st_size // 1024} KiB) in "
              f"{time.monotonic() - start:.0f}s; log {log_path}", file=log, flush=True)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(paths.repo_root() / "build" / "deb"),
                        help="where the .deb goes (default: build/deb)")
    parser.add_argument("--version", help="build this version (a new changelog entry)")
    args = parser.parse_args(argv)
    try:
        build_deb(args.out, args.version)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
