"""Broker readiness and the restart plan, rule by rule: a gated rolling restart never takes a partition
below min.insync.replicas."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from xds.health.readiness import (
    BlockKind,
    ReadinessThresholds,
    ReasonKind,
    broker_readiness,
    every_broker_readiness,
    restart_plan,
)
from xds.health.state import NO_LEADER, BrokerState, ClusterState, PartitionId, PartitionState


def _partition(
    topic: str, n: int, replicas: tuple[int, ...], isr: tuple[int, ...] | None = None
) -> PartitionState:
    isr = replicas if isr is None else isr
    return PartitionState(PartitionId(topic, n), isr[0] if isr else NO_LEADER, replicas, isr)


def _cluster(
    partitions: list[PartitionState], brokers: tuple[int, ...] = (1, 2, 3), min_isr: int = 2
) -> ClusterState:
    return ClusterState.create(
        "kafka-a", (BrokerState(b) for b in brokers), partitions, default_min_isr=min_isr
    )


def _rf3(isr_without: int | None = None, topic: str = "t", count: int = 6) -> ClusterState:
    """RF 3 / min ISR 2 over brokers 1-3, replicas rotating; `isr_without` is a stopped broker."""
    partitions = []
    for n in range(count):
        replicas = tuple((n + i) % 3 + 1 for i in range(3))
        isr = tuple(b for b in replicas if b != isr_without)
        partitions.append(_partition(topic, n, replicas, isr))
    return _cluster(partitions)


def _without_in_isr(state: ClusterState, broker_id: int) -> ClusterState:
    """The state once `broker_id` stopped: out of every ISR, and not the leader any more."""
    partitions = []
    for p in state.partitions:
        isr = tuple(b for b in p.isr if b != broker_id)
        leader = p.leader if p.leader != broker_id else (isr[0] if isr else NO_LEADER)
        partitions.append(replace(p, isr=isr, leader=leader))
    return replace(state, partitions=tuple(partitions))


# -- all in sync ------------------------------------------------------------------------------------


def test_all_in_sync_every_broker_is_ready():
    state = _rf3()
    for broker in (1, 2, 3):
        readiness = broker_readiness(state, broker)
        assert readiness.ready
        assert readiness.reasons == ()


def test_all_in_sync_every_broker_is_restartable():
    plan = restart_plan(_rf3())
    assert plan.restartable == (1, 2, 3)
    assert plan.blocked == ()


# -- the broker itself ------------------------------------------------------------------------------


def test_a_broker_missing_from_an_isr_it_hosts_is_not_ready():
    state = _cluster([_partition("t", 0, (1, 2, 3), (1, 3)), _partition("t", 1, (1, 2, 3))])
    readiness = broker_readiness(state, 2, ReadinessThresholds(max_at_min_isr=10))
    assert not readiness.ready
    assert [r.kind for r in readiness.reasons] == [ReasonKind.NOT_IN_ISR]
    assert readiness.reasons[0].count == 1
    assert readiness.reasons[0].examples == (PartitionId("t", 0),)


def test_a_restarted_broker_not_back_in_the_isr_is_not_ready():
    state = _rf3(isr_without=2)
    readiness = broker_readiness(state, 2)
    assert not readiness.ready
    not_in_isr = next(r for r in readiness.reasons if r.kind is ReasonKind.NOT_IN_ISR)
    assert not_in_isr.count == 6


def test_a_restarted_broker_back_in_every_isr_is_ready():
    assert broker_readiness(_rf3(isr_without=None), 2).ready


def test_a_broker_on_an_offline_log_dir_is_not_in_sync_even_if_listed_in_the_isr():
    partition = replace(_partition("t", 0, (1, 2, 3)), offline_replicas=(2,))
    readiness = broker_readiness(_cluster([partition]), 2, ReadinessThresholds(max_at_min_isr=1))
    assert [r.kind for r in readiness.reasons] == [ReasonKind.NOT_IN_ISR]


def test_an_unregistered_broker_hosting_partitions_is_not_ready():
    state = _cluster([_partition("t", 0, (1, 2, 3))], brokers=(1, 3))
    kinds = [r.kind for r in broker_readiness(state, 2).reasons]
    assert ReasonKind.NOT_REGISTERED in kinds
    assert ReasonKind.NOT_IN_ISR in kinds


def test_an_unregistered_broker_hosting_nothing_is_unknown():
    readiness = broker_readiness(_rf3(), 7)
    assert not readiness.ready
    assert [r.kind for r in readiness.reasons] == [ReasonKind.UNKNOWN]


def test_a_fenced_broker_is_not_ready():
    state = replace(_rf3(), brokers={1: BrokerState(1), 2: BrokerState(2, fenced=True), 3: BrokerState(3)})
    kinds = [r.kind for r in broker_readiness(state, 2).reasons]
    assert kinds[0] is ReasonKind.FENCED


def test_a_registered_broker_hosting_nothing_is_ready_in_a_healthy_cluster():
    state = _cluster([_partition("t", 0, (1, 2, 3))], brokers=(1, 2, 3, 4))
    assert broker_readiness(state, 4).ready


def test_a_fenced_broker_left_in_an_isr_does_not_count_as_in_sync():
    state = replace(_rf3(), brokers={1: BrokerState(1), 2: BrokerState(2, fenced=True), 3: BrokerState(3)})
    readiness = broker_readiness(state, 1)
    at_min = next(r for r in readiness.reasons if r.kind is ReasonKind.AT_MIN_ISR)
    assert at_min.count == 6


# -- the cluster ------------------------------------------------------------------------------------


def test_one_stopped_broker_puts_exactly_its_partitions_at_min_isr_for_the_others():
    partitions = [
        _partition("t", 0, (1, 2, 3), (1, 3)),
        _partition("t", 1, (2, 3, 4), (3, 4)),
        _partition("t", 2, (1, 3, 4)),
    ]
    state = _cluster(partitions, brokers=(1, 3, 4))  # broker 2 stopped
    for broker in (1, 3, 4):
        readiness = broker_readiness(state, broker)
        assert not readiness.ready
        assert [r.kind for r in readiness.reasons] == [ReasonKind.AT_MIN_ISR]
        assert readiness.reasons[0].examples == (PartitionId("t", 0), PartitionId("t", 1))


def test_one_stopped_broker_blocks_the_restart_of_every_broker_sharing_its_partitions():
    partitions = [
        _partition("t", 0, (1, 2, 3), (1, 3)),
        _partition("t", 1, (2, 4, 5), (4, 5)),
        _partition("t", 2, (3, 5, 6)),
    ]
    state = _cluster(partitions, brokers=(1, 3, 4, 5, 6))
    plan = restart_plan(state)
    assert plan.blocked == (1, 3, 4, 5)
    assert plan.restartable == (2, 6)
    assert [b.kind for b in plan.broker(1).blockers] == [BlockKind.AT_MIN_ISR]
    assert [str(b.partition) for b in plan.broker(5).blockers] == ["t-1"]


def test_while_a_restarted_broker_catches_up_no_other_broker_is_ready():
    state = _rf3(isr_without=2)  # broker 2 registered again, not yet back in any ISR
    assert [broker_readiness(state, b).ready for b in (1, 2, 3)] == [False, False, False]


def test_a_partition_without_leader_is_offline():
    state = _cluster([_partition("t", 0, (1, 2, 3), ()), _partition("t", 1, (1, 2, 3))])
    readiness = broker_readiness(state, 1)
    offline = [r for r in readiness.reasons if r.kind is ReasonKind.OFFLINE]
    assert offline and offline[0].examples == (PartitionId("t", 0),)


def test_a_partition_whose_isr_is_all_offline_is_offline_even_with_a_leader():
    partition = replace(_partition("t", 0, (1, 2, 3), (2,)), offline_replicas=(2,))
    kinds = [r.kind for r in broker_readiness(_cluster([partition]), 1).reasons if r.kind.is_cluster_wide]
    assert kinds == [ReasonKind.OFFLINE]


def test_a_partition_below_min_isr_is_under_min_isr():
    state = _cluster([_partition("t", 0, (1, 2, 3), (3,))])
    kinds = [r.kind for r in broker_readiness(state, 1).reasons if r.kind.is_cluster_wide]
    assert kinds == [ReasonKind.UNDER_MIN_ISR]


def test_a_partition_above_min_isr_but_short_of_its_replicas_is_under_replicated():
    state = _cluster([_partition("t", 0, (1, 2, 3, 4), (1, 3, 4))], brokers=(1, 2, 3, 4))
    readiness = broker_readiness(state, 1)
    assert [r.kind for r in readiness.reasons] == [ReasonKind.UNDER_REPLICATED]


def test_a_partition_at_min_isr_by_configuration_is_not_degraded():
    state = _cluster([_partition("t", 0, (1, 2))], min_isr=2)
    assert broker_readiness(state, 1).ready


def test_a_partition_is_counted_in_its_worst_class_only():
    state = _cluster([_partition("t", 0, (1, 2, 3), (3,))])
    readiness = broker_readiness(state, 3)
    assert [(r.kind, r.count) for r in readiness.reasons] == [(ReasonKind.UNDER_MIN_ISR, 1)]


def test_per_topic_min_isr_overrides_the_default():
    state = replace(_cluster([_partition("t", 0, (1, 2, 3), (1, 3))], min_isr=1), min_isr_by_topic={"t": 3})
    kinds = [r.kind for r in broker_readiness(state, 1).reasons]
    assert kinds == [ReasonKind.UNDER_MIN_ISR]


# -- thresholds -------------------------------------------------------------------------------------


def test_default_thresholds_tolerate_no_degraded_partition():
    assert ReadinessThresholds() == ReadinessThresholds(0, 0, 0, 0)


def test_a_degraded_class_within_its_threshold_is_tolerated_not_a_reason():
    state = _cluster([_partition("t", 0, (1, 2, 3, 4), (1, 3, 4))], brokers=(1, 2, 3, 4))
    readiness = broker_readiness(state, 1, ReadinessThresholds(max_under_replicated=1))
    assert readiness.ready
    assert [r.kind for r in readiness.tolerated] == [ReasonKind.UNDER_REPLICATED]


def test_a_degraded_class_over_its_threshold_is_a_reason():
    partitions = [_partition("t", n, (1, 2, 3, 4), (1, 3, 4)) for n in range(2)]
    state = _cluster(partitions, brokers=(1, 2, 3, 4))
    readiness = broker_readiness(state, 1, ReadinessThresholds(max_under_replicated=1))
    assert not readiness.ready
    assert readiness.reasons[0].count == 2


def test_a_threshold_of_one_class_does_not_loosen_another():
    state = _rf3(isr_without=3)
    readiness = broker_readiness(state, 1, ReadinessThresholds(max_under_replicated=100))
    assert [r.kind for r in readiness.reasons] == [ReasonKind.AT_MIN_ISR]


def test_no_threshold_loosens_the_brokers_own_isr_membership():
    loose = ReadinessThresholds(100, 100, 100, 100)
    assert not broker_readiness(_rf3(isr_without=2), 2, loose).ready


def test_examples_are_capped_by_the_thresholds():
    readiness = broker_readiness(_rf3(isr_without=2), 2, ReadinessThresholds(examples=2))
    assert all(len(r.examples) <= 2 for r in readiness.reasons)
    assert readiness.reasons[0].count == 6


# -- summary lines ----------------------------------------------------------------------------------


def test_summary_of_a_ready_broker():
    assert (
        broker_readiness(_rf3(), 1).summary()
        == "ready: broker 1 in sync (6 partitions hosted); cluster in sync"
    )


def test_summary_of_a_broker_catching_up_with_a_cluster_reason():
    partitions = [_partition("t", n, (1, 2, 3), (1, 3)) for n in range(3)] + [
        _partition("u", 0, (1, 3, 4), (4,))
    ]
    state = _cluster(partitions, brokers=(1, 2, 3, 4))
    thresholds = ReadinessThresholds(max_at_min_isr=3)
    assert broker_readiness(state, 2, thresholds).summary() == (
        "not ready: broker 2 not in ISR of 3 partitions (t-0, t-1, t-2); "
        "cluster: 1 under-min-ISR partition (u-0); tolerated: 3 at-min-ISR partitions (t-0, t-1, t-2), max 3"
    )


def test_summary_elides_examples_beyond_the_limit():
    summary = broker_readiness(_rf3(isr_without=2), 2).summary()
    assert summary.startswith(
        "not ready: broker 2 not in ISR of 6 partitions (t-0, t-1, t-2, ...); cluster: "
    )
    assert "6 at-min-ISR partitions (t-0, t-1, t-2, ...)" in summary


def test_summary_of_a_broker_in_sync_in_a_degraded_cluster():
    assert broker_readiness(_rf3(isr_without=3), 1).summary() == (
        "not ready: broker 1 in sync; cluster: 6 at-min-ISR partitions (t-0, t-1, t-2, ...)"
    )


def test_summary_of_a_fenced_and_unknown_broker():
    fenced = replace(_rf3(), brokers={1: BrokerState(1), 2: BrokerState(2, fenced=True), 3: BrokerState(3)})
    assert broker_readiness(fenced, 2).summary().startswith("not ready: broker 2 fenced, not in ISR of 6")
    assert broker_readiness(_rf3(), 9).summary() == (
        "not ready: broker 9 unknown (not registered, hosts no partition)"
    )


def test_summary_of_a_ready_broker_with_tolerated_degradation():
    state = _cluster([_partition("t", 0, (1, 2, 3, 4), (1, 3, 4))], brokers=(1, 2, 3, 4))
    summary = broker_readiness(state, 1, ReadinessThresholds(max_under_replicated=5)).summary()
    assert summary == (
        "ready: broker 1 in sync (1 partition hosted); tolerated: 1 under-replicated partition (t-0), max 5"
    )


# -- restart plan -----------------------------------------------------------------------------------


def test_a_broker_in_an_isr_at_min_isr_is_not_restartable():
    plan = restart_plan(_cluster([_partition("t", 0, (1, 2, 3), (1, 2))]))
    assert plan.blocked == (1, 2)
    assert plan.broker(1).blockers[0].kind is BlockKind.AT_MIN_ISR


def test_a_broker_in_an_isr_below_min_isr_is_not_restartable():
    plan = restart_plan(_cluster([_partition("t", 0, (1, 2, 3), (1,))], min_isr=2))
    assert plan.broker(1).blockers[0].kind is BlockKind.UNDER_MIN_ISR


def test_a_broker_outside_the_isr_is_restartable_whatever_the_partition():
    plan = restart_plan(_cluster([_partition("t", 0, (1, 2, 3), (1,))], min_isr=2))
    assert plan.broker(2).restartable
    assert plan.broker(3).restartable


def test_the_last_in_sync_replica_is_not_restartable_even_without_min_isr():
    plan = restart_plan(_cluster([_partition("t", 0, (1, 2), (1,))], min_isr=0))
    assert plan.broker(1).blockers[0].kind is BlockKind.LAST_IN_SYNC


def test_an_in_sync_replica_of_a_leaderless_partition_is_not_restartable():
    partition = replace(_partition("t", 0, (1, 2, 3)), leader=NO_LEADER)
    assert restart_plan(_cluster([partition], min_isr=1)).broker(2).blockers[0].kind is BlockKind.OFFLINE


def test_replication_factor_equal_to_min_isr_blocks_every_replica():
    plan = restart_plan(_cluster([_partition("t", 0, (1, 2))], min_isr=2))
    assert plan.blocked == (1, 2)


def test_restart_plan_summaries():
    plan = restart_plan(_rf3(isr_without=3))
    assert plan.broker(3).summary() == "broker 3 restartable"
    assert plan.broker(1).summary() == (
        "broker 1 blocked by 6 partitions: "
        "t-0 at-min-isr (2/2), t-1 at-min-isr (2/2), t-2 at-min-isr (2/2), ..."
    )


def test_a_broker_the_cluster_does_not_know_blocks_nothing():
    assert restart_plan(_rf3()).broker(42).restartable


# -- the property ----------------------------------------------------------------------------------


@st.composite
def _states(draw: st.DrawFn) -> ClusterState:
    broker_ids = draw(st.lists(st.integers(0, 6), min_size=1, max_size=6, unique=True))
    brokers = [BrokerState(b, fenced=draw(st.booleans()) and draw(st.booleans())) for b in broker_ids]
    pool = sorted(set(broker_ids) | set(draw(st.lists(st.integers(0, 8), max_size=2))))
    partitions = []
    for n in range(draw(st.integers(0, 8))):
        replicas = tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4, unique=True)))
        isr = tuple(b for b in replicas if draw(st.booleans()))
        offline = tuple(b for b in replicas if draw(st.integers(0, 5)) == 0)
        leader = draw(st.sampled_from([*isr, NO_LEADER])) if isr else NO_LEADER
        partitions.append(
            PartitionState(PartitionId(draw(st.sampled_from("ab")), n), leader, replicas, isr, offline)
        )
    min_isr = {topic: draw(st.integers(0, 4)) for topic in "ab" if draw(st.booleans())}
    return ClusterState.create("k", brokers, partitions, min_isr, draw(st.integers(1, 3)))


def _in_sync_count(state: ClusterState, partition: PartitionState) -> int:
    return sum(
        1
        for b in partition.isr
        if b not in partition.offline_replicas and b in state.brokers and not state.brokers[b].fenced
    )


@settings(max_examples=400)
@given(_states())
def test_restarting_a_restartable_broker_never_takes_a_partition_below_min_isr(state: ClusterState):
    for broker_id in restart_plan(state).restartable:
        after = _without_in_isr(state, broker_id)
        for before_p, after_p in zip(state.partitions, after.partitions, strict=True):
            before_n, after_n = _in_sync_count(state, before_p), _in_sync_count(after, after_p)
            if after_n != before_n:  # only partitions the restart touches
                assert after_n >= max(state.min_isr(before_p.id.topic), 1)
                assert before_p.has_leader


@settings(max_examples=300)
@given(_states(), st.integers(0, 8))
def test_a_broker_ready_at_the_default_thresholds_means_every_partition_is_fully_in_sync(
    state: ClusterState, broker_id: int
):
    if broker_readiness(state, broker_id).ready:
        for partition in state.partitions:
            assert partition.has_leader
            assert _in_sync_count(state, partition) == len(partition.replicas)


@settings(max_examples=300)
@given(_states(), st.integers(0, 3))
def test_every_broker_readiness_is_each_brokers_own_answer(state: ClusterState, limit: int):
    thresholds = ReadinessThresholds(max_at_min_isr=limit, max_under_replicated=limit, examples=2)
    every = every_broker_readiness(state, thresholds)
    assert list(every) == [restart.broker_id for restart in restart_plan(state).brokers]
    assert every == {b: broker_readiness(state, b, thresholds) for b in every}
