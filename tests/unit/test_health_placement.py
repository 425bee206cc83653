"""The placement rules, one behaviour per test, and the report built on them."""

from __future__ import annotations

from xds.health.dimensions import DimensionSettings, Placement, place
from xds.health.placement import Rule, check, report
from xds.health.state import BrokerState, ClusterState, PartitionId, PartitionState

PATTERN = r"(?P<cluster>[^.]+)\.(?P<zone>.+)"
CELLS = [(c, z) for c in ("k8s-1", "k8s-2") for z in ("az-a", "az-b", "az-c")]
# broker id = 10 * cell + n: brokers 0, 10, ..., 50 one per cell, 1, 11, ..., 51 a second per cell
BROKERS = [BrokerState(10 * i + n, f"{c}.{z}") for i, (c, z) in enumerate(CELLS) for n in range(2)]


def cluster(*assignments: tuple[int, ...], isr: tuple[int, ...] | None = None, extra=(), min_isr=3):
    partitions = [
        PartitionState(PartitionId("t", i), r[0], r, r if isr is None else isr)
        for i, r in enumerate(assignments)
    ]
    return ClusterState.create("k", [*BROKERS, *extra], partitions, default_min_isr=min_isr)


def placement_of(state: ClusterState) -> Placement:
    return place(DimensionSettings(PATTERN), state.brokers.values())


def rules(state: ClusterState) -> set[tuple[Rule, str | None]]:
    return {(v.rule, v.dimension) for v in check(state, placement_of(state))}


def test_one_replica_per_cell_breaks_no_rule() -> None:
    assert rules(cluster((0, 10, 20, 30, 40, 50))) == set()


def test_spread_flags_a_zone_holding_too_many() -> None:
    # zones: az-a 3 (0, 1, 30), az-b 2, az-c 1; clusters 3/3
    assert (Rule.SPREAD, "zone") in rules(cluster((0, 1, 10, 30, 40, 50)))


def test_spread_allows_a_difference_of_one() -> None:
    # RF 4 over 3 zones: 2/1/1 is even enough; clusters 2/2
    assert rules(cluster((0, 30, 10, 50), min_isr=1)) == set()


def test_spread_requires_every_value_when_rf_reaches_it() -> None:
    # RF 3, zones a/b/b: az-c unused
    assert (Rule.SPREAD, "zone") in rules(cluster((0, 10, 40), min_isr=1))


def test_dimension_loss_flags_a_cluster_holding_too_many() -> None:
    # k8s-1 holds 4: losing it leaves 2 < 3
    assert (Rule.DIMENSION_LOSS, "cluster") in rules(cluster((0, 10, 20, 1, 30, 40)))


def test_dimension_loss_counts_min_isr_of_the_topic() -> None:
    state = cluster((0, 10, 20, 1, 30, 40))
    relaxed = ClusterState.create("k", BROKERS, state.partitions, {"t": 2})
    assert (Rule.DIMENSION_LOSS, "cluster") not in rules(relaxed)


def test_isr_at_risk_flags_in_sync_replicas_crowded_in_one_value() -> None:
    # placement fine, but only 0, 10, 20, 30 in sync: losing k8s-1 leaves 1
    found = rules(cluster((0, 10, 20, 30, 40, 50), isr=(0, 10, 20, 30)))
    assert (Rule.ISR_AT_RISK, "cluster") in found
    assert not any(rule is not Rule.ISR_AT_RISK for rule, _ in found)


def test_isr_at_risk_is_quiet_when_isr_survives() -> None:
    # one replica out of sync: losing either cluster still leaves 2 in sync
    assert rules(cluster((0, 10, 20, 30, 40, 50), isr=(0, 10, 30, 40, 50), min_isr=2)) == set()


def test_duplicate_broker_is_flagged() -> None:
    assert (Rule.DUPLICATE_BROKER, None) in rules(cluster((0, 0, 20, 30, 40, 50)))


def test_replica_on_unplaced_broker_is_flagged() -> None:
    assert (Rule.UNPLACED_REPLICA, None) in rules(
        cluster((0, 10, 20, 30, 40, 99), extra=[BrokerState(99, "ec2")])
    )


def test_replica_on_unknown_broker_is_flagged_unplaced() -> None:
    assert (Rule.UNPLACED_REPLICA, None) in rules(cluster((0, 10, 20, 30, 40, 77)))


def test_unplaced_replica_never_counts_as_a_survivor() -> None:
    # 5 placed (k8s-1: 3, k8s-2: 2) + 1 unplaced; losing k8s-1 leaves 2 known survivors
    found = rules(cluster((0, 10, 20, 30, 40, 99), extra=[BrokerState(99, "ec2")]))
    assert (Rule.DIMENSION_LOSS, "cluster") in found


def test_drained_replica_is_flagged() -> None:
    state = cluster((0, 10, 20, 30, 40, 50))
    found = {v.rule for v in check(state, placement_of(state), drained=[50, 51])}
    assert Rule.DRAINED_REPLICA in found


def test_report_counts_by_rule_and_topic() -> None:
    state = cluster((0, 0, 20, 30, 40, 50), (0, 10, 20, 30, 40, 50))
    summary = report(state, placement_of(state))
    assert summary.by_rule[Rule.DUPLICATE_BROKER] == 1
    assert summary.by_topic["t"][Rule.DUPLICATE_BROKER] == 1
    assert summary.worst[0][0] == PartitionId("t", 0)


def test_report_lists_unplaced_brokers_hosting_replicas() -> None:
    state = cluster((0, 10, 20, 30, 40, 99), (0, 10, 20, 30, 40, 99), extra=[BrokerState(99, "ec2")])
    assert dict(report(state, placement_of(state)).unplaced_hosting) == {99: 2}


def test_report_matrix_counts_replicas_and_leaders_per_cell() -> None:
    state = cluster((0, 10, 20, 30, 40, 50), (1, 11, 21, 31, 41, 51))
    matrix = report(state, placement_of(state)).matrix
    assert (matrix.rows, matrix.columns) == ("cluster", "zone")
    assert matrix.row_values == ("k8s-1", "k8s-2")
    assert matrix.column_values == ("az-a", "az-b", "az-c")
    assert matrix.cells[("k8s-1", "az-a")].replicas == 2
    assert matrix.cells[("k8s-1", "az-a")].leaders == 2
    assert matrix.cells[("k8s-2", "az-c")].leaders == 0
    assert matrix.cells[("k8s-2", "az-c")].brokers == 2
