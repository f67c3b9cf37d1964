"""The seed's Docker story, on Debian's docker.io 20.10 and docker-compose 1.29.

The Dockerfile builds Debian's Asterisk with the module (from the Debian package), and
docker-compose.yml runs Consul with `--scale asterisk=5`: five containers, five EIDs, five
registrations whose EID checks pass. Stopping the containers deregisters them, `down` leaves
no container, network or bridge, and the daemon leaves no process or mount.

No image registry is reachable here: the base image `debian:sid` is the test bed's
debootstrap'ed minbase (`docker import`), and `hashicorp/consul:1.8.7` is a stand-in made of
that base and the test bed's Consul 1.8.7. The daemon is private (testbed/docker.py): it
never touches the machine's firewall or forwarding; the compose network is internal.
"""

import ipaddress
import random
import re
import shutil
import subprocess
import time

import pytest
import requests

from integration_tests.testbed import build, fixtures, paths, runtime
from integration_tests.testbed.docker import DockerDaemon, host_bridges, remove_images_requested

SCALE = 5
BASE_IMAGE = "debian:sid"
CONSUL_IMAGE = "hashicorp/consul:1.8.7"
SERVICE = "Asterisk"


def timed(label, times):
    class Timer:
        def __enter__(self):
            self.start = time.monotonic()

        def __exit__(self, *exc):
            times[label] = time.monotonic() - self.start
    return Timer()


@pytest.fixture
def daemon():
    if not paths.docker_base_image().exists():
        fixtures.missing(f"Docker (docker.io, docker-compose, base image) not found under "
                         f"{paths.docker_prefix()}")
    d = DockerDaemon()
    try:
        d.start()
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"the private dockerd did not start: {exc}", pytrace=False)
    yield d
    d.stop()


def make_base_images(daemon, tmp_path):
    """debian:sid from the test bed's tarball; the Consul stand-in on top of it."""
    if not daemon.image_exists(BASE_IMAGE):
        daemon.docker("import", paths.docker_base_image(), BASE_IMAGE)
    if not daemon.image_exists(CONSUL_IMAGE):
        ctx = tmp_path / "consul-image"
        ctx.mkdir()
        shutil.copy(paths.consul_binary(), ctx / "consul")
        (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY consul /bin/consul\n")
        daemon.docker("build", "-t", CONSUL_IMAGE, ctx)


def free_subnet():
    """A /24 of 10.251.0.0/16 that no address or route of this machine touches."""
    used = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                          text=True).stdout
    taken = {ipaddress.ip_network(m, strict=False) for m in
             re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", used)}
    candidates = list(ipaddress.ip_network("10.251.0.0/16").subnets(new_prefix=24))
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free /24 in 10.251.0.0/16")


def healthy_instances(consul_url):
    """{service ID: (address, {check name: status})} of the Asterisk services in Consul."""
    entries = requests.get(f"{consul_url}/v1/health/service/{SERVICE}", timeout=5).json()
    return {e["Service"]["ID"]: (e["Service"]["Address"],
                                 {c["CheckID"]: c["Status"] for c in e["Checks"]})
            for e in entries}


def test_compose_scales_to_five_asterisks_with_five_eids_passing_and_down_leaves_nothing(
        daemon, tmp_path):
    times = {}
    ctx = build.copy_tree(tmp_path / "src")  # what git would commit
    subnet = free_subnet()
    consul_ip = str(subnet.network_address + 2)
    env = {"DISCOVERY_SUBNET": str(subnet), "DISCOVERY_CONSUL_IP": consul_ip}
    project = f"actest{random.randrange(1 << 30):x}"
    bridges_before = host_bridges()

    with timed("images", times):
        make_base_images(daemon, tmp_path)
        daemon.compose(ctx, "build", project=project, env=env)
    # The seed's `docker run ... asterisk-consul`: the entrypoint runs any command.
    assert "Asterisk 22." in daemon.docker("run", "--rm", "--network", "none",
                                           "asterisk-consul", "asterisk", "-V").stdout
    try:
        with timed("up", times):
            daemon.compose(ctx, "up", "-d", "--scale", f"asterisk={SCALE}", project=project,
                           env=env)
            daemon.note_bridges()
        consul_url = f"http://{consul_ip}:8500"
        last = {}

        def all_passing():
            last["v"] = healthy_instances(consul_url)
            return len(last["v"]) == SCALE and all(
                status == "passing" for _, checks in last["v"].values()
                for status in checks.values())
        with timed("passing", times):
            try:
                runtime.wait_until(all_passing, timeout=120, interval=1,
                                   what=f"{SCALE} passing {SERVICE} instances")
            except TimeoutError as exc:
                logs = daemon.compose(ctx, "logs", "--tail", "30", project=project, env=env,
                                      check=False).stdout
                pytest.fail(f"{exc}; Consul: {last.get('v')}\n{logs[-6000:]}", pytrace=False)
        instances = last["v"]
        # One EID per container, each registered under it, at the container's own address.
        containers = daemon.compose(ctx, "ps", "-q", "asterisk", project=project,
                                    env=env).stdout.split()
        assert len(containers) == SCALE
        eids = set()
        for container in containers:
            settings = daemon.docker("exec", container, "asterisk", "-rx",
                                     "core show settings").stdout
            eids.add(re.search(r"Entity ID:\s*(\S+)", settings).group(1))
        assert eids == set(instances), (eids, instances)
        assert len({address for address, _ in instances.values()}) == SCALE
        assert all(any(c.startswith("check-asterisk-eid") for c in checks)
                   for _, checks in instances.values()), instances
        # PJSIP's transports (docker/asterisk/pjsip.conf) published, the Port taken from them,
        # and the probe answered without "No matching endpoint found" in the log.
        entries = requests.get(f"{consul_url}/v1/catalog/service/{SERVICE}", timeout=5).json()
        for entry in entries:
            tagged = entry["ServiceTaggedAddresses"]
            assert entry["ServicePort"] == 5060 and tagged["sip_udp"]["Port"] == 5060, entry
            assert tagged["sip_tcp"] == {"Address": entry["ServiceAddress"], "Port": 5060}, entry
        logs = daemon.compose(ctx, "logs", "asterisk", project=project, env=env,
                              check=False).stdout
        assert "No matching endpoint found" not in logs, logs[-3000:]

        # Stopped containers deregister themselves (Asterisk's shutdown on SIGTERM).
        with timed("stop", times):
            daemon.compose(ctx, "stop", "asterisk", project=project, env=env)
            runtime.wait_until(lambda: not healthy_instances(consul_url), timeout=30,
                               what="the stopped containers deregistered")
    finally:
        with timed("down", times):
            daemon.compose(ctx, "down", *(["--rmi", "all"] if remove_images_requested() else []),
                           project=project, env=env)
    label = f"label=com.docker.compose.project={project}"
    assert not daemon.docker("ps", "-aq", "--filter", label).stdout.split()
    assert not daemon.docker("network", "ls", "-q", "--filter", label).stdout.split()
    # Other tests on this machine may add and remove bridges of their own meanwhile.
    assert not daemon.note_bridges() & host_bridges()
    assert not {b for b in host_bridges() - bridges_before if b.startswith("br-")}
    if remove_images_requested():
        daemon.docker("rmi", CONSUL_IMAGE, BASE_IMAGE)
    else:
        # Layers of builds from older trees; recent ones stay as the next build's cache.
        daemon.docker("image", "prune", "-f", "--filter", "until=168h")

    with timed("daemon stop", times):
        daemon.stop()
    assert daemon.proc is None
    mounts = open("/proc/self/mounts").read()
    assert str(paths.docker_state()) not in mounts
    assert not daemon.socket.exists()
    assert daemon.bridges and not daemon.bridges & host_bridges()
    print("\n[docker] " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
