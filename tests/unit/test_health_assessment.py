"""What one poll decides (xds.health.assessment): every broker's readiness, the restart plan,
partitions by state, the placement report with the cells to blame, and which new topics break
placement."""

from __future__ import annotations

from tests.support.health import cluster, orders, settings, stopped, topic
from xds.health.assessment import HealthRules, assess, new_topic_anomalies
from xds.health.placement import Rule
from xds.health.readiness import ReasonKind
from xds.health.state import PartitionId

RULES = HealthRules.from_settings(settings())


def test_rules_take_the_thresholds_and_placement_of_the_settings():
    rules = HealthRules.from_settings(
        settings(
            readiness={"max_under_replicated": 2, "examples": 7}, placement={"brokers": {1: {"zone": "a"}}}
        )
    )
    assert rules.thresholds.max_under_replicated == 2 and rules.thresholds.examples == 7
    assert rules.dimensions is not None and rules.dimensions.dimensions == ("zone",)
    assert HealthRules.from_settings(settings(with_placement=False)).dimensions is None


def test_all_in_sync_every_broker_is_ready_and_restartable():
    assessment = assess(cluster(orders()), RULES)
    assert sorted(assessment.readiness) == [1, 2, 3, 4]
    assert all(r.ready for r in assessment.readiness.values())
    assert assessment.plan.restartable == (1, 2, 3, 4)
    assert dict(assessment.partitions) == {kind: 0 for kind in assessment.partitions}
    assert assessment.in_sync == 4


def test_one_broker_stopped_puts_its_partitions_at_min_isr_for_every_other_broker():
    assessment = assess(stopped(cluster(orders()), 4), RULES)
    assert assessment.partitions[ReasonKind.AT_MIN_ISR] == 3  # orders-1, -2, -3 hold broker 4
    assert assessment.in_sync == 1
    for broker_id in (1, 2, 3):
        (reason,) = assessment.readiness[broker_id].reasons
        assert reason.kind is ReasonKind.AT_MIN_ISR
        assert reason.examples == tuple(PartitionId("orders", n) for n in (1, 2, 3))
    assert [r.kind for r in assessment.readiness[4].reasons][0] is ReasonKind.NOT_REGISTERED
    assert assessment.plan.restartable == (4,)  # every other broker shares an at-min-ISR partition


def test_a_broker_the_cluster_does_not_know_is_unknown_with_the_clusters_reasons():
    assessment = assess(stopped(cluster(orders()), 4), RULES)
    readiness = assessment.broker(42)
    assert readiness.broker_id == 42 and not readiness.ready
    assert [r.kind for r in readiness.reasons] == [ReasonKind.UNKNOWN, ReasonKind.AT_MIN_ISR]


def test_without_placement_settings_there_is_no_report():
    assessment = assess(cluster(orders()), HealthRules.from_settings(settings(with_placement=False)))
    assert assessment.report is None and assessment.placement is None
    assert dict(assessment.cell_violations) == {}


def test_the_cells_to_blame_are_those_of_the_overloaded_value():
    # (1, 2) are both in k8s-1 (zones az-a, az-b): k8s-2's cells hold none of it and are not blamed
    assessment = assess(cluster([*topic("skewed", (1, 2))], min_isr=1), RULES)
    assert assessment.report is not None
    assert {v.rule for v in assessment.report.violations} == {
        Rule.SPREAD,
        Rule.DIMENSION_LOSS,
        Rule.ISR_AT_RISK,
    }
    assert dict(assessment.cell_violations) == {("k8s-1", "az-a"): 1, ("k8s-1", "az-b"): 1}


def test_a_duplicate_replica_blames_its_brokers_cell():
    assessment = assess(cluster([*topic("twice", (1, 1, 3))], min_isr=1), RULES)
    assert assessment.cell_violations[("k8s-1", "az-a")] == 1


def test_topics_of_the_first_poll_are_no_anomaly():
    assessment = assess(cluster([*topic("skewed", (1, 2))], min_isr=1), RULES)
    assert new_topic_anomalies(None, assessment, detected_at=1.0) == ()


def test_a_new_topic_breaking_placement_is_an_anomaly_naming_its_rules_and_partitions():
    before = assess(cluster(orders(), min_isr=1), RULES)
    after = assess(cluster([*orders(), *topic("skewed", (1, 2), (2, 1), (1, 4))], min_isr=1), RULES)
    (anomaly,) = new_topic_anomalies(before.topics, after, detected_at=5.0)
    assert anomaly.topic == "skewed" and anomaly.detected_at == 5.0
    assert dict(anomaly.rules) == {Rule.SPREAD: 2, Rule.DIMENSION_LOSS: 2}
    assert anomaly.partitions == (PartitionId("skewed", 0), PartitionId("skewed", 1))  # not skewed-2
    assert anomaly.describe() == "topic skewed breaks spread (2), dimension-loss (2): skewed-0, skewed-1"


def test_a_new_topic_placed_well_is_no_anomaly():
    before = assess(cluster(orders(), min_isr=1), RULES)
    after = assess(cluster([*orders(), *topic("fine", (1, 4), (2, 3))], min_isr=1), RULES)
    assert new_topic_anomalies(before.topics, after, detected_at=5.0) == ()


def test_isr_at_risk_alone_is_no_anomaly_of_a_new_topic():
    # well placed, but created while broker 4 is out of its ISR: a moment's state, not a placement
    partitions = topic("fine", (1, 4))
    lagging = [p.__class__(p.id, p.leader, p.replicas, (1,)) for p in partitions]
    before = assess(cluster(orders(), min_isr=1), RULES)
    after = assess(cluster([*orders(), *lagging], min_isr=1), RULES)
    assert after.report is not None and {v.rule for v in after.report.violations} == {Rule.ISR_AT_RISK}
    assert new_topic_anomalies(before.topics, after, detected_at=5.0) == ()


def test_a_stopped_broker_is_placed_where_it_was_seen_not_unplaced():
    state = stopped(cluster(orders(), min_isr=1), 4)  # Metadata no longer lists broker 4, nor its rack
    unplaced = assess(state, RULES)
    assert unplaced.report is not None and Rule.UNPLACED_REPLICA in unplaced.report.by_rule
    remembered = assess(state, RULES, cluster(orders()).brokers.values())
    assert remembered.report is not None and Rule.UNPLACED_REPLICA not in remembered.report.by_rule
    assert remembered.report.matrix.cells[("k8s-2", "az-b")].replicas == 3
    assert not remembered.readiness[4].ready  # readiness still sees it gone


def test_a_remembered_broker_hosting_nothing_is_not_placed():
    state = cluster(topic("t", (1, 2, 3)), brokers=(1, 2, 3), min_isr=1)
    assessment = assess(state, RULES, cluster(orders()).brokers.values())
    assert assessment.placement is not None and 4 not in assessment.placement.located
