"""The contract of tests/contract_cases.py held against a real Consul 1.8.7 dev agent: the
same cases tests/test_fake_agent_contract.py runs against the fake agent. A case failing here
is a case the contract (and so the fake) gets wrong about Consul."""

import pytest

from asterisk_consul.consul import Consul
from tests.contract_cases import CASES


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_a_real_consul_1_8_7_answers_as_the_contract_says(case, consul_factory):
    agent = consul_factory(acl=case.acl)
    consul = Consul(agent.url, token=agent.master_token or "")
    try:
        case(agent, consul)
    finally:
        consul.close()
