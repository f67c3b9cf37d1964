"""The proxy host: Kamailio with the sample contrib/kamailio/kamailio.cfg, and the sample
handler contrib/kamailio/consul_dispatcher.py following the service's health on the host's
Consul agent (`--follow`), exactly as an operator would run them.

Kamailio listens on UDP and TCP. Which Kamailio (profile.py): sid's, inside the sid chroot
(the fleet on Asterisk 22: workdir must then be inside the chroot, its files are read there),
or bookworm's 5.6 dpkg -x'ed (the Asterisk 16 profile).

    proxy = Proxy(net, ns, workdir, agent, profile)  # agent: the proxy host's Consul client
    proxy.start()
    proxy.destinations()  -> {service_id: flags}   (kamcmd dispatcher.list)
    proxy.routes()        -> [Route(time, call_id, service)]   (Kamailio's dispatch log)
"""

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from integration_tests.testbed import paths, runtime
from integration_tests.testbed.asterisk import sid_command

from . import profile as profiles
from .host import SERVICE

CONTRIB = paths.repo_root() / "contrib" / "kamailio"
KAMAILIO_CFG = CONTRIB / "kamailio.cfg"
HANDLER = CONTRIB / "consul_dispatcher.py"
SIP_PORT = 5060

_ROUTE = re.compile(r"dispatch (\S+) (\d+\.\d+) to (\S+) as (\S*)$", re.M)
_DEST = re.compile(r"URI: (\S+)\s+FLAGS: (\S+).*?DUID: (\S+)", re.S)


@dataclass(frozen=True)
class Route:
    """One INVITE branch Kamailio sent to a destination."""
    time: float
    call_id: str
    uri: str
    service: str


def tool_env():
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8",
            "LD_LIBRARY_PATH": paths.fleet_library_path()}


def handler_python():
    """The python3 an operator's Kamailio box has (the handler needs only the stdlib)."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


class Proxy:
    def __init__(self, net, ns, workdir, agent, service=SERVICE, profile=None):
        self.profile = profile or profiles.current()
        self.in_sid = self.profile.kamailio_from == "sid"
        self.net = net
        self.ns = ns
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.agent = agent
        self.service = service
        self.list_path = self.dir / "dispatcher.list"
        self.ctl = self.dir / "kamailio_ctl"
        self.kamailio_log = self.dir / "kamailio.log"
        self.watch_log = self.dir / "consul-watch.log"
        self.kamailio = None
        self.watch = None

    @property
    def address(self):
        return self.ns.address

    def _seen(self, path):
        """A path as Kamailio sees it (inside the chroot for sid's)."""
        path = Path(path)
        if not self.in_sid:
            return path
        return Path("/") / path.relative_to(paths.sid_root())

    def kamcmd_command(self):
        if self.in_sid:
            return (f"chroot {shlex.quote(str(paths.sid_root()))} {paths.SID_KAMCMD} "
                    f"-s unix:{self._seen(self.ctl)}")
        return f"{paths.kamcmd_binary()} -s unix:{self.ctl}"

    def kamcmd(self, *args, timeout=10):
        proc = subprocess.run([*shlex.split(self.kamcmd_command()), *args], env=tool_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
        out = proc.stdout + proc.stderr
        if proc.returncode != 0 or out.startswith("error"):
            raise RuntimeError(f"kamcmd {' '.join(args)}: {out.strip()}")
        return out

    def start(self):
        if not self.agent.is_running():
            self.agent.start()
        if not self.list_path.exists():
            self.list_path.write_text("# no destination until Consul's watch renders them\n")
        # The operator's copy of the sample config, beside the list (in the chroot for sid).
        cfg = self.dir / "kamailio.cfg"
        cfg.write_text(KAMAILIO_CFG.read_text())
        seen = self._seen
        binary, modules = ((paths.SID_KAMAILIO, paths.SID_KAMAILIO_MODULES) if self.in_sid
                           else (paths.kamailio_binary(), paths.kamailio_module_dir()))
        argv = [binary, "-f", seen(cfg), "-L", modules, "-DD", "-E",
                "-l", f"udp:{self.ns.address}:{SIP_PORT}",
                "-l", f"tcp:{self.ns.address}:{SIP_PORT}",
                "-A", f'DISPATCHER_LIST="{seen(self.list_path)}"',
                "-A", f'CTL_SOCKET="unix:{seen(self.ctl)}"',
                "-Y", seen(self.dir), "-P", seen(self.dir / "kamailio.pid"),
                "-m", "64", "-M", "8"]
        if self.in_sid:
            argv = sid_command(argv, cwd=seen(self.dir))
        # Kamailio forks its workers; in a PID namespace of their own they all die with the
        # main process (and it with us: unshare kills it when it dies itself).
        argv = ["unshare", "--pid", "--fork", "--kill-child", *argv]
        env = tool_env()
        if self.in_sid:
            env.pop("LD_LIBRARY_PATH")
        self.kamailio = runtime.spawn(self.net.wrap(self.ns, argv), log_path=self.kamailio_log,
                                      env=env, cwd=str(self.dir))
        runtime.wait_until(lambda: self._alive("kamailio") and self.kamcmd("core.uptime"),
                           timeout=20, what="Kamailio's ctl socket")
        self.start_watch()
        return self

    def start_watch(self):
        """The handler following the service's health on the proxy host's agent (--follow:
        `consul watch` backs off 20 s after two errors in a row, seen at a leader election)."""
        argv = [handler_python(), "-u", str(HANDLER), "--follow", self.service,
                "--http-addr", "127.0.0.1:8500", "--list", str(self.list_path),
                "--kamcmd", self.kamcmd_command()]
        self.watch = runtime.spawn(self.net.wrap(self.ns, argv), log_path=self.watch_log,
                                   env=tool_env(), cwd=str(self.dir))

    def reload_list(self, timeout=5.0):
        """`kamcmd dispatcher.reload`, again while Kamailio says it reloaded this second."""
        runtime.wait_until(lambda: self.kamcmd("dispatcher.reload"), timeout=timeout,
                           interval=0.2, what="dispatcher.reload")

    def stop_watch(self):
        runtime.reap(self.watch, timeout=5)
        self.watch = None

    def _alive(self, which):
        proc = getattr(self, which)
        if proc is None or proc.poll() is not None:
            raise runtime.GiveUp(f"{which} exited; log tail:\n{self.log_tail(which)}")
        return True

    def log_tail(self, which="kamailio", lines=30):
        path = self.kamailio_log if which == "kamailio" else self.watch_log
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def destinations(self):
        """{service_id: flags} as Kamailio holds them now ('AX' active, 'DX' disabled ...)."""
        try:
            out = self.kamcmd("dispatcher.list")
        except RuntimeError as exc:
            if "No Destination Sets" in str(exc):
                return {}
            raise
        out = out.replace("\t", " ")
        found = {}
        for block in out.split("DEST:")[1:]:
            m = _DEST.search(block)
            if m:
                found[m.group(3)] = m.group(2)
        return found

    def routed_ids(self):
        """Service IDs Kamailio would route new calls to now."""
        return {sid for sid, flags in self.destinations().items() if flags.startswith("A")}

    def routes(self):
        try:
            text = self.kamailio_log.read_text(errors="replace")
        except OSError:
            return []
        return [Route(float(m.group(2)), m.group(1), m.group(3), m.group(4))
                for m in _ROUTE.finditer(text)]

    def stop(self):
        self.stop_watch()
        runtime.reap(self.kamailio, timeout=10)
        self.kamailio = None
