"""pytest plugin of the fleet tests (loaded by integration_tests/conftest.py).

    def test_something(fleet, fleet_report):
        result = scenarios.kill_9(fleet)
        fleet_report(result)            # one line of figures in the test output

`fleet` is one Fleet shared by the fleet tests (it takes ~20 s to start): each test gets it
steady (whatever the previous one took away is brought back), and it is stopped after the
last test that uses it, so the rest of the suite runs without it.
The stack is the profile's (FLEET_ASTERISK: 22, the default, or 16; profile.py). Missing
Kamailio, SIPp, Consul or that Asterisk skips the test, and fails it in CI.
"""

import os
import time

import pytest

from integration_tests.testbed import paths
from integration_tests.testbed.fixtures import missing, require_asterisk, require_consul

from . import profile as profiles
from .fleet import Fleet

_shared = {"fleet": None, "failed": False}


def _require_tools(profile):
    require_consul()
    require_asterisk(profile.asterisk)
    kamailio = ([("Kamailio (sid chroot)", paths.sid_kamailio_binary())]
                if profile.kamailio_from == "sid" else
                [("Kamailio", paths.kamailio_binary()), ("kamcmd", paths.kamcmd_binary())])
    for what, path in (*kamailio, ("SIPp", paths.sipp_binary())):
        if not path.exists():
            missing(f"{what} not found at {path}")
    if os.geteuid() != 0:
        missing("the fleet needs root (network namespaces, a bridge)")


def _stop_shared():
    fleet = _shared["fleet"]
    _shared["fleet"] = None
    if fleet is not None:
        fleet.stop()


@pytest.fixture
def fleet(request):
    profile = profiles.current()
    _require_tools(profile)
    if _shared["failed"]:
        pytest.fail("the fleet did not start for an earlier test", pytrace=False)
    current = _shared["fleet"]
    if current is None:
        began = time.monotonic()
        current = Fleet(hosts=3, log=lambda msg: None, profile=profile)
        try:
            current.start()
        except BaseException:
            _shared["failed"] = True
            current.stop()
            raise
        _shared["fleet"] = current
        print(f"\n[fleet] {profile.label}: started in {time.monotonic() - began:.1f}s")
    else:
        current.ensure_steady()
    yield current
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("\n[fleet] after the failure:\n" + current.describe())


@pytest.fixture
def fleet_report(capsys):
    def report(result):
        with capsys.disabled():
            print(f"\n[fleet {result.key}] {result.title}: attempted {result.attempted}, "
                  f"failed {result.failed}, {result.measures}: {result.seconds} s; "
                  f"{result.details}")
    return report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    users = [item for item in items if "fleet" in getattr(item, "fixturenames", ())]
    _shared["last_user"] = users[-1].nodeid if users else None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if item.nodeid == _shared.get("last_user"):
        _stop_shared()


def pytest_unconfigure(config):
    _stop_shared()
