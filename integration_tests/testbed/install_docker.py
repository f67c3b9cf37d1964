"""The installer's `docker` component: Debian's Docker, privately, and a base image.

    docker/                      dpkg -x of bookworm's docker.io 20.10 and docker-compose 1.29
                                 and the packages this machine lacks for them (containerd,
                                 runc, tini, the Python modules of docker-compose)
    docker/debian-sid-minbase.tar   debootstrap --variant=minbase sid, for `docker import`

Nothing is installed into the system: the test bed's docker.py runs dockerd from here with
PATH and PYTHONPATH pointing into the prefix. Called by install.py with the installer module
itself (`t`), whose helpers (PrivateApt, run, dpkg_extract, debootstrap_sid ...) it uses.
"""

import os
import re
import subprocess
from pathlib import Path

if __package__:  # imported by the tests' docker.py
    from . import paths
else:  # imported by install.py, run as a script
    import paths

SUITE = "bookworm"
PACKAGES = ["docker.io", "docker-compose"]
DOCKER_VERSION_PREFIX = "20.10."
COMPOSE_VERSION_PREFIX = "1.29."
# The base image's apt: this machine's clock is past sid's Release Valid-Until (as for the
# chroot), and images stay small.
BASE_APT_CONF = ('Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n'
                 'Acquire::http::Timeout "30";\nAcquire::Retries "3";\n')


def environment(prefix=None):
    """PATH and PYTHONPATH that run the private docker, dockerd and docker-compose."""
    prefix = Path(prefix or paths.docker_prefix())
    env = dict(os.environ)
    env["PATH"] = (f"{prefix}/usr/bin:{prefix}/usr/sbin:/usr/local/sbin:/usr/local/bin:"
                   "/usr/sbin:/usr/bin:/sbin:/bin")
    env["PYTHONPATH"] = f"{prefix}/usr/lib/python3/dist-packages"
    return env


def inputs():
    return {"packages": PACKAGES, "suite": SUITE}


def verify():
    prefix = paths.docker_prefix()
    if not paths.docker_base_image().exists():
        return None
    found = []
    for argv, prefix_wanted, pattern in (
            ([f"{prefix}/usr/sbin/dockerd", "--version"], DOCKER_VERSION_PREFIX,
             r"Docker version (\S+?),"),
            (["/usr/bin/python3", f"{prefix}/usr/bin/docker-compose", "version", "--short"],
             COMPOSE_VERSION_PREFIX, r"^(\S+)")):
        try:
            proc = subprocess.run(argv, env=environment(prefix), capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        m = re.search(pattern, proc.stdout)
        if proc.returncode != 0 or not m or not m.group(1).startswith(prefix_wanted):
            return None
        found.append(m.group(1))
    size = paths.docker_base_image().stat().st_size >> 20
    return (f"docker {found[0]}, docker-compose {found[1]} ({prefix}); base image "
            f"{paths.docker_base_image().name} ({size} MiB)")


def install(t):
    apt = t.PrivateApt(SUITE)
    apt.update()
    plan = apt.simulate_install(PACKAGES)
    t.log(f"docker: {len(plan)} package(s) from {SUITE}: " + ", ".join(n for n, _ in plan))
    debs = apt.download(plan)
    tmp = t.fresh_dir(paths.cache_dir() / "docker.partial")
    t.dpkg_extract(debs, tmp)
    (tmp / "packages.txt").write_text("".join(f"{n} {v}\n" for n, v in plan))

    rootfs = t.fresh_dir(paths.cache_dir() / "docker-base.partial")
    try:
        t.debootstrap_sid(rootfs)
        (rootfs / "etc/apt/apt.conf.d/99asterisk-consul").write_text(BASE_APT_CONF)
        # apt's caches and lists are not part of an image.
        t.run(["sh", "-c", "rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*_*"],
              cwd=rootfs)
        t.run(["tar", "--numeric-owner", "-C", rootfs, "-cf",
               tmp / paths.docker_base_image().name, "."], what="tar of the base image")
    finally:
        t.remove_tree(rootfs)
    return t.publish(tmp, paths.docker_prefix(), verify,
                     f"docker extracted to {paths.docker_prefix()} but dockerd or docker-compose "
                     "does not answer (or the base image is missing)")
