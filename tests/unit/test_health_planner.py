"""The planner: fewest moves to the rules, what it cannot fix, Kafka's JSON, migration batches."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xds.health.dimensions import DimensionSettings, Placement, place
from xds.health.placement import Rule, check
from xds.health.planner import Drain, Move, Plan, apply, parse_reassignment, plan, reassignment
from xds.health.state import BrokerState, ClusterState, PartitionId, PartitionState

PATTERN = r"(?P<cluster>[^.]+)\.(?P<zone>.+)"
CELLS = [(c, z) for c in ("k8s-1", "k8s-2") for z in ("az-a", "az-b", "az-c")]


def brokers(per_cell: int = 2) -> list[BrokerState]:
    """Broker 10 * cell + n: cells in CELLS order (0 k8s-1.az-a ... 5 k8s-2.az-c)."""
    return [BrokerState(10 * i + n, f"{c}.{z}") for i, (c, z) in enumerate(CELLS) for n in range(per_cell)]


def cluster(*assignments, members=None, min_isr=3, leaders=None) -> ClusterState:
    partitions = [
        PartitionState(PartitionId("t", i), (leaders or {}).get(i, r[0]), tuple(r), tuple(r))
        for i, r in enumerate(assignments)
    ]
    return ClusterState.create("k", members or brokers(), partitions, default_min_isr=min_isr)


def placement_of(state: ClusterState) -> Placement:
    return place(DimensionSettings(PATTERN), state.brokers.values())


def fixed(state: ClusterState, result: Plan, drained=()) -> set[tuple[Rule, PartitionId, str | None]]:
    """Violations left once the plan ran, less the ones it declared unfixable."""
    left = {
        (v.rule, v.partition, v.dimension)
        for v in check(apply(state, result.moves), placement_of(state), drained)
    }
    declared = {(u.violation.rule, u.violation.partition, u.violation.dimension) for u in result.unfixable}
    return {item for item in left if item[0] is not Rule.ISR_AT_RISK} - declared


def test_compliant_partition_is_left_alone() -> None:
    state = cluster((0, 10, 20, 30, 40, 50))
    assert plan(state, placement_of(state)).moves == ()


def test_skewed_partition_is_fixed_with_fewest_moves() -> None:
    # rack-unaware: everything in k8s-1 (two per zone); 3 must cross to k8s-2
    state = cluster((0, 1, 10, 11, 20, 21))
    result = plan(state, placement_of(state))
    assert result.replica_moves == 3
    assert check(apply(state, result.moves), placement_of(state)) == ()


def test_rack_aware_like_assignment_needs_only_the_cluster_fix() -> None:
    # Kafka's rack-aware assignment over 6 racks puts one replica per rack: nothing moves
    racks = [(0, 10, 20, 30, 40, 50), (11, 21, 31, 41, 51, 1), (20, 30, 40, 50, 0, 10)]
    state = cluster(*racks)
    assert plan(state, placement_of(state)).moves == ()


def test_plan_keeps_the_preferred_leader() -> None:
    state = cluster((0, 1, 10, 11, 20, 21))
    (move,) = plan(state, placement_of(state)).moves
    assert move.after[0] == 0


def test_plan_keeps_the_current_leader_when_it_is_not_first() -> None:
    state = cluster((0, 1, 10, 11, 20, 21), leaders={0: 11})
    (move,) = plan(state, placement_of(state)).moves
    assert 11 in move.after


def test_plan_moves_replicas_off_unplaced_brokers() -> None:
    state = cluster((0, 10, 20, 30, 40, 99), members=[*brokers(), BrokerState(99, "ec2")])
    (move,) = plan(state, placement_of(state)).moves
    assert 99 not in move.after
    assert move.replica_moves == 1


def test_plan_replaces_a_duplicate_broker() -> None:
    state = cluster((0, 0, 20, 30, 40, 50))
    (move,) = plan(state, placement_of(state)).moves
    assert len(set(move.after)) == 6


def test_plan_adds_to_the_least_loaded_broker() -> None:
    # cell k8s-2.az-c: broker 50 holds a replica elsewhere, 51 none
    state = cluster((0, 10, 20, 30, 40, 1), (1, 11, 21, 31, 41, 50))
    (move,) = plan(state, placement_of(state)).moves
    assert move.after == (0, 10, 20, 30, 40, 51)


def test_plan_does_not_move_onto_fenced_brokers() -> None:
    members = [BrokerState(b.broker_id, b.rack, fenced=b.broker_id == 51) for b in brokers()]
    state = cluster((0, 10, 20, 30, 40, 1), (1, 11, 21, 31, 41, 50), members=members)
    (move,) = plan(state, placement_of(state)).moves
    assert 51 not in move.after


def test_zone_with_too_few_brokers_is_unfixable_with_reason() -> None:
    members = [b for b in brokers(1) if b.broker_id not in (20,)]  # k8s-1 has no az-c
    state = cluster((0, 0, 10, 30, 40, 50), members=members)
    result = plan(state, placement_of(state))
    assert fixed(state, result) == set()
    reasons = [u.reason for u in result.unfixable]
    assert any("RF 6 needs 6 brokers" in reason for reason in reasons)


def test_rf_too_small_to_lose_a_cluster_is_unfixable_with_reason() -> None:
    state = cluster((0, 10, 30), min_isr=2)
    result = plan(state, placement_of(state))
    (unfixable,) = result.unfixable
    assert unfixable.violation.rule is Rule.DIMENSION_LOSS
    assert "raise RF" in unfixable.reason


def test_lagging_isr_is_unfixable_and_moves_nothing() -> None:
    partition = PartitionState(PartitionId("t", 0), 0, (0, 10, 20, 30, 40, 50), (0, 10))
    state = ClusterState.create("k", brokers(), [partition], default_min_isr=3)
    result = plan(state, placement_of(state))
    assert result.moves == ()
    assert {u.violation.rule for u in result.unfixable} == {Rule.ISR_AT_RISK}


def test_topics_limit_the_plan() -> None:
    base = cluster((0, 1, 10, 11, 20, 21))
    other = PartitionState(PartitionId("u", 0), 0, (0, 1, 10, 11, 20, 21), (0, 1, 10, 11, 20, 21))
    state = ClusterState.create("k", brokers(), [*base.partitions, other], default_min_isr=3)
    assert {m.partition.topic for m in plan(state, placement_of(state), topics=["u"]).moves} == {"u"}


def test_drain_by_ids_empties_the_brokers() -> None:
    state = cluster((0, 10, 20, 30, 40, 50), (1, 11, 21, 31, 41, 51))
    result = plan(state, placement_of(state), drain=Drain(broker_ids=frozenset({50})))
    assert result.drained == {50}
    assert all(50 not in m.after for m in result.moves)
    assert result.replica_moves == 1


def test_drain_by_rack_pattern_selects_matching_brokers() -> None:
    members = [*brokers(), BrokerState(90, "ec2"), BrokerState(91, "ec2")]
    state = cluster((0, 10, 20, 30, 40, 90), members=members)
    assert plan(state, placement_of(state), drain=Drain(rack_pattern="ec2")).drained == {90, 91}


def test_drain_by_dimension_value_selects_its_brokers() -> None:
    state = cluster((0, 10, 20, 30, 40, 50))
    drain = Drain(dimension_values={"cluster": "k8s-2", "zone": "az-c"})
    assert plan(state, placement_of(state), drain=drain).drained == {50, 51}


def test_drain_needs_a_criterion() -> None:
    with pytest.raises(ValueError, match="needs broker ids"):
        Drain()


def test_drain_rejects_an_unknown_dimension() -> None:
    state = cluster((0, 10, 20, 30, 40, 50))
    with pytest.raises(ValueError, match="drain names dimensions"):
        plan(state, placement_of(state), drain=Drain(dimension_values={"region": "x"}))


def test_single_dimension_is_planned_too() -> None:
    members = [BrokerState(b, f"az-{'abc'[b % 3]}") for b in range(6)]
    partition = PartitionState(PartitionId("t", 0), 0, (0, 3, 1), (0, 3, 1))
    state = ClusterState.create("k", members, [partition], default_min_isr=2)
    zones = place(DimensionSettings(r"(?P<zone>.+)"), members)
    (move,) = plan(state, zones).moves
    assert check(apply(state, [move]), zones) == ()
    assert move.replica_moves == 1


def test_batches_hold_at_most_size_replica_moves() -> None:
    state = cluster(*[(0, 1, 10, 11, 20, 21)] * 5)
    batches = plan(state, placement_of(state)).batches(7)
    assert [sum(m.replica_moves for m in batch) for batch in batches] == [6, 6, 3]


def test_batches_never_split_a_partition() -> None:
    state = cluster((0, 1, 10, 11, 20, 21))
    assert [len(batch) for batch in plan(state, placement_of(state)).batches(1)] == [1]


def test_reassignment_json_is_kafkas_format() -> None:
    move = Move(PartitionId("t", 0), (1, 2, 3), (1, 2, 4))
    assert reassignment([move]) == {
        "version": 1,
        "partitions": [
            {"topic": "t", "partition": 0, "replicas": [1, 2, 4], "log_dirs": ["any", "any", "any"]}
        ],
    }
    assert "log_dirs" not in reassignment([move], log_dirs=False)["partitions"][0]


def test_parse_reassignment_rejects_another_version() -> None:
    with pytest.raises(ValueError, match="version"):
        parse_reassignment('{"version": 2, "partitions": []}')


# --- properties on generated 2 x 3 clusters ---------------------------------------------------------


@st.composite
def clusters(draw):
    per_cell = draw(st.lists(st.integers(1, 3), min_size=6, max_size=6))
    members = [
        BrokerState(10 * i + n, f"{c}.{z}") for i, (c, z) in enumerate(CELLS) for n in range(per_cell[i])
    ]
    if draw(st.booleans()):
        members.append(BrokerState(99, "ec2"))  # unplaced: its replicas must move
    ids = [b.broker_id for b in members]
    rf = draw(st.integers(1, min(6, len(ids))))
    min_isr = draw(st.integers(1, rf))
    count = draw(st.integers(1, 12))
    partitions = []
    for index in range(count):
        replicas = tuple(draw(st.lists(st.sampled_from(ids), min_size=rf, max_size=rf)))
        partitions.append(
            PartitionState(PartitionId(f"t{index % 3}", index), replicas[0], replicas, replicas)
        )
    return ClusterState.create("k", members, partitions, default_min_isr=min_isr)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(clusters())
def test_planned_assignment_has_no_fixable_violation_left(state: ClusterState) -> None:
    assert fixed(state, plan(state, placement_of(state))) == set()


@PROPERTY
@given(clusters())
def test_only_a_too_small_rf_stays_unfixable_when_every_cell_has_brokers(state: ClusterState) -> None:
    for left in plan(state, placement_of(state)).unfixable:
        assert left.violation.rule is Rule.DIMENSION_LOSS, left


@PROPERTY
@given(clusters())
def test_plan_preserves_replica_counts(state: ClusterState) -> None:
    for move in plan(state, placement_of(state)).moves:
        assert len(move.after) == len(move.before)
        assert len(set(move.after)) == len(move.after)


@PROPERTY
@given(clusters())
def test_replica_moves_equal_the_diff(state: ClusterState) -> None:
    result = plan(state, placement_of(state))
    after = apply(state, result.moves)
    diff = sum(
        len(set(new.replicas) - set(old.replicas))
        for old, new in zip(state.partitions, after.partitions, strict=True)
    )
    assert result.replica_moves == diff


@PROPERTY
@given(clusters())
def test_plan_json_round_trips(state: ClusterState) -> None:
    result = plan(state, placement_of(state))
    text = json.dumps(result.reassignment())
    assert parse_reassignment(text) == {m.partition: m.after for m in result.moves}


@PROPERTY
@given(clusters(), st.integers(1, 10))
def test_migration_drains_and_keeps_the_rules_per_batch(state: ClusterState, size: int) -> None:
    drain = Drain(dimension_values={"cluster": "k8s-2", "zone": "az-c"})
    placement = placement_of(state)
    result = plan(state, placement, drain=drain)
    assert fixed(state, result, result.drained) == set()
    done = state
    for batch in result.batches(size):
        assert sum(m.replica_moves for m in batch) <= size or len(batch) == 1
        done = apply(done, batch)
        for partition, before in zip(done.partitions, state.partitions, strict=True):
            assert len(partition.replicas) == len(before.replicas)
    assert all(
        not set(p.replicas) & result.drained
        for p in done.partitions
        if p.id in {m.partition for m in result.moves}
    )


def test_batches_by_partitions_hold_at_most_size_partitions() -> None:
    state = cluster(*[(0, 1, 10, 11, 20, 21)] * 5)
    batches = plan(state, placement_of(state)).batches(2, partitions=True)
    assert [len(batch) for batch in batches] == [2, 2, 1]
