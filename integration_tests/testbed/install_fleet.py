"""The installer's `fleet` component: Kamailio and SIPp for the fleet tests and `make fleet`.

    fleet/    dpkg -x of bookworm's kamailio 5.6 (dispatcher and ctl/kamcmd are in the main
              package) and sip-tester 3.6 (the binary is sipp), with the libraries this
              machine lacks for them -> fleet/usr/sbin/kamailio, fleet/usr/sbin/kamcmd,
              fleet/usr/bin/sipp

Nothing is installed into the system: the fleet runs them with LD_LIBRARY_PATH pointing into
the prefix (paths.fleet_library_path()). Called by install.py with the installer module
itself (`t`), whose helpers (PrivateApt, run, dpkg_extract ...) it uses.
"""

import os
import re
import subprocess

if __package__:  # imported by the tests
    from . import paths
else:  # imported by install.py, run as a script
    import paths

SUITE = "bookworm"
PACKAGES = ["kamailio", "sip-tester"]
# Kamailio modules contrib/kamailio/kamailio.cfg loads: each must find its libraries.
KAMAILIO_MODULES = ["ctl", "dispatcher", "kex", "corex", "maxfwd", "pv", "rr", "siputils", "sl",
                    "textops", "tm", "xlog"]


def environment():
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = paths.fleet_library_path()
    return env


def inputs():
    return {"packages": PACKAGES, "suite": SUITE}


def _output(argv):
    try:
        return subprocess.run([str(a) for a in argv], env=environment(), capture_output=True,
                              text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def verify():
    """kamailio, kamcmd and sipp answer from the cache with their private libraries, and the
    Kamailio modules the fleet loads find theirs."""
    binaries = [paths.kamailio_binary(), paths.kamcmd_binary(), paths.sipp_binary()]
    modules = [paths.kamailio_module_dir() / f"{m}.so" for m in KAMAILIO_MODULES]
    if not all(p.exists() for p in binaries + modules):
        return None
    kamailio = re.search(r"version: kamailio (\S+)", _output([paths.kamailio_binary(), "-v"]))
    sipp = re.search(r"SIPp (v\S+)", _output([paths.sipp_binary(), "-v"]))
    if not kamailio or not sipp or "not found" in _output(["ldd", *binaries, *modules]):
        return None
    return (f"Kamailio {kamailio.group(1)} ({paths.kamailio_binary()}), "
            f"SIPp {sipp.group(1).rstrip('.,')} ({paths.sipp_binary()})")


def install(t):
    apt = t.PrivateApt(SUITE)
    apt.update()
    # What this machine lacks for them, and the packages themselves in any case.
    plan = dict(apt.simulate_install(PACKAGES))
    for name in PACKAGES:
        plan.setdefault(name, t.candidate_version(apt, name))
    plan = sorted(plan.items())
    t.log(f"fleet: {len(plan)} package(s) from {SUITE}: "
          + ", ".join(f"{n} {v}" for n, v in plan))
    tmp = t.fresh_dir(paths.cache_dir() / "fleet.partial")
    t.dpkg_extract(apt.download(plan), tmp)
    (tmp / "packages.txt").write_text("".join(f"{n} {v}\n" for n, v in plan))
    return t.publish(tmp, paths.fleet_prefix(), verify,
                     f"Kamailio and SIPp extracted to {paths.fleet_prefix()} but they do not "
                     "answer (or a library is missing: ldd)")
