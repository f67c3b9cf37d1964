"""A fresh, throwaway copy of the test bed's sid chroot, for tests that install packages.

    root = FreshSid().start()
    root.run(["apt-get", "install", "-y", "./x.deb"])     # host network: Debian's archive
    root.spawn(["/usr/sbin/asterisk", "-f"], net=True)     # in the copy's network namespace
    root.spawn_host([consul, "agent", "-dev"], net=True)   # a host binary, same namespace
    root.stop()

The copy is an overlay whose lower layer is the chroot (never written), mounted in a private
mount namespace that also has its own network namespace (loopback only: no route out, so the
default ports of a packaged Asterisk or Consul clash with nothing). One holder process keeps
both namespaces; stop() kills what was started in them, then the holder, and the mounts and the
network namespace vanish with it, whatever happens to the test run (the holder dies with us).
apt's archive cache is a directory of the test bed cache bind-mounted into the copy, so the
packages a test removes and installs again are downloaded once.
"""

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from . import paths, runtime

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# $1 lower (the chroot), $2 the copy's private dir, $3 apt's archive cache.
_HOLDER = """set -e
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/root"
mount -t proc proc "$2/root/proc"
mount --rbind /dev "$2/root/dev"
mount --bind "$3" "$2/root/var/cache/apt/archives"
ip link set lo up
echo ready
exec sleep infinity
"""


def archives_dir():
    """apt's archive cache for fresh copies, kept in the test bed cache between runs."""
    return paths.apt_dir() / "sid" / "fresh-archives"


class FreshSid(runtime.ManagedProcess):
    """An overlay copy of the sid chroot in its own mount and network namespaces."""

    START_TIMEOUT = 20.0

    def __init__(self):
        self.lower = paths.sid_root()
        if not (self.lower / "usr/bin/apt-get").exists():
            raise FileNotFoundError(f"no sid chroot at {self.lower} "
                                    "(run `make -C integration_tests test-setup`)")
        base = paths.cache_dir() / "tmp"
        base.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="fresh", dir=base))
        for sub in ("upper", "work", "root"):
            (self.dir / sub).mkdir()
        (archives_dir() / "partial").mkdir(parents=True, exist_ok=True)
        self.root = self.dir / "root"  # the copy's /, seen from inside the mount namespace
        self.proc = None
        self._children = []
        runtime.register_cleanup(("freshroot", str(self.dir)), self.stop)

    def start(self, timeout=None):
        log = self.dir / "holder.log"
        self.proc = runtime.spawn(["unshare", "--mount", "--net", "--propagation", "private",
                                   "sh", "-c", _HOLDER, "sh", self.lower, self.dir,
                                   archives_dir()], log_path=log)

        def ready():
            if self.proc.poll() is not None:
                raise runtime.GiveUp(f"the holder exited: {log.read_text(errors='replace')}")
            return "ready" in log.read_text(errors="replace")

        runtime.wait_until(ready, timeout or self.START_TIMEOUT, what="the fresh sid copy")
        return self

    # -- commands ---------------------------------------------------------------------------
    def _enter(self, net):
        return ["nsenter", "-t", str(self.pid), "-m", *(["-n"] if net else [])]

    def command(self, argv, net=False, cwd="/"):
        """argv inside the copy (chrooted, a clean environment); net: in its own network
        namespace instead of the machine's."""
        return [*self._enter(net), "env", "-i", f"PATH={CHROOT_PATH}", "LANG=C.UTF-8",
                "DEBIAN_FRONTEND=noninteractive", "chroot", str(self.root), "sh", "-c",
                'cd "$0" && exec "$@"', cwd, *[str(a) for a in argv]]

    def host_command(self, argv, net=True):
        """A host program (e.g. the test bed's consul) in the copy's network namespace."""
        return [*(["nsenter", "-t", str(self.pid), "-n"] if net else []), *map(str, argv)]

    def run(self, argv, net=False, cwd="/", timeout=300, check=True):
        """Run argv in the copy; returns the CompletedProcess (stdout holds stderr too)."""
        proc = subprocess.run(self.command(argv, net, cwd), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} in the fresh sid copy failed "
                               f"({proc.returncode}):\n{proc.stdout[-4000:]}")
        return proc

    def spawn(self, argv, net=True, cwd="/", log_path=None):
        """Start a long-running argv in the copy; stopped by stop()."""
        proc = runtime.spawn(self.command(argv, net, cwd), log_path=log_path)
        self._children.append(proc)
        return proc

    def spawn_host(self, argv, net=True, log_path=None):
        proc = runtime.spawn(self.host_command(argv, net), log_path=log_path)
        self._children.append(proc)
        return proc

    # -- files ------------------------------------------------------------------------------
    def copy_in(self, host_path, path):
        """Copy a host file (or directory, recursively) to path inside the copy."""
        subprocess.run([*self._enter(False), "cp", "-a", str(host_path), f"{self.root}{path}"],
                       check=True)

    def read(self, path):
        return self.run(["cat", path]).stdout

    def write(self, path, text):
        subprocess.run([*self._enter(False), "sh", "-c", 'cat > "$0"', f"{self.root}{path}"],
                       input=text, text=True, check=True)

    # -- teardown ---------------------------------------------------------------------------
    def stop(self):
        for child in reversed(self._children):
            runtime.reap(child)
        self._children.clear()
        if self.proc is not None:
            runtime.reap(self.proc, sig=signal.SIGKILL)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        runtime.unregister_cleanup(("freshroot", str(self.dir)))
