"""An in-memory Consul 1.8.7 agent served over real HTTP, for tests of the module's client
stack without a Consul binary. tests/contract_cases.py holds it to a real 1.8.7 agent.

    with FakeAgent() as agent:                  # listening on agent.url at once
        Consul(agent.url).agent.service.register({...})
        agent.services(); agent.checks(); agent.calls("/v1/agent/service/register")
        agent.hang(); agent.heal(); agent.restart()  # back empty

Files: model.py (decoding, validation, JSON views), services.py (services, checks,
maintenance, health, catalog, blocking query), kvstore.py (sessions, KV, events), acl.py,
routes.py (path -> operation), server.py (HTTP, faults, request log), agent.py (controls).
"""

from .agent import FakeAgent
from .server import FakeRequest

__all__ = ["FakeAgent", "FakeRequest"]
