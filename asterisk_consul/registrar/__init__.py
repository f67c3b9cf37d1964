"""The registrar: the worker thread that owns every piece of this module's Consul state.

    worker.py       the Registrar: its API for Asterisk's threads, typed commands, the thread
    reconciler.py   the one reconciler: wanted against known, the calls, the answers recorded
    choices.py      the operator's choices and Asterisk's stop (pure)
    wanted.py       what the agent should hold (pure)
    link.py         the Consul client (built from Settings here), the clock, the last error
    asterisk.py     Asterisk's state, the busy state and the verdict
    service.py      the service registration: its named state, schedule and calls
    maintenance.py  maintenance mode as the agent shows it
    checks.py       the checks' reports to the agent
    kvsession.py    the [kv] keys and their session
    catalog.py      has the registration reached the catalog?
    retired.py      registrations a reload left behind
    pending.py      a reload to try again
    tokenfile.py    the token file, watched: a rotated token is used without a reload
    notify.py       AMI and Consul events for accepted changes
    watch.py        the blocking query that wakes the worker
    status.py       Result and StatusSnapshot
"""

from .link import consul_client
from .status import Result, StatusSnapshot
from .worker import WORKER_THREAD_NAME, Registrar

__all__ = ["Registrar", "Result", "StatusSnapshot", "WORKER_THREAD_NAME", "consul_client"]
