"""Shared fixtures of the unit tests: the test bed's plugin (events, wait_until,
make_registrar, the broken peers...). No unit test starts a real Consul or Asterisk."""

pytest_plugins = ["integration_tests.testbed.fixtures"]
