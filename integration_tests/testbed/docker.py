"""A private Docker daemon (bookworm's docker.io 20.10 from the test bed cache) for tests.

    daemon = DockerDaemon().start()
    daemon.docker("images")                          # the docker CLI, -> CompletedProcess
    daemon.compose(project_dir, "up", "-d", project="x", env={...})   # docker-compose 1.29
    daemon.stop()

dockerd runs as pid 1 of its own PID namespace, in a private mount namespace with its
exec-root on a tmpfs there, and with --iptables=false --ip-forward=false --ip-masq=false
--bridge=none: it never touches the machine's firewall or forwarding, and when it stops every
container, shim and mount goes with it (the kernel kills a PID namespace with its pid 1; the
namespace dies with the test process). It stays in the machine's network namespace, so that
builds with host networking reach Debian's archive; the bridges of user-defined networks are
therefore the one thing it creates on the host, and stop() removes any it saw that are left.
Images and the build cache persist in the test bed cache (docker-state/) between runs; one
daemon per cache at a time (a lock); containers and networks a killed run left are pruned at
the next start.
"""

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

from . import install_docker, paths, runtime

# $1 the tmpfs exec-root; the rest is dockerd's command line.
_WRAPPER = 'set -e; mount -t tmpfs -o mode=0700 tmpfs "$1"; shift; exec "$@"'


def host_bridges():
    return {p.name for p in Path("/sys/class/net").iterdir() if (p / "bridge").exists()}


class DockerDaemon(runtime.ManagedProcess):
    START_TIMEOUT = 60.0

    def __init__(self):
        self.prefix = paths.docker_prefix()
        if not (self.prefix / "usr/sbin/dockerd").exists():
            raise FileNotFoundError(f"dockerd not found under {self.prefix} "
                                    "(run `make -C integration_tests test-setup`)")
        self.state = paths.docker_state()
        self.run_dir = self.state / "run"
        self.socket = self.state / "docker.sock"
        self.log_path = self.state / "dockerd.log"
        self.proc = None
        self._lock = None
        self.bridges = set()  # bridges of this daemon's networks, seen while it ran

    # -- environment ------------------------------------------------------------------------
    def env(self, extra=None):
        env = install_docker.environment(self.prefix)
        env.update({"DOCKER_HOST": f"unix://{self.socket}",
                    "DOCKER_CONFIG": str(self.state / "cli"),
                    "COMPOSE_INTERACTIVE_NO_CLI": "1"})
        env.update(extra or {})
        return env

    def command(self):
        return ["unshare", "--pid", "--kill-child", "--mount", "--propagation", "private",
                "--mount-proc", "sh", "-c", _WRAPPER, "sh", self.run_dir,
                self.prefix / "usr/sbin/dockerd",
                "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                "--data-root", self.state / "data", "--exec-root", self.run_dir / "exec",
                "--pidfile", self.run_dir / "docker.pid", "--host", f"unix://{self.socket}",
                "--containerd-namespace", "asterisk-consul",
                "--containerd-plugins-namespace", "asterisk-consul-plugins"]

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout=None):
        if self.is_running():
            return self
        for d in (self.state / "data", self.run_dir, self.state / "cli"):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.state / ".lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # another run on this cache: wait for it
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # left by a daemon that was killed
        runtime.register_cleanup(("dockerd", str(self.state)), self.stop)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%F %T')} starting dockerd\n".encode())
        self.proc = runtime.spawn(self.command(), log_path=self.log_path, env=self.env())
        try:
            runtime.wait_until(self._answers, timeout or self.START_TIMEOUT, interval=0.2,
                               what="dockerd answering on its socket")
            # What a killed run may have left in the daemon's database.
            self.docker("container", "prune", "-f")
            self.docker("network", "prune", "-f")
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            raise runtime.GiveUp(f"dockerd exited ({self.proc.returncode}); log tail:\n"
                                 + self.log_tail())
        return self.socket.exists() and self.docker("version", check=False).returncode == 0

    def stop(self):
        """Stop the daemon (and with it every container), remove bridges left behind."""
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.note_bridges()
            # SIGTERM to dockerd itself (a graceful shutdown); unshare, its parent, would
            # SIGKILL it when it got the signal instead.
            for child in self._children_of(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
            runtime.reap(self.proc, timeout=30)
            self.proc = None
        for bridge in sorted(self.bridges & host_bridges()):
            subprocess.run(["ip", "link", "delete", bridge], check=False)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        runtime.unregister_cleanup(("dockerd", str(self.state)))

    @staticmethod
    def _children_of(pid):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                return [int(c) for c in fh.read().split()]
        except OSError:
            return []

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    # -- commands ---------------------------------------------------------------------------
    def docker(self, *args, check=True, timeout=600, input=None):
        """Run the docker CLI against this daemon; returns the CompletedProcess."""
        return self._run([self.prefix / "usr/bin/docker", *args], check=check, timeout=timeout,
                         input=input)

    def compose(self, project_dir, *args, project, env=None, check=True, timeout=1800):
        """docker-compose in project_dir (its docker-compose.yml) as project."""
        argv = ["/usr/bin/python3", self.prefix / "usr/bin/docker-compose",
                "--project-directory", project_dir, "-p", project, *args]
        return self._run(argv, check=check, timeout=timeout, env=env, cwd=project_dir)

    def _run(self, argv, check, timeout, env=None, cwd=None, input=None):
        proc = subprocess.run([str(a) for a in argv], env=self.env(env), cwd=cwd,
                              input=input, stdin=None if input is not None else
                              subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace",
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, argv[:4]))} ... failed "
                               f"({proc.returncode}):\n{proc.stdout[-6000:]}")
        return proc

    def note_bridges(self):
        """Remember the host bridges of this daemon's bridge networks (for stop())."""
        ids = self.docker("network", "ls", "--no-trunc", "-q", "--filter",
                          "driver=bridge").stdout.split()
        self.bridges |= {"br-" + i[:12] for i in ids}
        return self.bridges

    def image_exists(self, name):
        return self.docker("image", "inspect", name, check=False).returncode == 0


def remove_images_requested():
    """ASTERISK_CONSUL_DOCKER_RMI=1: tests remove the images they made (default: kept in the
    test bed cache, so the next run builds from its cache)."""
    return os.environ.get("ASTERISK_CONSUL_DOCKER_RMI", "").strip().lower() in ("1", "yes",
                                                                                 "true")
