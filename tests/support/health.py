"""Cluster states for the health follower's tests, and a scripted reader.

Four brokers over two Kubernetes clusters x two zones (`RACKS`, the layout the real-Kafka test
uses). The scripted reader answers a follower's polls from a list: a real cluster goes through every
one of these states (tests/e2e/test_health_follower_real_kafka.py drives them), but not on cue, in
milliseconds; everything decided from the answers is the real code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from xds.config.health import HealthSettings
from xds.health.fetch import FetchedState
from xds.health.state import NO_LEADER, BrokerState, ClusterState, PartitionId, PartitionState

RACKS = {1: "k8s-1.az-a", 2: "k8s-1.az-b", 3: "k8s-2.az-a", 4: "k8s-2.az-b"}
PATTERN = r"(?P<cluster>[^.]+)\.(?P<zone>.+)"
SERVER = "10.0.0.1:9092"


def settings(with_placement: bool = True, **fields: Any) -> HealthSettings:
    values: dict[str, Any] = {"poll_interval_seconds": 30, "timeout_seconds": 5, **fields}
    if with_placement:
        values.setdefault("placement", {"rack_pattern": PATTERN})
    return HealthSettings.model_validate(values)


def topic(name: str, *assignments: tuple[int, ...]) -> list[PartitionState]:
    """A topic in sync, partition n on `assignments[n]` (the first replica leads)."""
    return [
        PartitionState(PartitionId(name, n), replicas[0], replicas, replicas)
        for n, replicas in enumerate(assignments)
    ]


def orders() -> list[PartitionState]:
    """RF 3 over brokers 1-4, rotating: every broker shares a partition with every other."""
    return topic("orders", (1, 2, 3), (2, 3, 4), (3, 4, 1), (4, 1, 2))


def cluster(
    partitions: Iterable[PartitionState], brokers: Iterable[int] = RACKS, min_isr: int = 2
) -> ClusterState:
    return ClusterState.create(
        "kafka-a", [BrokerState(b, RACKS.get(b)) for b in brokers], partitions, default_min_isr=min_isr
    )


def stopped(state: ClusterState, broker_id: int) -> ClusterState:
    """The state once `broker_id` stopped: unregistered, out of every ISR, leading nothing."""
    partitions = []
    for p in state.partitions:
        isr = tuple(b for b in p.isr if b != broker_id)
        leader = p.leader if p.leader != broker_id else (isr[0] if isr else NO_LEADER)
        partitions.append(replace(p, isr=isr, leader=leader))
    brokers = {b: s for b, s in state.brokers.items() if b != broker_id}
    return replace(state, partitions=tuple(partitions), brokers=brokers)


class ScriptedReader:
    """Answers each fetch with the next item of `answers` (the last one again once they run out): a
    ClusterState to answer with, or an exception to raise."""

    def __init__(self, *answers: ClusterState | BaseException) -> None:
        self.answers = list(answers)
        self.fetches = 0
        self.closed = False
        self.fetched = asyncio.Event()

    def then(self, *answers: ClusterState | BaseException) -> None:
        self.answers = list(answers)

    async def fetch(self, timeout: float) -> FetchedState:
        self.fetches += 1
        self.fetched.set()
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return FetchedState(answer, SERVER, "cluster-1", (), 0.01)

    async def close(self) -> None:
        self.closed = True


class Clock:
    """Wall-clock seconds a test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
