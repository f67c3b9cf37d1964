"""The Debian package (`make deb`), installed the way an operator installs it on Debian sid.

Each test takes a fresh copy of the test bed's sid chroot (an overlay in private mount and
network namespaces, see testbed/freshroot.py), installs the .deb with apt, and runs Debian's
own Asterisk 22 the way Debian's service unit does (user asterisk, the packaged config,
modules autoloaded) with a Consul agent on the default port, both in the copy's network
namespace where nothing else listens and nothing outside is reachable.
"""

import re
import subprocess
import time

import pytest

from integration_tests.debian_asterisk import (DebianAsterisk, NetnsConsul, apt_install,
                                               fresh, installed)  # noqa: F401 (fixture)
from integration_tests.testbed import debbuild, fixtures, paths, runtime
from integration_tests.testbed.build import BuildError

PACKAGE = "asterisk-consul"
MODULE = "res_discovery_consul.so"
MODULE_PATH = "/usr/lib/x86_64-linux-gnu/asterisk/modules/" + MODULE
CONF = "/etc/asterisk/res_discovery_consul.conf"
# What the package depends on and a machine without Asterisk lacks (the test removes these
# first, so apt must pull them back for the package). libpython is added from the .deb.
PULLED = ["asterisk", "asterisk-modules", "asterisk-config", "python3-cffi-backend",
          "python3-requests"]


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """{"v1": path, "v2": path}: the package as the tree makes it, and a second build with a
    higher version (for the upgrade)."""
    fixtures.require_asterisk("22")
    out = tmp_path_factory.mktemp("debs")
    start = time.monotonic()
    version = debbuild.changelog_version(paths.repo_root() / "debian/changelog")
    try:
        v1 = debbuild.build_deb(out)
        v2 = debbuild.build_deb(out, version=version + "+upgrade1")
    except BuildError as exc:
        pytest.fail(f"make deb failed: {exc}", pytrace=False)
    print(f"\n[deb] two builds in {time.monotonic() - start:.0f}s; {v1.name} "
          f"{v1.stat().st_size // 1024} KiB")
    return {"v1": v1, "v2": v2}


def test_apt_install_pulls_the_dependencies_and_debian_asterisk_registers(debs, fresh, tmp_path):
    depends = subprocess.run(["dpkg-deb", "-f", str(debs["v1"]), "Depends"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
    # The exact Asterisk build it was compiled against (Debian's ABI Provides), the cffi
    # backend API of the generated C, and the libpython the module links.
    abi = fresh.run(["dpkg-query", "-W", "-f", "${Provides}", "asterisk"]).stdout.strip()
    assert abi.startswith("asterisk-abi-") and abi in depends, depends
    assert "python3-cffi-backend-api-min" in depends and "python3-requests" in depends
    libpython = re.search(r"\b(libpython3\.\d+)\b", depends).group(1)
    pulled = PULLED + [libpython]
    # A machine without Asterisk: everything the package needs is gone (apt keeps the .debs
    # in the archive cache FreshSid mounts from the test bed cache: downloaded once).
    fresh.run(["apt-get", "-y", "-q", "--reinstall", "--download-only", "install", *pulled])
    fresh.run(["apt-get", "-y", "-q", "purge", *pulled])
    assert not any(installed(fresh, p) for p in pulled)

    out = apt_install(fresh, debs["v1"])
    assert all(installed(fresh, p) for p in pulled), out
    assert installed(fresh, PACKAGE) == debbuild.changelog_version(
        paths.repo_root() / "debian/changelog")
    # Where Debian looks: the module dir, Python's system path, the conffile readable by
    # asterisk only.
    fresh.run(["test", "-f", MODULE_PATH])
    where = fresh.run(["/usr/bin/python3", "-c", "import asterisk_consul; "
                       "print(asterisk_consul.__file__)"]).stdout
    assert where.startswith("/usr/lib/python3/dist-packages/asterisk_consul/"), where
    conffiles = fresh.run(["dpkg-query", "-W", "-f", "${Conffiles}", PACKAGE]).stdout
    assert CONF in conffiles
    assert fresh.run(["stat", "-c", "%U:%G %a", CONF]).stdout.split() == ["asterisk:asterisk",
                                                                           "640"]

    consul = NetnsConsul(fresh, tmp_path)
    ast = DebianAsterisk(fresh, tmp_path).start()
    try:
        asterisk_uid = int(fresh.run(["id", "-u", "asterisk"]).stdout)
        assert ast.uid() == asterisk_uid
        assert ast.module_running()  # autoloaded with the packaged configs, untouched
        eid = ast.eid()
        runtime.wait_until(lambda: eid in consul.services(), timeout=20,
                           what=f"service {eid} registered by the packaged module")

        # Removing the package unloads the module (deregistering it) and Asterisk runs on.
        out = fresh.run(["apt", "remove", "-y", "-q", PACKAGE]).stdout
        assert installed(fresh, PACKAGE) is None, out
        assert eid not in consul.services()
        assert not ast.module_running()
        assert "System uptime" in ast.rx("core show uptime")
        fresh.run(["test", "!", "-e", MODULE_PATH])
        fresh.run(["test", "-f", CONF])  # remove (not purge) keeps the operator's config
        # ... and starts again without it.
        ast.stop()
        ast.start()
        assert "0 modules loaded" in ast.rx("module show like res_discovery_consul")
    finally:
        ast.stop()


def test_upgrade_keeps_the_edited_config_and_switches_the_running_asterisk(debs, fresh,
                                                                            tmp_path):
    apt_install(fresh, debs["v1"])
    consul = NetnsConsul(fresh, tmp_path)
    ast = DebianAsterisk(fresh, tmp_path).start()
    try:
        runtime.wait_until(lambda: ast.eid() in consul.services(), timeout=20,
                           what="the packaged config registering")
        # The operator's edit.
        edited = fresh.read(CONF).replace(";id = asterisk", "id = edited-by-operator")
        assert "id = edited-by-operator" in edited
        fresh.write(CONF, edited)
        ast.rx("module reload " + MODULE)
        runtime.wait_until(lambda: "edited-by-operator" in consul.services(), timeout=20,
                           what="the edited config registering")
        pid = ast.proc.pid
        since = ast.log.stat().st_size

        out = apt_install(fresh, debs["v2"])
        assert installed(fresh, PACKAGE).endswith("+upgrade1"), out
        assert fresh.read(CONF) == edited
        leftovers = fresh.run(["sh", "-c", f"ls {CONF}.dpkg-* 2>/dev/null || true"]).stdout
        assert not leftovers.strip()
        # The running Asterisk (not restarted) now runs the new module, with the edited config.
        assert f"reloaded {MODULE}" in out, out
        assert ast.proc.pid == pid and ast.module_running()
        runtime.wait_until(lambda: re.search(r"deregistered.*registered as",
                                             ast.log_text(since), re.S),
                           timeout=20, what="the upgraded module registering again")
        assert "edited-by-operator" in consul.services()
        # Unload + load was a full upgrade: the new C shim runs the new Python package.
        new = installed(fresh, PACKAGE)
        assert f"C shim {new}, Python package {new} (/usr/lib/python3/dist-packages" in \
            ast.rx("discovery show status")
        assert "asterisk_consul %s imported anew" % new in ast.log_text(since)
        md5 = fresh.run(["md5sum", MODULE_PATH]).stdout.split()[0]
        shipped = subprocess.run(f"dpkg-deb --fsys-tarfile {debs['v2']} | tar -xO "
                                 f".{MODULE_PATH} | md5sum", shell=True, check=True,
                                 stdout=subprocess.PIPE, text=True).stdout.split()[0]
        assert md5 == shipped
    finally:
        ast.stop()


# -- lintian ---------------------------------------------------------------------------------

def test_lintian_reports_no_error_and_no_warning(debs, fresh):
    """Debian's lintian (sid) on the package, as CI checks it: nothing at error or warning
    level (no RUNPATH, a copyright notice, the conffile shipped 0644 and made 0640 by the
    postinst, bindnow). Its full output, info tags included, is printed."""
    fresh.copy_in(debs["v1"], f"/tmp/{debs['v1'].name}")
    res = fresh.run(["lintian", "--fail-on", "error,warning", "--display-info",
                     f"/tmp/{debs['v1'].name}"], check=False, timeout=600)
    print(f"\n[lintian] exit {res.returncode}:\n{res.stdout}")
    assert res.returncode == 0, res.stdout
    assert not re.search(r"^[EW]: ", res.stdout, re.M), res.stdout


# -- systemd: systemctl stop|restart asterisk drains first -----------------------------------

DROPIN = "/usr/lib/systemd/system/asterisk.service.d/res-discovery-consul-drain.conf"
CALL_SECONDS = 6
CALLS_DIALPLAN = """
[drain-test]
exten => short,1,Answer()
 same => n,Wait({short})
 same => n,Hangup()
exten => long,1,Answer()
 same => n,Wait(300)
 same => n,Hangup()
"""


def exec_stop_argv(dropin, mainpid):
    """The drop-in's ExecStop= as systemd runs it: split into words, $MAINPID replaced by the
    main process's pid (systemd sets it for ExecStop), run as root in the unit's environment."""
    import shlex

    [line] = re.findall(r"^ExecStop=(.*)$", dropin, re.M)
    return [str(mainpid) if word == "$MAINPID" else word for word in shlex.split(line)]


# Debian's pjsip.conf declares no transport: chan_pjsip is loaded but takes no call, and with
# sip_check = auto (the default) the box is rightly not healthy. An operator's box has one.
PJSIP_TRANSPORT = """
[transport-udp]
type = transport
protocol = udp
bind = 0.0.0.0:5060
"""


def give_it_a_sip_transport(fresh):
    fresh.write("/etc/asterisk/pjsip.conf", fresh.read("/etc/asterisk/pjsip.conf") + PJSIP_TRANSPORT)


def passing(consul, name="Asterisk"):
    import json

    return {e["Service"]["ID"] for e in json.loads(consul.get(f"/v1/health/service/{name}?passing"))}


def asterisk_with_a_call(fresh, tmp_path, debs, exten):
    apt_install(fresh, debs["v1"])
    give_it_a_sip_transport(fresh)
    fresh.write("/etc/asterisk/extensions.conf", fresh.read("/etc/asterisk/extensions.conf")
                + CALLS_DIALPLAN.format(short=CALL_SECONDS))
    consul = NetnsConsul(fresh, tmp_path)
    ast = DebianAsterisk(fresh, tmp_path).start()
    eid = ast.eid()
    # The packaged config as shipped: check = yes, and with Debian's http.conf (HTTP server
    # off) check_type = auto is the TTL check alone.
    runtime.wait_until(lambda: eid in passing(consul), timeout=30,
                       what="the packaged config passing in Consul")
    ast.rx(f"channel originate Local/{exten}@drain-test application Wait 600")
    runtime.wait_until(lambda: re.search(r"^[1-9]\d* active call", ast.rx("core show channels")
                                         , re.M), timeout=10, what="the call up")
    return consul, ast, eid


def test_systemctl_stop_drains_first_with_a_call_up(debs, fresh, tmp_path):
    """systemd does not run in the chroot: the drop-in's ExecStop runs exactly as systemd
    would run it for `systemctl stop asterisk` (and the stop half of `systemctl restart`),
    against Debian's Asterisk started as its unit starts it, with a call up. The box leaves
    Consul's healthy set at once and stays registered, Asterisk runs on until the call ends,
    then exits by itself (deregistered) and ExecStop returns: systemd's SIGTERM after it
    finds nothing left. All within TimeoutStopSec."""
    consul, ast, eid = asterisk_with_a_call(fresh, tmp_path, debs, "short")
    try:
        dropin = fresh.read(DROPIN)
        timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", dropin, re.M).group(1))
        argv = exec_stop_argv(dropin, ast.proc.pid)
        assert argv[0] == "/usr/libexec/asterisk-consul/asterisk-stop-gracefully"
        start = time.monotonic()
        stop = fresh.spawn(argv, net=True, log_path=tmp_path / "execstop.log")
        timeline = {}
        while stop.poll() is None and time.monotonic() - start < timeout:
            now = time.monotonic() - start
            if "out" not in timeline and eid not in passing(consul):
                timeline["out"] = now
                assert eid in consul.services(), "drained, not deregistered"
            if "exit" not in timeline and ast.proc.poll() is not None:
                timeline["exit"] = now
            time.sleep(0.05)
        timeline["execstop"] = time.monotonic() - start
        if "exit" not in timeline and ast.proc.poll() is not None:
            timeline["exit"] = timeline["execstop"]
        print(f"\n[systemd drain] call of {CALL_SECONDS} s; from ExecStop's start: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in timeline.items()))
        assert stop.returncode == 0, (tmp_path / "execstop.log").read_text()
        assert timeline["out"] < 2.0, timeline  # out of the healthy set at once
        # Asterisk waited for the call (it was answered about a second before ExecStop).
        assert CALL_SECONDS - 2 <= timeline["exit"] <= CALL_SECONDS + 3, timeline
        assert timeline["execstop"] <= timeline["exit"] + 1.0, timeline
        assert eid not in consul.services()  # deregistered at exit
    finally:
        ast.stop()


def test_systemd_drain_is_bounded_calls_still_up_are_cut(debs, fresh, tmp_path):
    """A call longer than the drop-in's bound: SIGTERM at the bound (here 3 s instead of the
    packaged 100 s; a graceful shutdown in progress takes no CLI command, not even `core stop
    now`), and ExecStop returns once Asterisk has exited."""
    consul, ast, eid = asterisk_with_a_call(fresh, tmp_path, debs, "long")
    try:
        argv = exec_stop_argv(fresh.read(DROPIN), ast.proc.pid)
        assert argv[-1] == "100"
        argv[-1] = "3"
        start = time.monotonic()
        stop = fresh.spawn(argv, net=True, log_path=tmp_path / "execstop.log")
        timeline = {}
        # Asterisk deregisters in its last moments and ExecStop returns within 0.2 s of the
        # exit: the watch goes on past ExecStop's return until the deregistration is seen (or
        # the bound below has long passed), so a sample taken just before it cannot miss it.
        while (stop.poll() is None or "deregistered" not in timeline) \
                and time.monotonic() - start < 20:
            now = time.monotonic() - start
            if "deregistered" not in timeline and eid not in consul.services():
                timeline["deregistered"] = now
            if "exit" not in timeline and ast.proc.poll() is not None:
                timeline["exit"] = now
            if "execstop" not in timeline and stop.poll() is not None:
                timeline["execstop"] = now
            time.sleep(0.1)
        timeline.setdefault("execstop", time.monotonic() - start)
        output = (tmp_path / "execstop.log").read_text()
        print("\n[systemd drain] bound 3 s, a 300 s call; from ExecStop's start: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in timeline.items()))
        assert stop.returncode == 0 and "SIGTERM, Asterisk stops now" in output, output
        # The call is cut at the bound and the service deregistered at once (the exit hook, in
        # Asterisk's last moments: 1.1-1.3 s after the SIGTERM on the test bed, in the same
        # 0.1 s sample as the exit).
        assert "deregistered" in timeline and 3.0 <= timeline["deregistered"] <= 6.0, timeline
        assert ast.proc.poll() is not None and "still runs" not in output, output
        assert timeline["execstop"] <= 3 + 15 + 1, timeline
    finally:
        ast.stop()


def test_a_box_with_the_shipped_config_leaves_the_healthy_set_after_kill_9(debs, fresh, tmp_path):
    """The package's config untouched (check = yes by default; Debian's http.conf leaves the
    HTTP server off, so check_type = auto is the TTL check alone): a `kill -9` of Asterisk,
    which says nothing to Consul, takes the box out of the healthy set once check_ttl (30 s)
    has passed without a report."""
    apt_install(fresh, debs["v1"])
    give_it_a_sip_transport(fresh)
    consul = NetnsConsul(fresh, tmp_path)
    ast = DebianAsterisk(fresh, tmp_path).start()
    try:
        eid = ast.eid()
        runtime.wait_until(lambda: eid in passing(consul), timeout=30,
                           what="the shipped config passing in Consul")
        assert re.search(r"^\s+check_type\s+ttl\s+default \(auto: ttl, ", 
                         ast.rx("discovery show settings"), re.M)
        start = time.monotonic()
        ast.proc.kill()
        ast.proc.wait(timeout=10)
        runtime.wait_until(lambda: eid not in passing(consul), timeout=45, interval=0.5,
                           what="the killed box out of the healthy set")
        took = time.monotonic() - start
        print(f"\n[kill -9] out of the healthy set {took:.1f} s after the kill (check_ttl 30s)")
        assert took <= 30 + 5
        assert eid in consul.services()  # still registered: Consul reaps it later
    finally:
        ast.proc = None if ast.proc and ast.proc.poll() is not None else ast.proc
        ast.stop()
