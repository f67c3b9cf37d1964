"""Where the test bed keeps things. Stdlib only: install.py imports this too."""

import os
from pathlib import Path

#: Inside the sid chroot: the virtualenv that builds and runs the module for Asterisk 22.
SID_VENV = "/opt/asterisk-consul/venv"
#: Inside the sid chroot: where build.py copies the source tree.
SID_BUILD_DIR = "/build/asterisk-consul"


def cache_dir() -> Path:
    """The cache root: $ASTERISK_CONSUL_CACHE, default ~/.cache/asterisk-consul."""
    env = os.environ.get("ASTERISK_CONSUL_CACHE")
    if env:
        return Path(env).expanduser().absolute()
    return Path.home() / ".cache" / "asterisk-consul"


def repo_root() -> Path:
    """The source tree this file belongs to."""
    return Path(__file__).resolve().parents[2]


def consul_prefix() -> Path:
    return cache_dir() / "consul"


def consul_binary() -> Path:
    return consul_prefix() / "usr" / "bin" / "consul"


def ast16_prefix() -> Path:
    return cache_dir() / "ast16"


def ast16_binary() -> Path:
    return ast16_prefix() / "usr" / "sbin" / "asterisk"


def ast16_library_path() -> str:
    """LD_LIBRARY_PATH that makes the dpkg -x'ed Asterisk 16 find its bundled libraries."""
    p = ast16_prefix()
    dirs = [p / "usr/lib/x86_64-linux-gnu", p / "lib/x86_64-linux-gnu", p / "usr/lib"]
    return ":".join(str(d) for d in dirs)


def sid_root() -> Path:
    return cache_dir() / "sid"


def sid_venv_python() -> str:
    """Chroot path of the sid venv's python."""
    return SID_VENV + "/bin/python"


def host_venv() -> Path:
    return cache_dir() / "venv"


def host_venv_python() -> Path:
    return host_venv() / "bin" / "python"


def bench_prefix() -> Path:
    """The bench tools (wrk and the libraries it needs), dpkg -x'ed by the installer."""
    return cache_dir() / "bench"


def wrk_binary() -> Path:
    return bench_prefix() / "usr" / "bin" / "wrk"


def bench_library_path() -> str:
    """LD_LIBRARY_PATH that makes the dpkg -x'ed wrk find its bundled libraries."""
    p = bench_prefix()
    dirs = [p / "usr/lib/x86_64-linux-gnu", p / "lib/x86_64-linux-gnu", p / "usr/lib"]
    return ":".join(str(d) for d in dirs)


def docker_prefix() -> Path:
    """docker.io and docker-compose (and what this machine lacks for them), dpkg -x'ed."""
    return cache_dir() / "docker"


def docker_base_image() -> Path:
    """A debootstrap'ed Debian sid minbase as a tarball, for `docker import`."""
    return docker_prefix() / "debian-sid-minbase.tar"


def docker_state() -> Path:
    """The private Docker daemon's data (images, build cache) and socket."""
    return cache_dir() / "docker-state"


def fleet_prefix() -> Path:
    """The fleet's tools (Kamailio and SIPp, with the libraries they need), dpkg -x'ed."""
    return cache_dir() / "fleet"


def kamailio_binary() -> Path:
    return fleet_prefix() / "usr" / "sbin" / "kamailio"


def kamcmd_binary() -> Path:
    return fleet_prefix() / "usr" / "sbin" / "kamcmd"


def kamailio_module_dir() -> Path:
    return fleet_prefix() / "usr" / "lib" / "x86_64-linux-gnu" / "kamailio" / "modules"


# Kamailio in the sid chroot (SID_PACKAGES): chroot paths, run with chroot.
SID_KAMAILIO = "/usr/sbin/kamailio"
SID_KAMCMD = "/usr/sbin/kamcmd"
SID_KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"


def sid_kamailio_binary() -> Path:
    """Host path of the sid chroot's kamailio (may not exist if not installed)."""
    return sid_root() / SID_KAMAILIO.lstrip("/")


def sipp_binary() -> Path:
    return fleet_prefix() / "usr" / "bin" / "sipp"


def fleet_library_path() -> str:
    """LD_LIBRARY_PATH that makes the dpkg -x'ed Kamailio and SIPp find their libraries."""
    p = fleet_prefix()
    dirs = [p / "usr/lib/x86_64-linux-gnu", p / "lib/x86_64-linux-gnu", p / "usr/lib",
            p / "usr/lib/x86_64-linux-gnu/kamailio"]
    return ":".join(str(d) for d in dirs)


def apt_dir() -> Path:
    return cache_dir() / "apt"


def stamp_dir() -> Path:
    return cache_dir() / "stamps"
