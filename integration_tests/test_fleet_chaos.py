"""The fleet under a seeded fault storm (integration_tests/fleet/chaos.py): overlapping faults
while SIPp calls through Kamailio, the invariants checked over the whole run."""

import os

from integration_tests.fleet import chaos
from integration_tests.fleet.dnswatch import Sample, dns_invariant

# The CI storm: a fixed seed, at least 5 minutes.
SEED = 22
MINUTES = float(os.environ.get("CHAOS_CI_MINUTES", "5"))


def test_the_same_seed_draws_the_same_overlapping_schedule_and_another_seed_another():
    first = chaos.schedule(SEED, MINUTES, 3)
    assert [(f.at, f.kind, f.target, f.hold) for f in first] == \
        [(f.at, f.kind, f.target, f.hold) for f in chaos.schedule(SEED, MINUTES, 3)]
    assert [(f.kind, f.target) for f in first] != \
        [(f.kind, f.target) for f in chaos.schedule(SEED + 1, MINUTES, 3)]
    # Faults overlap: some begins before the previous one's box is back.
    assert any(b.at < a.at + a.hold for a, b in zip(first, first[1:])), first
    # Never all boxes out at once, never one box twice at once, one server down at most.
    for f in first:
        concurrent = [g for g in first if g is not f and g.at <= f.at < g.at + g.hold
                      + chaos.BACK_BOUND_S.get(g.kind, 0)]
        assert f.target == "server" or f.target not in {g.target for g in concurrent}
        if f.target == "server":
            assert not any(g.target == "server" for g in concurrent)
    # One Asterisk lives through the storm (its threads and memory are compared).
    kept = chaos.long_lived(3)
    assert not [f for f in first if f.kind in chaos.RESTARTS and f.target == kept]
    assert [f for f in first if f.target == kept], "other faults still hit it"


def test_dns_listing_a_box_longer_than_the_bound_after_the_healthy_set_dropped_it_is_late():
    both, only_a = frozenset({"a", "b"}), frozenset({"a"})
    samples = [Sample(100.0, both, both),
               Sample(101.0, only_a, both),     # dropped at 101: DNS may lag up to 2 s
               Sample(102.0, None, both),       # no healthy answer (election): still dropped
               Sample(103.0, only_a, both),     # 2 s: within the bound
               Sample(103.5, only_a, both),     # 2.5 s: late
               Sample(104.0, both, both),       # back in the healthy set: listed rightly
               Sample(105.0, only_a, only_a)]
    checks, late = dns_invariant(samples, bound=2.0)
    assert checks == 13
    assert late == [(103.5, "b", 2.5)]


def test_fleet_storm_keeps_every_invariant(fleet, capsys):
    storm = chaos.Storm(fleet, SEED, MINUTES, log=lambda msg: None)
    run = storm.run()
    fleet.wait_steady(90)
    storm.sample_idle_end()
    verdict = chaos.check_invariants(storm, run, fleet.hold_ms)
    with capsys.disabled():
        print("\n" + chaos.table(verdict))
    assert set(verdict.figures["faults"]) >= {"kill9", "drain", "maintenance"}, verdict.figures
    assert all(verdict.checks.values()), verdict.checks
    compared = [k for k in verdict.figures["growth"] if "/" in k]
    assert compared, "no Asterisk process lived through the storm to compare"
    # The thread comparison saw the module's lasting threads, all of them, on every box.
    started = verdict.figures["growth"]["module threads (start, end)"]
    assert {start for start, _end in started.values()} == {len(chaos.LASTING_THREADS)}, started
    assert not verdict.violations, "\n".join(chaos.explain(storm, v)
                                             for v in verdict.violations)
