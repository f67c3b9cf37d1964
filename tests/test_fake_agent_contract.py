"""The fake agent (tests/fakeagent) against the contract of tests/contract_cases.py: every
case a real Consul 1.8.7 agent passes (integration_tests/test_fake_agent_contract_real.py)
must pass here too, with no Consul at all."""

import pytest

from asterisk_consul.consul import Consul
from tests.contract_cases import CASES
from tests.fakeagent import FakeAgent


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_the_fake_agent_answers_as_consul_1_8_7(case):
    with FakeAgent(acl=case.acl) as agent:
        consul = Consul(agent.url, token=agent.master_token or "")
        try:
            case(agent, consul)
        finally:
            consul.close()
