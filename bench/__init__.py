"""Benchmarks of res_discovery_consul on the test bed: real Consul 1.8.7, real Asterisk 16.

    python -m bench                 every phase: the check endpoint vs /httpstatus, module
                                    load/unload per Consul state, memory over unload/load
                                    cycles, re-registration after an agent restart
    python -m bench.lifecycle       lifecycle figures: module load with Consul up, refusing
                                    and blackholed; load -> registered / passing; agent
                                    restart -> re-registered (resync 1s and the default)

Results: a table on stdout, JSON in bench/results/ (git-ignored).
"""
