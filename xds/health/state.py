"""A Kafka cluster's partition state as plain, immutable values: the input of every health decision.

Built from a Metadata answer (brokers, and per partition its leader, replicas, ISR and offline
replicas) plus each topic's effective `min.insync.replicas` (DescribeConfigs). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

NO_LEADER = -1  # Kafka's leader id for a partition without a leader


@dataclass(frozen=True, slots=True, order=True)
class PartitionId:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(frozen=True, slots=True)
class BrokerState:
    """A broker the cluster knows. `fenced` only in KRaft (a registered broker not allowed to serve)."""

    broker_id: int
    rack: str | None = None
    fenced: bool = False


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition: `replicas` in assignment order (the first is the preferred leader)."""

    id: PartitionId
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...] = ()

    @property
    def has_leader(self) -> bool:
        return self.leader != NO_LEADER


def _frozen_mapping(items: Mapping[K, V]) -> Mapping[K, V]:
    return MappingProxyType(dict(items))


@dataclass(frozen=True, slots=True)
class ClusterState:
    """Brokers and partitions of one Kafka cluster at one moment.

    `min_isr` holds each topic's effective `min.insync.replicas` where known; `default_min_isr` (the
    broker default, 1 when nothing better is known) applies to the others.
    """

    cluster: str
    brokers: Mapping[int, BrokerState]
    partitions: tuple[PartitionState, ...]
    min_isr_by_topic: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    default_min_isr: int = 1
    controller_id: int | None = None

    @classmethod
    def create(
        cls,
        cluster: str,
        brokers: Iterable[BrokerState],
        partitions: Iterable[PartitionState],
        min_isr_by_topic: Mapping[str, int] | None = None,
        default_min_isr: int = 1,
        controller_id: int | None = None,
    ) -> ClusterState:
        return cls(
            cluster,
            _frozen_mapping({broker.broker_id: broker for broker in brokers}),
            tuple(sorted(partitions, key=lambda p: p.id)),
            _frozen_mapping(min_isr_by_topic or {}),
            default_min_isr,
            controller_id,
        )

    def min_isr(self, topic: str) -> int:
        return self.min_isr_by_topic.get(topic, self.default_min_isr)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted({p.id.topic for p in self.partitions}))

    def hosted_by(self, broker_id: int) -> tuple[PartitionState, ...]:
        return tuple(p for p in self.partitions if broker_id in p.replicas)
