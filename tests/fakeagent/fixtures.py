"""pytest fixtures of the fake agent (loaded by tests/conftest.py), shaped as the test bed's
consul_agent / consul_factory so that a test moves from one to the other by its name:

    fake_factory(acl=False, acl_tokens=(), node_name="") -> FakeAgent (closed at teardown)
    fake_agent                  a running FakeAgent without ACLs
"""

import pytest

from .agent import FakeAgent


@pytest.fixture
def fake_factory():
    agents = []

    def make(acl=False, **kwargs):
        agent = FakeAgent(acl=acl, **kwargs)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


@pytest.fixture
def fake_agent(fake_factory):
    return fake_factory()
