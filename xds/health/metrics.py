"""The health followers' Prometheus metrics (`kafka_xds_health_*`), in the main process's registry.

Events are counted as they happen (polls, failures, new-topic anomalies); everything that is a state
is read from the followers at scrape time, so a broker that left the cluster leaves the scrape too.
Never healthy by default: while a cluster is unreachable (or not polled yet) every broker's
`broker_ready` is 0 and `restartable_brokers` is 0; the partition counts stay the last known.

    kafka_xds_health_reachable{cluster}                      1 while the last poll answered
    kafka_xds_health_partitions{cluster,state}               offline, under_min_isr, at_min_isr,
                                                             under_replicated, in_sync
    kafka_xds_health_broker_ready{cluster,broker}            1 ready, 0 not
    kafka_xds_health_restartable_brokers{cluster}            brokers a roll may restart now
    kafka_xds_health_placement_violations{cluster,rule}      with placement configured
    kafka_xds_health_last_success_timestamp_seconds{cluster}
    kafka_xds_health_poll_seconds{cluster}                   histogram: fetch and decisions
    kafka_xds_health_poll_failures_total{cluster}
    kafka_xds_health_new_topic_anomalies_total{cluster}      new topics breaking placement
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xds.health.placement import Rule
from xds.shared.prometheus import LATENCY_BUCKETS

if TYPE_CHECKING:
    from xds.health.follower import ClusterHealth

__all__ = ["HealthMetrics", "partition_state_label"]


def partition_state_label(kind: str) -> str:
    """`at-min-isr` as a label value: `at_min_isr`."""
    return kind.replace("-", "_")


class HealthMetrics:
    """The counters the followers update, and (`follow`) the gauges read from them at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self.poll_seconds = Histogram(
            "kafka_xds_health_poll_seconds",
            "Time a health poll took: fetching the partition state and deciding from it",
            ["cluster"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.poll_failures = Counter(
            "kafka_xds_health_poll_failures",
            "Health polls that got no usable answer from the cluster",
            ["cluster"],
            registry=registry,
        )
        self.new_topic_anomalies = Counter(
            "kafka_xds_health_new_topic_anomalies",
            "New topics found breaking a replica placement rule",
            ["cluster"],
            registry=registry,
        )

    def start_cluster(self, cluster: str) -> None:
        """Every counter's series exists from the start, at 0, so rates and alerts work at once."""
        self.poll_seconds.labels(cluster)
        self.poll_failures.labels(cluster)
        self.new_topic_anomalies.labels(cluster)

    def follow(self, statuses: Callable[[], Iterable[ClusterHealth]]) -> None:
        """Export the gauges of whatever `statuses` returns at each scrape."""
        self._registry.register(_HealthCollector(statuses))


class _HealthCollector(Collector):
    def __init__(self, statuses: Callable[[], Iterable[ClusterHealth]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterator[Metric]:
        reachable = GaugeMetricFamily(
            "kafka_xds_health_reachable",
            "1 while the cluster's last health poll answered",
            labels=["cluster"],
        )
        partitions = GaugeMetricFamily(
            "kafka_xds_health_partitions",
            "Partitions by their worst state, as last polled",
            labels=["cluster", "state"],
        )
        ready = GaugeMetricFamily(
            "kafka_xds_health_broker_ready",
            "1 when a broker's readiness (the cluster reachable, in the ISR of all it hosts, no "
            "partition degraded beyond the thresholds) says ready",
            labels=["cluster", "broker"],
        )
        restartable = GaugeMetricFamily(
            "kafka_xds_health_restartable_brokers",
            "Brokers that could be restarted now without taking a partition below min ISR "
            "(0 while the cluster is unreachable)",
            labels=["cluster"],
        )
        violations = GaugeMetricFamily(
            "kafka_xds_health_placement_violations",
            "Replica placement violations by rule, as last polled",
            labels=["cluster", "rule"],
        )
        last_success = GaugeMetricFamily(
            "kafka_xds_health_last_success_timestamp_seconds",
            "When the cluster's last good health poll answered (Unix time)",
            labels=["cluster"],
        )
        for status in self._statuses():
            name = status.cluster
            answering = status.problem is None
            reachable.add_metric([name], 1.0 if answering else 0.0)
            assessment, polled = status.assessment, status.last_good
            if assessment is None or polled is None:
                continue
            last_success.add_metric([name], polled.at)
            for kind, count in assessment.partitions.items():
                partitions.add_metric([name, partition_state_label(kind)], count)
            partitions.add_metric([name, "in_sync"], assessment.in_sync)
            for broker_id, readiness in assessment.readiness.items():
                ready.add_metric([name, str(broker_id)], 1.0 if answering and readiness.ready else 0.0)
            restartable.add_metric([name], len(assessment.plan.restartable) if answering else 0)
            if assessment.report is not None:
                for rule in Rule:
                    violations.add_metric([name, str(rule)], assessment.report.by_rule.get(rule, 0))
        yield from (reachable, partitions, ready, restartable, violations, last_success)
