"""A real Asterisk (16 from the dpkg -x prefix, or 22 inside the sid chroot) for tests.

    ast = AsteriskInstance("22", modules=["res_discovery_consul.so"])
    ast.install_module(so_path)
    ast.start()
    ast.rx("module show like consul")
    ast.wait_log(r"registered in Consul")
    ast.stop()

Each instance has a short private dir /tmp/acXXXXXX (for 22: $SID/tmp/acXXXXXX on the host, which
is /tmp/acXXXXXX in the chroot) holding etc/, mod/ (astmoddir), run/ (the control socket), log/ ...
Asterisk 22 runs as `unshare --mount ... chroot $SID /usr/sbin/asterisk`: /proc and /dev are
mounted in a private mount namespace that dies with the process, so no mount is ever left on the
machine, whatever happens to the test run.
"""

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import paths, runtime

VERSIONS = ("16", "22")
SID_MODULE_DIR = "/usr/lib/x86_64-linux-gnu/asterisk/modules"
AST16_MODULE_SUBDIR = "usr/lib/asterisk/modules"
_RX_TRAILER = re.compile(r"^Asterisk ending \(-?\d+\)\.\n?\Z", re.M)
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_SID_WRAPPER = ('set -e; mount -t proc proc "$1/proc"; mount --rbind /dev "$1/dev"; '
                'r="$1"; shift; exec chroot "$r" "$@"')


def sid_command(argv, mounts=True, cwd=None):
    """argv run inside the sid chroot (in chroot dir cwd, default /); with mounts, in a private
    mount namespace with /proc and /dev (recursively: /dev/pts too) that vanishes with the
    process. Every step execs, so the pid is the pid of argv's program."""
    root = str(paths.sid_root())
    argv = [str(a) for a in argv]
    if cwd is not None:
        argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', str(cwd), *argv]
    if not mounts:
        return ["chroot", root, *argv]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _SID_WRAPPER, "sh",
            root, *argv]


def binary_path(version):
    """Host path of the asterisk binary of version (may not exist if not installed)."""
    if version == "16":
        return paths.ast16_binary()
    return paths.sid_root() / "usr/sbin/asterisk"


def stock_module_dir(version):
    """Host path of the stock modules of version."""
    if version == "16":
        return paths.ast16_prefix() / AST16_MODULE_SUBDIR
    return paths.sid_root() / SID_MODULE_DIR.lstrip("/")


OWNER_FILE = ".testbed-owner"
_swept = set()


def sweep_stale(base):
    """Remove instance dirs left in base by test runs that died without cleaning up (SIGKILL):
    only dirs carrying our owner file, and only when that owner process is gone."""
    if str(base) in _swept:
        return
    _swept.add(str(base))
    for owner in Path(base).glob("ac*/" + OWNER_FILE):
        try:
            pid = int(owner.read_text().strip())
            os.kill(pid, 0)
            continue  # owner alive
        except ProcessLookupError:
            pass
        except (ValueError, OSError):
            continue
        shutil.rmtree(owner.parent, ignore_errors=True)


def random_eid():
    b = bytearray(secrets.token_bytes(6))
    b[0] = (b[0] | 0x02) & 0xFE  # locally administered, unicast
    return ":".join(f"{x:02x}" for x in b)


def _ini(sections):
    out = []
    for name, body in sections:
        out.append(f"[{name}]")
        for key, value in body:
            out.append(f"{key} = {value}")
        out.append("")
    return "\n".join(out)


class AsteriskInstance(runtime.ManagedProcess):
    """One Asterisk process with a private config, on free 127.0.0.1 ports."""

    START_TIMEOUT = 60.0

    def __init__(self, version="16", http_prefix=None, modules=(), extra_configs=None,
                 asterisk_conf_options=None, eid=None, env=None, manager_user="testbed",
                 manager_secret=None, artifacts_dir=None, netns=None, bind_address="127.0.0.1"):
        version = str(version)
        if version not in VERSIONS:
            raise ValueError(f"Asterisk version must be one of {VERSIONS}, not {version!r}")
        self.version = version
        # netns: run inside that network namespace (`ip netns exec`); bind_address: where
        # Asterisk's HTTP server listens (an address of that namespace).
        self.netns = netns
        self.bind_address = bind_address
        self.http_prefix = (http_prefix or "").strip("/") or None
        self.modules = list(modules)
        self.extra_env = dict(env or {})
        self.binary = binary_path(version)
        if not self.binary.exists():
            raise FileNotFoundError(f"Asterisk {version} not found at {self.binary} "
                                    "(run `make -C integration_tests test-setup`)")
        base = Path("/tmp") if version == "16" else paths.sid_root() / "tmp"
        base.mkdir(parents=True, exist_ok=True)
        sweep_stale(base)
        self.host_dir = Path(tempfile.mkdtemp(prefix="ac", dir=base))
        self.host_dir.chmod(0o755)
        (self.host_dir / OWNER_FILE).write_text(str(os.getpid()))
        # The path Asterisk itself sees (inside the chroot for 22).
        self.dir = self.host_dir if version == "16" else Path("/tmp") / self.host_dir.name
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir else None
        self.http_port = runtime.free_port()
        self.manager_port = runtime.free_port()
        self.manager_user = manager_user
        self.manager_secret = manager_secret or secrets.token_hex(8)
        options = dict(asterisk_conf_options or {})
        self.eid = eid or options.get("entityid") or random_eid()
        options.setdefault("entityid", self.eid)
        options.setdefault("verbose", "5")
        options.setdefault("debug", "5")
        self.asterisk_conf_options = options
        self.proc = None
        self._cleaned = False
        self.datadir = None  # astdatadir as Asterisk sees it; set by _write_default_configs
        for sub in ("etc", "mod", "lib", "db", "keys", "spool", "run", "log", "cache"):
            (self.host_dir / sub).mkdir()
        self._write_default_configs()
        for name, text in (extra_configs or {}).items():
            self.write_config(name, text)
        for module in self.modules:
            self._link_stock_module(module)
        runtime.register_cleanup(("asterisk", str(self.host_dir)), self._emergency_cleanup)

    # -- paths ------------------------------------------------------------------------------
    @property
    def etc_dir(self):
        """HOST path of the config dir."""
        return self.host_dir / "etc"

    @property
    def module_dir(self):
        """HOST path of astmoddir (per instance)."""
        return self.host_dir / "mod"

    @property
    def log_dir(self):
        return self.host_dir / "log"

    @property
    def messages_path(self):
        return self.log_dir / "messages"

    @property
    def stdout_path(self):
        return self.host_dir / "stdout.log"

    @property
    def conf_path(self):
        """Path of asterisk.conf as Asterisk sees it (chroot path for 22)."""
        return self.dir / "etc" / "asterisk.conf"

    def to_host_path(self, path):
        """Map a path as Asterisk sees it to the host path."""
        path = Path(path)
        if self.version == "16":
            return path
        return paths.sid_root() / str(path).lstrip("/")

    def to_asterisk_path(self, host_path):
        """Map a host path (inside the chroot for 22) to the path Asterisk sees."""
        host_path = Path(host_path).absolute()
        if self.version == "16":
            return host_path
        return Path("/") / host_path.relative_to(paths.sid_root())

    # -- config -----------------------------------------------------------------------------
    def _write_default_configs(self):
        self.datadir = self.stock_datadir
        self._write_asterisk_conf()
        loads = [("autoload", "no")] + [("load", m) for m in self.modules]
        self.write_config("modules.conf", _ini([("modules", loads)]))
        http = [("enabled", "yes"), ("bindaddr", self.bind_address),
                ("bindport", self.http_port)]
        if self.http_prefix:
            http.append(("prefix", self.http_prefix))
        if self.version == "22":
            http.append(("enable_status", "yes"))
        self.write_config("http.conf", _ini([("general", http)]))
        self.write_config("manager.conf", _ini([
            ("general", [("enabled", "yes"), ("bindaddr", "127.0.0.1"),
                         ("port", self.manager_port)]),
            (self.manager_user, [("secret", self.manager_secret), ("read", "all"),
                                 ("write", "all"), ("permit", "127.0.0.1/255.255.255.255")])]))
        self.write_config("logger.conf", _ini([
            ("general", [("dateformat", "%F %T.%3q")]),
            ("logfiles", [("messages", "debug,verbose,notice,warning,error")])]).replace(
                "messages = ", "messages => "))

    @property
    def stock_datadir(self):
        """The installed Asterisk's astdatadir, as Asterisk sees it."""
        if self.version == "16":
            return paths.ast16_prefix() / "usr/share/asterisk"
        return Path("/usr/share/asterisk")

    def _write_asterisk_conf(self):
        d = self.dir
        sbindir = paths.ast16_prefix() / "usr/sbin" if self.version == "16" else Path("/usr/sbin")
        directories = [("astetcdir", d / "etc"), ("astmoddir", d / "mod"),
                       ("astvarlibdir", d / "lib"), ("astdbdir", d / "db"),
                       ("astkeydir", d / "keys"), ("astdatadir", self.datadir),
                       ("astagidir", self.stock_datadir / "agi-bin"), ("astspooldir", d / "spool"),
                       ("astrundir", d / "run"), ("astlogdir", d / "log"),
                       ("astsbindir", sbindir), ("astcachedir", d / "cache")]
        self.write_config("asterisk.conf", _ini([("directories", directories),
                                                 ("options", self.asterisk_conf_options.items())]))

    def use_private_datadir(self):
        """Give this Asterisk an astdatadir of its own (everything in it links to the installed
        one's, except an empty documentation/thirdparty/), so that third-party docs can be
        installed for it alone. Returns the HOST path of that thirdparty/ dir."""
        stock = self.stock_datadir
        data = self.host_dir / "data"
        thirdparty = data / "documentation" / "thirdparty"
        if not thirdparty.exists():
            thirdparty.mkdir(parents=True)
            for entry in self.to_host_path(stock).iterdir():
                if entry.name != "documentation":
                    (data / entry.name).symlink_to(stock / entry.name)
            for entry in self.to_host_path(stock / "documentation").iterdir():
                if entry.name != "thirdparty":
                    (data / "documentation" / entry.name).symlink_to(
                        stock / "documentation" / entry.name)
            self.datadir = self.dir / "data"
            self._write_asterisk_conf()
        return thirdparty

    def install_docs(self, xml_path):
        """Put xml_path in this Asterisk's own documentation/thirdparty/, as `make install`
        puts the module's help. Asterisk reads it at start: call this before start()."""
        shutil.copy(xml_path, self.use_private_datadir() / Path(xml_path).name)

    def write_config(self, name, text):
        """Write etc/<name> (host side); returns the host path."""
        path = self.etc_dir / name
        path.write_text(text)
        return path

    def _link_stock_module(self, name):
        src = stock_module_dir(self.version) / name
        dest = self.module_dir / name
        if src.exists() and not dest.exists():
            # A symlink valid where Asterisk runs (inside the chroot for 22).
            target = (SID_MODULE_DIR + "/" + name) if self.version == "22" else src
            dest.symlink_to(target)

    def install_module(self, so_path):
        """Copy a module into module_dir with `install -m 0644` (a new inode, so a running
        Asterisk that mapped the old file is unaffected), with the files it keeps beside it
        (<name>.d/, e.g. res_discovery_consul.d/). Returns the host path."""
        so_path = Path(so_path)
        dest = self.module_dir / so_path.name
        subprocess.run(["install", "-m", "0644", str(so_path), str(dest)], check=True)
        beside = so_path.with_suffix(".d")
        if beside.is_dir():
            for item in beside.iterdir():
                subprocess.run(["install", "-D", "-m", "0644", str(item),
                                str(self.module_dir / beside.name / item.name)], check=True)
        return dest

    # -- process ----------------------------------------------------------------------------
    def _env(self):
        env = {"PATH": BASE_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        if self.version == "16":
            env["LD_LIBRARY_PATH"] = paths.ast16_library_path()
        env.update(self.extra_env)
        return env

    def _asterisk_argv(self, *args):
        argv = ["/usr/sbin/asterisk" if self.version == "22" else str(self.binary),
                "-C", str(self.conf_path), *args]
        return argv

    def command(self):
        argv = self._asterisk_argv("-f", "-n", "-g")
        # cwd = the instance dir, where a core dump (-g) would land
        argv = sid_command(argv, cwd=self.dir) if self.version == "22" else argv
        return (["ip", "netns", "exec", self.netns] + argv) if self.netns else argv

    def start(self, timeout=None):
        """Start in the foreground (-f -n -g) and wait until fully booted and the CLI answers."""
        if self.is_running():
            return self
        if self._cleaned:
            raise RuntimeError("this instance was cleaned up")
        with open(self.stdout_path, "ab") as fh:
            fh.write(f"--- {time.strftime('%F %T')} starting {' '.join(self.command())}\n"
                     .encode())
        self.proc = runtime.spawn(self.command(), log_path=self.stdout_path, env=self._env(),
                                  cwd=str(self.host_dir))
        try:
            self._wait_booted(timeout or self.START_TIMEOUT)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_booted(self, timeout):
        deadline = time.monotonic() + timeout
        ctl = self.host_dir / "run" / "asterisk.ctl"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Asterisk {self.version} exited with {self.proc.returncode} "
                                   f"during start-up\n{self.diagnostics()}")
            if ctl.exists():
                res = self._rx_raw("core waitfullybooted", timeout=max(1.0, deadline -
                                                                       time.monotonic()))
                if res is not None and res.returncode == 0 and "Unable to connect" not in \
                        res.stdout:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Asterisk {self.version} did not answer its CLI within "
                                   f"{timeout}s\n{self.diagnostics()}")
            time.sleep(0.05)

    def _rx_raw(self, cmd, timeout):
        argv = self._asterisk_argv("-rx", cmd)
        if self.version == "22":
            argv = sid_command(argv, mounts=False)
        try:
            return subprocess.run(argv, env=self._env(), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def rx(self, cmd, timeout=10):
        """Run a CLI command (`asterisk -rx`) and return its output."""
        res = self._rx_raw(cmd, timeout)
        if res is None:
            raise TimeoutError(f"`asterisk -rx {cmd!r}` took longer than {timeout}s")
        if res.returncode != 0 or res.stdout.startswith("Unable to connect"):
            raise RuntimeError(f"`asterisk -rx {cmd!r}` failed ({res.returncode}): {res.stdout}")
        # The remote console reads verbose=5 from asterisk.conf and says goodbye: not output.
        return _RX_TRAILER.sub("", res.stdout)

    def stop(self, timeout=15.0):
        """`core stop now`, wait for the exit, SIGKILL on timeout. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._rx_raw("core stop now", timeout=min(timeout, 10))
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        runtime.forget(self.proc)
        self.proc = None
        return code

    def rss_kb(self):
        """Resident set size of the Asterisk process in kB."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # -- logs -------------------------------------------------------------------------------
    def log_text(self, since=0):
        """The `messages` log (debug..error) from byte offset since."""
        try:
            with open(self.messages_path, "rb") as fh:
                fh.seek(since or 0)
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_offset(self):
        """Current size of the messages log: pass as since= to only see later lines."""
        try:
            return self.messages_path.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_log(self, regex, timeout=10, since=None):
        """Wait until regex (re.M) matches the messages log after byte offset since (default:
        the whole log). Returns the re.Match."""
        pattern = re.compile(regex, re.M) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.log_text(since or 0))
            if m:
                return m
            if time.monotonic() > deadline:
                tail = "\n".join(self.log_text(since or 0).splitlines()[-30:])
                raise TimeoutError(f"log line /{pattern.pattern}/ not seen within {timeout}s "
                                   f"in Asterisk {self.version} messages; tail:\n{tail}")
            time.sleep(0.05)

    def stdout_text(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self, lines=25):
        out = "\n".join(self.stdout_text().splitlines()[-lines:])
        log = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- stdout/stderr ({self.stdout_path}):\n{out}\n--- messages:\n{log}"

    # -- HTTP -------------------------------------------------------------------------------
    def http_url(self, path="/"):
        """URL of path on Asterisk's HTTP server, with http_prefix if any."""
        if not path.startswith("/"):
            path = "/" + path
        prefix = f"/{self.http_prefix}" if self.http_prefix else ""
        return f"http://{self.bind_address}:{self.http_port}{prefix}{path}"

    # -- AMI --------------------------------------------------------------------------------
    def ami(self, action, timeout=10, **fields):
        """Log in to AMI, send one action, return its response as a dict (plus any event
        lists as '_events'), log off. For quick checks; tests needing more use their own client."""
        import socket

        def send(sock, pairs):
            sock.sendall(("".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode())

        def read_block(fh):
            block = {}
            while True:
                line = fh.readline()
                if not line:
                    return block or None
                line = line.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if block:
                        return block
                    continue
                key, _, value = line.partition(":")
                block[key.strip()] = value.strip()

        with socket.create_connection(("127.0.0.1", self.manager_port), timeout=timeout) as s:
            fh = s.makefile("rb")
            fh.readline()  # banner
            send(s, [("Action", "Login"), ("Username", self.manager_user),
                     ("Secret", self.manager_secret), ("ActionID", "login")])
            while True:
                b = read_block(fh)
                if b is None or b.get("ActionID") == "login":
                    break
            if not b or b.get("Response") != "Success":
                raise RuntimeError(f"AMI login failed: {b}")
            send(s, [("Action", action), ("ActionID", "a1"), *fields.items()])
            response, events = None, []
            while True:
                b = read_block(fh)
                if b is None:
                    break
                if b.get("ActionID") != "a1":
                    continue
                if response is None and "Response" in b:
                    response = b
                    if b.get("EventList", "").lower() != "start":
                        break
                elif "Event" in b:
                    if b.get("EventList", "").lower() == "complete":
                        break
                    events.append(b)
            send(s, [("Action", "Logoff")])
        response = response or {}
        response["_events"] = events
        return response

    # -- teardown ---------------------------------------------------------------------------
    def cleanup(self):
        """Stop (kill if needed), keep logs/configs in artifacts_dir if set, remove the dir."""
        if self._cleaned:
            return
        try:
            self.stop()
        finally:
            self.kill()
            if self.artifacts_dir is not None:
                try:
                    self.artifacts_dir.mkdir(parents=True, exist_ok=True)
                    for sub in ("etc", "log"):
                        shutil.copytree(self.host_dir / sub, self.artifacts_dir / sub,
                                        symlinks=True, dirs_exist_ok=True)
                    if self.stdout_path.exists():
                        shutil.copy(self.stdout_path, self.artifacts_dir / "stdout.log")
                except OSError:
                    pass
            shutil.rmtree(self.host_dir, ignore_errors=True)
            runtime.unregister_cleanup(("asterisk", str(self.host_dir)))
            self._cleaned = True

    def _emergency_cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        shutil.rmtree(self.host_dir, ignore_errors=True)

    def __repr__(self):
        state = "running" if self.is_running() else "stopped"
        return f"<AsteriskInstance {self.version} {self.host_dir} http={self.http_port} {state}>"
