"""The main process's Prometheus metrics (prometheus-client, `kafka_xds_*`) and its registry.

`Metrics` covers the pipeline (sources, plan, builds) and the serving workers' supervision; the
debug server exposes its registry. The streams' own metrics are the serving side's
(xds.serving.stream_metrics): in this registry when streams are served in-process, else summed
from every worker into the scrape.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from xds.pipeline.plan import BrokerStatus, ClusterPlan
from xds.pipeline.topology import SourceState, Topology
from xds.shared.prometheus import LATENCY_BUCKETS


class Metrics:
    """The pipeline's metrics and the process's registry (with the standard process and Python ones)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.brokers = Gauge(
            "kafka_xds_brokers", "Brokers by cluster and state", ["cluster", "state"], registry=r
        )
        self.skipped_registrations = Gauge(
            "kafka_xds_skipped_registrations",
            "Broker registrations skipped now as malformed or unusable",
            ["cluster"],
            registry=r,
        )
        self.plan_mismatches = Gauge(
            "kafka_xds_plan_mismatches",
            "Brokers advertising a client address other than the plan's",
            ["cluster"],
            registry=r,
        )
        self.source_state = Gauge(
            "kafka_xds_source_state",
            "1 for the state each cluster's source is in",
            ["cluster", "state"],
            registry=r,
        )
        self.source_staleness_seconds = Gauge(
            "kafka_xds_source_staleness_seconds",
            "Seconds since a stale source last saw its backend",
            ["cluster"],
            registry=r,
        )
        self.source_errors = Counter(
            "kafka_xds_source_errors",
            "Errors a source hit while following its backend",
            ["cluster"],
            registry=r,
        )
        self.snapshot_build_seconds = Histogram(
            "kafka_xds_snapshot_build_seconds",
            "Time to build a snapshot",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.snapshot_build_failures = Counter(
            "kafka_xds_snapshot_build_failures",
            "Snapshot builds that failed (the last good one was kept)",
            registry=r,
        )
        self.cluster_build_failures = Counter(
            "kafka_xds_cluster_build_failures",
            "Builds in which a Kafka cluster's resources failed (its last good ones were kept)",
            ["cluster"],
            registry=r,
        )
        self.workers_ready = Gauge(
            "kafka_xds_workers_ready", "Serving worker processes ready to serve", registry=r
        )
        self.worker_restarts = Counter(
            "kafka_xds_worker_restarts", "Serving worker processes restarted after they died", registry=r
        )

    def start_clusters(self, clusters: Iterable[str]) -> None:
        """Every per-cluster series exists from the start, at 0, so rates and alerts work at once."""
        for cluster in clusters:
            self.source_errors.labels(cluster)
            self.cluster_build_failures.labels(cluster)
            self.skipped_registrations.labels(cluster)
            self.plan_mismatches.labels(cluster)
            self.source_staleness_seconds.labels(cluster)
            for status in (BrokerStatus.LIVE, BrokerStatus.IN_GRACE):  # WAITING: nothing served yet
                self.brokers.labels(cluster, status.value)
            for state in SourceState:
                self.source_state.labels(cluster, state.value)

    def record_plans(self, plans: Iterable[ClusterPlan]) -> None:
        for plan in plans:
            live = sum(1 for broker in plan.brokers if broker.status is BrokerStatus.LIVE)
            in_grace = sum(1 for broker in plan.brokers if broker.status is BrokerStatus.IN_GRACE)
            self.brokers.labels(plan.cluster, "live").set(live)
            self.brokers.labels(plan.cluster, "in_grace").set(in_grace)
            self.skipped_registrations.labels(plan.cluster).set(len(plan.skipped))
            self.plan_mismatches.labels(plan.cluster).set(len(plan.mismatches))

    def record_sources(self, topologies: Mapping[str, Topology], now: float | None = None) -> None:
        """Source states and staleness; called right before each scrape so staleness is current."""
        now = time.time() if now is None else now
        for name, topology in topologies.items():
            for state in SourceState:
                self.source_state.labels(name, state.value).set(1 if topology.state is state else 0)
            stale = now - topology.stale_since if topology.stale_since is not None else 0.0
            self.source_staleness_seconds.labels(name).set(max(0.0, stale))
