"""Prometheus metrics (prometheus-client), all named `kafka_xds_*`, in one registry per process.

`Metrics` is the pipeline's (sources, plan, builds) and the registry the debug server exposes;
`StreamMetrics` is the serving side's (streams, pushes, ACKs, latencies). Served in-process, both
live in one registry; with worker processes, every worker keeps its own `StreamMetrics` and the
main process sums them into its scrape (see xds/workers.py), so `/metrics` covers every stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from xds.pipeline.plan import BrokerStatus, ClusterPlan
from xds.pipeline.topology import SourceState, Topology
from xds.shared.resource_types import SHORT_TYPE_NAMES

# The undocumented `*_created` series double every counter and histogram; nobody asked for them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STREAM_END_REASONS = ("client_closed", "cancelled", "server_shutdown", "invalid_request", "error")
REFUSAL_REASONS = ("at_limit", "overloaded", "unauthenticated", "permission_denied")


@dataclass(frozen=True, slots=True)
class TypeCounters:
    pushes: Counter
    response_bytes: Counter
    acks: Counter
    nacks: Counter


class StreamMetrics:
    """What one serving process records about its ADS streams."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.streams = Gauge("kafka_xds_connected_streams", "ADS streams connected now", registry=r)
        self.pushes = Counter("kafka_xds_pushes", "Responses sent", ["type"], registry=r)
        self.response_bytes = Counter(
            "kafka_xds_response_bytes", "Bytes of responses sent", ["type"], registry=r
        )
        self.acks = Counter("kafka_xds_acks", "Requests that ACKed a response", ["type"], registry=r)
        self.nacks = Counter("kafka_xds_nacks", "Requests that NACKed a response", ["type"], registry=r)
        self.streams_ended = Counter(
            "kafka_xds_streams_ended", "ADS streams that ended, by why", ["reason"], registry=r
        )
        self.streams_refused = Counter(
            "kafka_xds_streams_refused",
            "ADS streams refused before serving them, by why",
            ["reason"],
            registry=r,
        )
        self.fanout_seconds = Histogram(
            "kafka_xds_push_fanout_seconds",
            "From a change seen by a source to every connected stream having handled it",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.convergence_seconds = Histogram(
            "kafka_xds_convergence_seconds",
            "From a change seen by a source to a sidecar's ACK of it (sidecars connected at the time)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.initial_sync_seconds = Histogram(
            "kafka_xds_initial_sync_seconds",
            "From a stream's start to every type it requested being ACKed at the current snapshot",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag_seconds = Gauge(
            "kafka_xds_event_loop_lag_seconds",
            "How late the serving event loop ran a timer, lately (the overload signal)",
            registry=r,
        )
        # Labelled children looked up once: the hot path counts every response and ACK.
        self.by_type = {
            type_url: TypeCounters(
                self.pushes.labels(short),
                self.response_bytes.labels(short),
                self.acks.labels(short),
                self.nacks.labels(short),
            )
            for type_url, short in SHORT_TYPE_NAMES.items()
        }
        for reason in STREAM_END_REASONS:
            self.streams_ended.labels(reason)
        for reason in REFUSAL_REASONS:
            self.streams_refused.labels(reason)


class Metrics:
    """The pipeline's metrics and the process's registry (with the standard process and Python ones)."""

    def __init__(self, serve_in_process: bool = True) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.stream = StreamMetrics(r) if serve_in_process else None
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
            self.skipped_registrations.labels(cluster)
            self.plan_mismatches.labels(cluster)
            self.source_staleness_seconds.labels(cluster)
            for status in BrokerStatus:
                self.brokers.labels(cluster, status.value)
            for state in SourceState:
                self.source_state.labels(cluster, state.value)

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
