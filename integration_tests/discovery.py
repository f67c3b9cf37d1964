"""Shared helpers of the feature tests (test_feature_*.py): write res_discovery_consul.conf,
load the module into a test bed Asterisk, and read what Consul holds.

    ast = start(asterisk_factory, ast_version, module_so, consul_agent, name="edge")
    service = wait_service(consul_agent, ast.eid)

Options are passed as keyword arguments of the [consul] section; None leaves an option out.
By default the module talks to `consul` (a ConsulAgent or a broken peer), registers the EID
check (check_type = http) against this Asterisk's HTTP server with a 1 s interval, and
resyncs every second.
"""

import contextlib
import re
import time

import requests

from integration_tests.amiclient import AmiSession
from integration_tests.testbed.runtime import wait_until  # noqa: F401 - the tests' one wait

MODULE = "res_discovery_consul.so"
CONF = "res_discovery_consul.conf"


# -------------------------------------------------------------------------------- config
def conf_text(general=None, consul=None, extra_sections=None):
    """The text of res_discovery_consul.conf. Each argument maps option -> value (None: left
    out); extra_sections maps a section name to such a mapping."""
    out = []
    for name, options in [("general", general), ("consul", consul)] + list(
            (extra_sections or {}).items()):
        if options is None:
            continue
        out.append("[%s]" % name)
        out += ["%s = %s" % (k, v) for k, v in options.items() if v is not None]
        out.append("")
    return "\n".join(out)


def default_options(ast, consul):
    """[consul] options pointing at `consul` with a fast EID check against `ast`."""
    return {
        "host": "127.0.0.1",
        "port": consul.port if hasattr(consul, "address") else consul.http_port,
        "discovery_ip": "127.0.0.1",
        "check": "yes",
        "check_type": "http",   # the EID check alone (the default, auto, would add the TTL check)
        "check_http_port": ast.http_port,
        "check_interval": "1s",
        "check_timeout": "1s",
        "check_deregister_after": "1m",
        "consul_timeout_ms": 1000,
        "resync_interval": "1s",
    }


def write_conf(ast, consul=None, general=None, extra_sections=None, **options):
    """Write the module's config: the defaults for `consul` (if given) updated by options."""
    merged = default_options(ast, consul) if consul is not None else {}
    merged.update(options)
    ast.write_config(CONF, conf_text(general, merged, extra_sections))
    return merged


def conf_line(ast, option):
    """Line number (1-based) of `option = ...` in the module's config."""
    lines = (ast.etc_dir / CONF).read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if re.match(r"\s*%s\s*=" % re.escape(option), line):
            return number
    raise AssertionError("%s not in %s" % (option, CONF))


# -------------------------------------------------------------------------------- module
def module_running(ast):
    """True when the module is loaded and running (a declined one is listed 'Not Running')."""
    listing = ast.rx("module show like res_discovery_consul")
    return re.search(r"res_discovery_consul\.so\s.*\d+\s+Running\s", listing) is not None


def load(ast):
    """`module load` that must succeed."""
    out = ast.rx("module load " + MODULE)
    assert module_running(ast), "%s\n%s" % (out, ast.log_text()[-3000:])
    return out


def load_declined(ast):
    """`module load` that must be declined; returns the log written during the attempt."""
    since = ast.log_offset()
    ast.rx("module load " + MODULE)
    assert not module_running(ast), ast.rx("module show like res_discovery_consul")
    # The decline is logged by the loader just after the module's own lines.
    ast.wait_log(r"res_discovery_consul", since=since)
    return ast.log_text(since)


def new_asterisk(asterisk_factory, version, module_so, **kwargs):
    """A started Asterisk with the module installed, not loaded."""
    return asterisk_factory(version, install=[module_so], **kwargs)


def start(asterisk_factory, version, module_so, consul, general=None, extra_sections=None,
          factory_kwargs=None, **options):
    """A started Asterisk with the module configured for `consul` and loaded."""
    ast = new_asterisk(asterisk_factory, version, module_so, **(factory_kwargs or {}))
    write_conf(ast, consul, general=general, extra_sections=extra_sections, **options)
    load(ast)
    return ast


def ami(ast):
    """A logged-in AMI session (system events) to `ast`; use it as a context manager."""
    return AmiSession(ast.manager_port, ast.manager_user, ast.manager_secret)


@contextlib.contextmanager
def loaded_with_ami(ast, service_id=None):
    """Load the module with an AMI session already logged in; wait for the load's
    DiscoveryRegister event, then forget it, so later checks see only what follows. (A session
    opened after the load may get that event late: the worker fires it after Consul took the
    registration, and a test can see the entry, passing, before that.)"""
    with ami(ast) as session:
        load(ast)
        wait_event(session, "DiscoveryRegister", ID=service_id or ast.eid)
        drain(session)
        session.blocks.clear()
        yield session


def drain(ami):
    """Read every AMI block Asterisk sent so far into ami.blocks (a Ping and its answer mark
    the end)."""
    ami.action("Ping")


def wait_event(ami, name, timeout=10.0, **match):
    """The first `name` event (already read or arriving within timeout) with these headers."""
    return ami.wait_event(name, timeout=timeout, **match)


def events(ami, *names, settle=0.3):
    """Events called any of names received so far, after letting `settle` seconds pass."""
    time.sleep(settle)
    drain(ami)
    return [b for b in ami.blocks if b.get("Event") in names]


def timed_rx(ast, command):
    """(output, seconds) of a CLI command."""
    began = time.monotonic()
    out = ast.rx(command)
    return out, time.monotonic() - began


def rx_overhead(ast):
    """Seconds a trivial CLI command takes (the cost of `asterisk -rx` itself)."""
    return min(timed_rx(ast, "core show uptime")[1] for _ in range(3))


# -------------------------------------------------------------------------------- Consul

def wait_service(consul, service_id, timeout=20.0, **expected):
    """The agent's view of service_id once it is registered with the expected fields."""
    def found():
        service = consul.services().get(service_id)
        if service is None or any(service.get(k) != v for k, v in expected.items()):
            return None
        return service
    return wait_until(found, timeout=timeout, interval=0.1,
                      what="service %s with %r" % (service_id, expected))


def wait_gone(consul, service_id, timeout=20.0):
    wait_until(lambda: service_id not in consul.services(), timeout=timeout, interval=0.1,
               what="service %s to be deregistered" % service_id)


def health_entries(consul, name):
    """GET /v1/health/service/<name>: what consul-template and other consumers read."""
    r = consul.get("/v1/health/service/%s" % name)
    r.raise_for_status()
    return r.json()


def wait_health(consul, name, service_id, status, timeout=20.0):
    """Wait until every check of service_id in /v1/health/service/<name> agrees on an
    aggregate `status` (critical if any is critical, passing if all are). Returns its checks."""
    def aggregate():
        for entry in health_entries(consul, name):
            if entry["Service"]["ID"] != service_id:
                continue
            checks = [c for c in entry["Checks"] if c.get("ServiceID") == service_id]
            states = {c["Status"] for c in checks}
            now = "critical" if "critical" in states else (
                "warning" if "warning" in states else "passing")
            return checks if now == status else None
        return None
    return wait_until(aggregate, timeout=timeout, interval=0.1,
                      what="service %s %s in /v1/health/service/%s" % (service_id, status, name))


def instance_of(consul, service_id):
    """This start's instance token, as registered in the service Meta."""
    return wait_service(consul, service_id)["Meta"]["instance"]


def wait_polled(consul, check_id, timeout=10.0):
    """The check once Consul has run it (checks are registered with a status, no output)."""
    return wait_until(lambda: (consul.checks().get(check_id) or {}).get("Output") and
                      consul.checks()[check_id], timeout=timeout, interval=0.05,
                      what="Consul's first run of %s" % check_id)


def check_of(consul, service_id):
    """Our EID check as the agent lists it (None when absent)."""
    return consul.checks().get("check-asterisk-eid-%s" % service_id)


def http_get(ast, path, **kwargs):
    kwargs.setdefault("timeout", 5)
    return requests.get(ast.http_url(path), **kwargs)
