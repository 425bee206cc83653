"""Prometheus metrics (prometheus-client), all named `kafka_xds_*`, in one registry per process.

Every stage records into the same `Metrics` object so that tests can create a fresh one and
the debug server exposes exactly one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from xds.plan import BrokerStatus, ClusterPlan
from xds.topology import SourceState, Topology

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.streams = Gauge("kafka_xds_connected_streams", "ADS streams connected now", registry=r)
        self.pushes = Counter("kafka_xds_pushes", "DiscoveryResponses sent", ["type"], registry=r)
        self.acks = Counter("kafka_xds_acks", "DiscoveryRequests that ACKed a response", ["type"], registry=r)
        self.nacks = Counter(
            "kafka_xds_nacks", "DiscoveryRequests that NACKed a response", ["type"], registry=r
        )
        self.fanout_seconds = Histogram(
            "kafka_xds_push_fanout_seconds",
            "From a change seen by a source to every subscribed stream sent",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.convergence_seconds = Histogram(
            "kafka_xds_convergence_seconds",
            "From a change seen by a source to a sidecar's ACK of it",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
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
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.snapshot_build_failures = Counter(
            "kafka_xds_snapshot_build_failures",
            "Snapshot builds that failed (the last good one was kept)",
            registry=r,
        )

    def record_plans(self, plans: Iterable[ClusterPlan]) -> None:
        for plan in plans:
            live = sum(1 for broker in plan.brokers if broker.status is BrokerStatus.LIVE)
            self.brokers.labels(plan.cluster, "live").set(live)
            self.brokers.labels(plan.cluster, "in_grace").set(len(plan.brokers) - live)
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
