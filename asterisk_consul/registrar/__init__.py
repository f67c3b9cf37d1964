"""The registrar: the worker thread that owns every piece of this module's Consul state.

    worker.py       the Registrar: its API for Asterisk's threads, typed commands, the loop
    link.py         the Consul client (built from Settings here), the agent, the last error
    service.py      the service registration and its named state; the sync job
    maintenance.py  maintenance mode, wanted and shown
    checks.py       checks on/off and the TTL check's reports
    kvsession.py    the [kv] keys and their session
    retired.py      registrations a reload left behind
    notify.py       AMI and Consul events for accepted changes
    status.py       Result and StatusSnapshot
"""

from .link import consul_client
from .status import Result, StatusSnapshot
from .worker import WORKER_THREAD_NAME, Registrar

__all__ = ["Registrar", "Result", "StatusSnapshot", "WORKER_THREAD_NAME", "consul_client"]
