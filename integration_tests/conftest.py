"""Integration tests: real Consul and real Asterisk 16/22 (see integration_tests/testbed/)."""

pytest_plugins = ["integration_tests.testbed.fixtures", "integration_tests.fleet.fixtures"]
