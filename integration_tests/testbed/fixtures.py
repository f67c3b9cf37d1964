"""pytest plugin of the test bed. Load it with

    pytest_plugins = ["integration_tests.testbed.fixtures"]

Fixtures:
    consul_factory(acl=False, tls=False, start=True, **kw) -> ConsulAgent (stopped at teardown)
    consul_agent            a started plain dev agent
    ast_version             "16" / "22" (session scope, ids ast16 / ast22)
    asterisk_factory(version="16", http_prefix=None, modules=(), extra_configs={},
                     asterisk_conf_options={}, start=True, install=(), env={}, **kw)
                            -> AsteriskInstance (stopped and removed at teardown)
    asterisk                a started AsteriskInstance of ast_version
    module_so               host path of res_discovery_consul.so built for ast_version
    refusing_peer, blackhole_peer, error_peer   broken peers (see peers.py)

Missing Consul/Asterisk: the test is skipped with a hint, except in CI (CI=true) where it FAILS.
"""

import os
import threading

import pytest

from . import paths, runtime
from .asterisk import AsteriskInstance, binary_path
from .consul import ConsulAgent
from .peers import BlackholePeer, RefusingPeer, StandInPeer

SETUP_HINT = "run `make -C integration_tests test-setup`"


def in_ci():
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what):
    """Skip (or, in CI, fail) the current test because `what` is not available."""
    msg = f"{what} ({SETUP_HINT}; cache {paths.cache_dir()})"
    if in_ci():
        pytest.fail(f"CI=true and {msg}", pytrace=False)
    pytest.skip(msg)


def require_consul():
    if not paths.consul_binary().exists():
        missing(f"Consul not found at {paths.consul_binary()}")


def require_asterisk(version):
    version = str(version)
    if not binary_path(version).exists():
        missing(f"Asterisk {version} not found at {binary_path(version)}")
    if version == "22" and os.geteuid() != 0:
        missing("Asterisk 22 runs in a chroot, which needs root")


def pytest_configure(config):
    runtime.install_handlers()
    config.addinivalue_line("markers", "testbed: uses the real Consul / Asterisk test bed")


def pytest_unconfigure(config):
    runtime.cleanup_all()


def pytest_report_header(config):
    parts = [f"cache {paths.cache_dir()}"]
    for label, path in (("consul", paths.consul_binary()), ("ast16", paths.ast16_binary()),
                        ("ast22", binary_path("22")),
                        ("docker", paths.docker_prefix() / "usr/sbin/dockerd")):
        parts.append(f"{label} {'ok' if path.exists() else 'MISSING'}")
    return "testbed: " + ", ".join(parts)


# --------------------------------------------------------------------------------- Consul
@pytest.fixture
def consul_factory(tmp_path):
    """Make (and by default start) Consul dev agents; all are stopped at teardown."""
    agents = []

    def make(acl=False, tls=False, start=True, **kwargs):
        require_consul()
        agent = ConsulAgent(tmp_path / f"consul-{len(agents)}", acl=acl, tls=tls, **kwargs)
        agents.append(agent)
        if start:
            agent.start()
        return agent

    yield make
    for agent in agents:
        try:
            agent.stop()
        except Exception:  # noqa: BLE001 - keep tearing the others down
            agent.kill()


@pytest.fixture
def consul_agent(consul_factory):
    """A started plain Consul dev agent."""
    return consul_factory()


# --------------------------------------------------------------------------------- Asterisk
@pytest.fixture(scope="session", params=["16", "22"], ids=["ast16", "ast22"])
def ast_version(request):
    return request.param


@pytest.fixture
def asterisk_factory(tmp_path):
    """Make (and by default start) Asterisk instances; stopped and removed at teardown.

    install=(paths of .so) are copied into module_dir before the start; their names should also
    be in modules=(...) to be loaded at start. Logs and configs are kept under tmp_path."""
    instances = []

    def make(version="16", http_prefix=None, modules=(), extra_configs=None,
             asterisk_conf_options=None, start=True, install=(), **kwargs):
        require_asterisk(version)
        inst = AsteriskInstance(str(version), http_prefix=http_prefix, modules=modules,
                                extra_configs=extra_configs,
                                asterisk_conf_options=asterisk_conf_options,
                                artifacts_dir=tmp_path / f"asterisk-{len(instances)}", **kwargs)
        instances.append(inst)
        for so in install:
            inst.install_module(so)
        if start:
            inst.start()
        return inst

    yield make
    errors = []
    for inst in instances:
        try:
            inst.cleanup()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def asterisk(asterisk_factory, ast_version):
    """A started Asterisk of ast_version (autoload=no; http, manager and logger set up)."""
    return asterisk_factory(ast_version)


@pytest.fixture(scope="session")
def module_so(ast_version):
    """Host path of res_discovery_consul.so built for ast_version (once per session)."""
    from . import build

    require_asterisk(ast_version)
    try:
        return build.build_module(ast_version)
    except build.BuildError as exc:
        pytest.fail(f"building res_discovery_consul.so for Asterisk {ast_version} failed: {exc}",
                    pytrace=False)


# --------------------------------------------------------------------------------- peers
@pytest.fixture
def refusing_peer():
    with RefusingPeer() as peer:
        yield peer


@pytest.fixture
def blackhole_peer():
    with BlackholePeer() as peer:
        yield peer


@pytest.fixture
def error_peer():
    """A StandInPeer answering 500; set .status to change what it answers."""
    with StandInPeer(500) as peer:
        yield peer


# --------------------------------------------------------------------------------- registrar
@pytest.fixture
def events():
    from .registrar_kit import EventRecorder

    return EventRecorder()


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    return runtime.wait_until


@pytest.fixture
def no_registrar_threads_left():
    """Fails the test if a thread of the registrar (its worker, its watch, the nursery that
    started them: asterisk_consul/threads.py) outlives it."""
    yield
    alive = [t.name for t in threading.enumerate()
             if t.name.startswith(("consul-registrar", "consul-watch", "consul-pulse",
                                   "consul-threads", "consul-deadline", "consul-dns"))]
    assert not alive, f"registrar threads still alive: {alive}"


@pytest.fixture
def make_registrar(events, no_registrar_threads_left):
    """Make Registrars that report to `events`, with short backoffs; stopped at teardown."""
    from asterisk_consul.registrar import Registrar

    from .registrar_kit import FACTS

    made = []

    def make(settings, facts=FACTS, **kwargs):
        kwargs.setdefault("backoff_initial_s", 0.05)
        kwargs.setdefault("backoff_max_s", 0.4)
        kwargs.setdefault("slow_retry_s", 5.0)
        registrar = Registrar(settings, facts, events, **kwargs)
        made.append(registrar)
        return registrar

    yield make
    for registrar in made:
        registrar.stop(deregister=False, timeout=0.5)


@pytest.fixture
def refused_port():
    with RefusingPeer() as peer:
        yield peer.port
