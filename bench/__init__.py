"""Benchmarks of res_discovery_consul on the test bed: real Consul 1.8.7, real Asterisk 16.

    python -m bench                 every phase: the check endpoint vs /httpstatus, module
                                    load/unload per Consul state, memory over unload/load
                                    cycles, re-registration after an agent restart (resync
                                    1s, and the default in the lifecycle phase), ...
    python -m bench --only load,restart,lifecycle
                                    the lifecycle figures: module load with Consul up,
                                    refusing and blackholed; load -> registered / passing;
                                    agent restart -> re-registered

Results: a table on stdout, JSON in bench/results/ (git-ignored).
"""
