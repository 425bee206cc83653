"""What a serving process records about its ADS streams (prometheus-client, `kafka_xds_*`).

Served in the main process, these live in its registry; each worker process keeps its own, and the
main process sums them into its scrape (xds.process.supervisor), so `/metrics` covers every stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from xds.shared.prometheus import LATENCY_BUCKETS
from xds.shared.resource_types import SHORT_TYPE_NAMES

STREAM_END_REASONS = (
    "client_closed",
    "cancelled",
    "server_shutdown",
    "invalid_request",
    "name_limit",
    "error",
)
REFUSAL_REASONS = ("at_limit", "overloaded", "identity_limit", "unauthenticated", "permission_denied")


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
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.convergence_seconds = Histogram(
            "kafka_xds_convergence_seconds",
            "From a change seen by a source to a sidecar's ACK of it (sidecars connected at the time)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.initial_sync_seconds = Histogram(
            "kafka_xds_initial_sync_seconds",
            "From a stream's start to every type it requested being ACKed at the current snapshot",
            buckets=LATENCY_BUCKETS,
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
