"""The GCS placement-group manager on its own: placement by strategy over
several nodes' reported resources, the two-phase commit with refusals and
retries, rescheduling after a node dies, and removal with its creator.
(It is a pure state machine: events in, actions out; the end-to-end tests
with real raylets are in test_placement_groups.py.)"""
from __future__ import annotations

from zray.gcs import placement_groups as pgm
from zray.gcs.actor_events import Reply, Warn

A, B, C = b"node-a", b"node-b", b"node-c"


class Nodes:
    def __init__(self, **cpus):
        self.view = {name.encode().replace(b"_", b"-"): ({"CPU": n}, {"CPU": n})
                     for name, n in cpus.items()}

    def __call__(self):
        return self.view


def _of(actions, kind):
    return [a for a in actions if type(a) is kind]


def _create(manager, pg_id, bundles, strategy="PACK", **extra):
    spec = dict(pg_id=pg_id, bundles=bundles, strategy=strategy, job_id=b"job1", **extra)
    return manager.create(("client", 1), spec, now=0.0)


def _commit_all(manager, pg_id, actions):
    """Answer every prepare with ok, then every commit; the actions of the last answer."""
    prepares = _of(actions, pgm.PrepareBundles)
    out = []
    for p in prepares:
        out = manager.on_prepared(p.node_id, pg_id, p.attempt, True, "", now=0.0)
    commits = _of(out, pgm.CommitBundles)
    for c in commits:
        out = manager.on_committed(c.node_id, pg_id, c.attempt, now=0.0)
    return prepares, commits, out


def test_pack_puts_every_bundle_on_one_node_when_it_fits():
    manager = pgm.PlacementGroupManager(Nodes(node_a=2, node_b=8))
    actions = _create(manager, b"g1", [{"CPU": 2}, {"CPU": 2}])
    prepares = _of(actions, pgm.PrepareBundles)
    assert [(p.node_id, [i for i, _ in p.bundles]) for p in prepares] == [(B, [0, 1])]


def test_pack_spills_over_nodes_when_no_single_node_fits():
    manager = pgm.PlacementGroupManager(Nodes(node_a=2, node_b=2))
    prepares = _of(_create(manager, b"g1", [{"CPU": 2}, {"CPU": 2}]), pgm.PrepareBundles)
    assert sorted(p.node_id for p in prepares) == [A, B]


def test_strict_pack_waits_instead_of_spanning_nodes():
    manager = pgm.PlacementGroupManager(Nodes(node_a=2, node_b=2))
    actions = _create(manager, b"g1", [{"CPU": 2}, {"CPU": 2}], "STRICT_PACK")
    assert not _of(actions, pgm.PrepareBundles)
    assert _of(actions, Reply)[0].ok and manager.get(b"g1")["state"] == "PENDING"
    assert _of(actions, Warn)     # even idle nodes could not hold it: said once


def test_spread_uses_distinct_nodes_and_strict_spread_needs_enough_of_them():
    manager = pgm.PlacementGroupManager(Nodes(node_a=4, node_b=4, node_c=4))
    prepares = _of(_create(manager, b"g1", [{"CPU": 1}] * 3, "SPREAD"), pgm.PrepareBundles)
    assert sorted(p.node_id for p in prepares) == [A, B, C]
    strict = _create(manager, b"g2", [{"CPU": 1}] * 4, "STRICT_SPREAD")
    assert not _of(strict, pgm.PrepareBundles)      # 4 bundles, 3 nodes: stays pending
    soft = _of(_create(manager, b"g3", [{"CPU": 1}] * 4, "SPREAD"), pgm.PrepareBundles)
    assert sum(len(p.bundles) for p in soft) == 4    # SPREAD may double up


def test_group_is_created_only_after_every_node_prepared_and_committed():
    manager = pgm.PlacementGroupManager(Nodes(node_a=1, node_b=1))
    actions = _create(manager, b"g1", [{"CPU": 1}, {"CPU": 1}])
    waiter = manager.wait_ready(("client", 2), b"g1", None, now=0.0)
    assert waiter == []   # deferred
    prepares, commits, out = _commit_all(manager, b"g1", actions)
    assert len(prepares) == 2 and len(commits) == 2
    assert manager.get(b"g1")["state"] == "CREATED"
    assert sorted(manager.get(b"g1")["bundle_nodes"]) == [A, B]
    assert Reply(("client", 2), True, True) in out


def test_a_refused_prepare_returns_the_others_and_retries_later():
    nodes = Nodes(node_a=1, node_b=1)
    manager = pgm.PlacementGroupManager(nodes)
    prepares = _of(_create(manager, b"g1", [{"CPU": 1}, {"CPU": 1}], "SPREAD"), pgm.PrepareBundles)
    first, second = prepares
    assert manager.on_prepared(first.node_id, b"g1", first.attempt, True, "", now=0.0) == []
    out = manager.on_prepared(second.node_id, b"g1", second.attempt, False, "busy", now=0.0)
    returned = _of(out, pgm.ReturnBundles)
    assert {r.node_id for r in returned} == {A, B}
    assert manager.get(b"g1")["state"] == "PENDING"
    assert manager.tick(now=0.05) == []                     # not before the retry delay
    retry = _of(manager.tick(now=1.0), pgm.PrepareBundles)
    assert retry and retry[0].attempt == first.attempt + 1
    # A late answer to the abandoned attempt changes nothing.
    assert manager.on_prepared(first.node_id, b"g1", first.attempt, True, "", now=1.0) == []


def test_bundles_on_a_dead_node_are_placed_again_first():
    nodes = Nodes(node_a=2, node_b=2)
    manager = pgm.PlacementGroupManager(nodes)
    _commit_all(manager, b"g1", _create(manager, b"g1", [{"CPU": 1}, {"CPU": 1}], "SPREAD"))
    assert manager.get(b"g1")["state"] == "CREATED"
    del nodes.view[A]
    out = manager.on_node_died(A, now=2.0)
    record = manager.get(b"g1")
    assert record["state"] == "RESCHEDULING"
    assert A not in record["bundle_nodes"] and B in record["bundle_nodes"]
    prepares = _of(out, pgm.PrepareBundles)
    assert [p.node_id for p in prepares] == [B] and len(prepares[0].bundles) == 1
    _commit_all(manager, b"g1", out)
    assert manager.get(b"g1")["bundle_nodes"] == [B, B]


def test_removal_returns_bundles_fails_waiters_and_frees_the_name():
    manager = pgm.PlacementGroupManager(Nodes(node_a=2))
    _commit_all(manager, b"g1", _create(manager, b"g1", [{"CPU": 1}], name="n", namespace="ns"))
    assert manager.get_by_name("n", "ns")["pg_id"] == b"g1"
    pending = _create(manager, b"g2", [{"CPU": 5}])
    assert not _of(pending, pgm.PrepareBundles)
    manager.wait_ready(("client", 3), b"g2", None, now=0.0)
    out = manager.remove(("client", 4), b"g1", now=0.0)
    assert _of(out, pgm.ReturnBundles) == [pgm.ReturnBundles(A, b"g1", (0,))]
    assert pgm.GroupRemoved(b"g1") in out
    assert manager.get_by_name("n", "ns") is None
    out = manager.remove(("client", 5), b"g2", now=0.0)
    failed = [r for r in _of(out, Reply) if r.request_ref == ("client", 3)]
    assert failed and not failed[0].ok


def test_a_wait_with_a_deadline_answers_false_when_it_passes():
    manager = pgm.PlacementGroupManager(Nodes(node_a=1))
    _create(manager, b"g1", [{"CPU": 4}])
    assert manager.wait_ready(("client", 2), b"g1", 0.5, now=0.0) == []
    assert manager.tick(now=0.2) == []
    assert Reply(("client", 2), True, False) in manager.tick(now=0.6)


def test_groups_go_with_their_creator_unless_detached():
    manager = pgm.PlacementGroupManager(Nodes(node_a=8))
    for pg_id, extra in [(b"job-owned", {}), (b"job-detached", {"detached": True}),
                         (b"actor-owned", {"creator_actor_id": b"actor1"})]:
        _commit_all(manager, pg_id, _create(manager, pg_id, [{"CPU": 1}], **extra))
    manager.on_job_finished(b"job1")
    assert manager.get(b"job-owned")["state"] == "REMOVED"
    assert manager.get(b"job-detached")["state"] == "CREATED"
    assert manager.get(b"actor-owned")["state"] == "CREATED"   # its creator is the actor
    manager.on_actor_dead(b"actor1")
    assert manager.get(b"actor-owned")["state"] == "REMOVED"


def test_bad_specs_are_refused_with_the_reason():
    manager = pgm.PlacementGroupManager(Nodes(node_a=1))
    for spec, words in [({"pg_id": b"x", "bundles": [], "strategy": "PACK"}, "non-empty"),
                        ({"pg_id": b"x", "bundles": [{"CPU": -1}], "strategy": "PACK"}, "bad bundle"),
                        ({"pg_id": b"x", "bundles": [{"CPU": 1}], "strategy": "NOPE"}, "strategy"),
                        ("not a dict", "dict")]:
        reply = _of(manager.create(("c", 1), spec, now=0.0), Reply)[0]
        assert not reply.ok and words in reply.payload[1]
