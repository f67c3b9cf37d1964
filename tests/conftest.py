"""Shared fixtures of the unit tests: the fake agent (fake_agent, fake_factory:
tests/fakeagent) and the test bed's plugin (events, wait_until, make_registrar, the broken
peers...). No unit test starts a real Consul or Asterisk."""

pytest_plugins = ["integration_tests.testbed.fixtures", "tests.fakeagent.fixtures"]
