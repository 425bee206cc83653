"""Broker readiness that knows in-sync replicas, and which brokers a rolling restart may take next.

Two pure decisions over one `ClusterState`:

* `broker_readiness`: may a broker's readiness probe say "ready"? A StatefulSet rolls the next pod
  only once the one it just restarted is ready, so this answer is the gate of a rolling restart. It
  says ready only when the broker is registered, unfenced and back in the ISR of every partition it
  hosts, and (by default) when no partition in the whole cluster is degraded: while the restarted
  broker catches up, the partitions it hosts are under-replicated, and that is exactly when the next
  broker must not go down.
* `restart_plan`: which brokers could be restarted right now without taking any partition below its
  `min.insync.replicas` (the rule of Strimzi's KafkaRoller: not while a partition the broker is in
  the ISR of has ISR == min ISR, or already less).

A replica counts as in sync only when it is in the partition's ISR, is not one of its offline
replicas (a failed log directory) and its broker is registered and unfenced: metadata can lag a
broker's death, and KRaft keeps the last member of an ISR in it after it is fenced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from xds.health.state import BrokerState, ClusterState, PartitionId, PartitionState

__all__ = [
    "BlockKind",
    "Blocker",
    "BrokerRestart",
    "Readiness",
    "ReadinessThresholds",
    "Reason",
    "ReasonKind",
    "RestartPlan",
    "broker_readiness",
    "every_broker_readiness",
    "restart_plan",
]


class ReasonKind(StrEnum):
    """Why a broker is not ready. The first four are about the broker itself, the rest about the
    cluster; a partition is counted in its worst cluster class only (offline, then under min ISR,
    then at min ISR, then under-replicated)."""

    UNKNOWN = "unknown"  # not registered and hosts no partition: probably the wrong broker id
    NOT_REGISTERED = "not-registered"  # hosts partitions but is not registered: down or starting
    FENCED = "fenced"  # registered but not allowed to serve (KRaft)
    NOT_IN_ISR = "not-in-isr"  # hosts partitions whose ISR it is not (yet) in: catching up
    OFFLINE = "offline"  # no leader, or no replica in sync
    UNDER_MIN_ISR = "under-min-isr"  # fewer in sync than min.insync.replicas: acks=all fails
    AT_MIN_ISR = "at-min-isr"  # degraded to exactly min ISR: one more loss and acks=all fails
    UNDER_REPLICATED = "under-replicated"  # fewer in sync than replicas, more than min ISR

    @property
    def is_cluster_wide(self) -> bool:
        return self in _CLUSTER_KINDS


_CLUSTER_KINDS = frozenset(
    {ReasonKind.OFFLINE, ReasonKind.UNDER_MIN_ISR, ReasonKind.AT_MIN_ISR, ReasonKind.UNDER_REPLICATED}
)


@dataclass(frozen=True, slots=True)
class ReadinessThresholds:
    """How many partitions of each degraded class the cluster may have while a broker says ready.

    The defaults are all 0, which is what keeps a gated rolling restart at or above min ISR: the
    StatefulSet waits for the broker it just restarted to be ready before it stops the next one, so
    that broker must not say ready until every partition in the cluster is fully in sync again
    (under-replicated 0). A looser `max_under_replicated` lets the next broker go down while the
    previous one's partitions are still at min ISR or worse; a looser `max_at_min_isr` lets a roll
    take such a partition below min ISR. Loosen them only for a cluster that must become ready while
    a broker is gone for good (or use an override, which says so loudly).

    At min ISR counts only partitions degraded to min ISR: a partition whose replication factor
    equals its min ISR is at min ISR by configuration and is never counted (it would block readiness
    forever). `examples` is how many partitions a reason names.
    """

    max_offline: int = 0
    max_under_min_isr: int = 0
    max_at_min_isr: int = 0
    max_under_replicated: int = 0
    examples: int = 3

    def limit(self, kind: ReasonKind) -> int:
        """The most partitions of a cluster-wide kind a ready broker tolerates."""
        limits = {
            ReasonKind.OFFLINE: self.max_offline,
            ReasonKind.UNDER_MIN_ISR: self.max_under_min_isr,
            ReasonKind.AT_MIN_ISR: self.max_at_min_isr,
            ReasonKind.UNDER_REPLICATED: self.max_under_replicated,
        }
        return limits.get(kind, 0)


_PHRASES = {
    ReasonKind.OFFLINE: "offline",
    ReasonKind.UNDER_MIN_ISR: "under-min-ISR",
    ReasonKind.AT_MIN_ISR: "at-min-ISR",
    ReasonKind.UNDER_REPLICATED: "under-replicated",
}


def _partitions(count: int) -> str:
    return f"{count} partition" if count == 1 else f"{count} partitions"


def _examples(examples: tuple[PartitionId, ...], count: int) -> str:
    if not examples:
        return ""
    more = ", ..." if count > len(examples) else ""
    return f" ({', '.join(str(p) for p in examples)}{more})"


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason a broker is not ready (or a tolerated degradation): its kind, how many partitions
    it concerns (0 for the broker-only kinds) and the first few of them, in partition order."""

    kind: ReasonKind
    count: int = 0
    examples: tuple[PartitionId, ...] = ()

    def describe(self) -> str:
        """This reason as a phrase, without the broker: "not in ISR of 3 partitions (t-0, t-1, t-2)"."""
        if self.kind is ReasonKind.UNKNOWN:
            return "unknown (not registered, hosts no partition)"
        if self.kind is ReasonKind.NOT_REGISTERED:
            return f"not registered (hosts {_partitions(self.count)})"
        if self.kind is ReasonKind.FENCED:
            return "fenced"
        if self.kind is ReasonKind.NOT_IN_ISR:
            return f"not in ISR of {_partitions(self.count)}{_examples(self.examples, self.count)}"
        noun = "partition" if self.count == 1 else "partitions"
        return f"{self.count} {_PHRASES[self.kind]} {noun}{_examples(self.examples, self.count)}"


@dataclass(frozen=True, slots=True)
class Readiness:
    """The readiness of one broker: `reasons` say why not (empty when ready); `tolerated` lists the
    cluster's degraded partitions that the thresholds allowed, so a ready probe still shows them."""

    broker_id: int
    ready: bool
    reasons: tuple[Reason, ...] = ()
    tolerated: tuple[Reason, ...] = ()
    hosted: int = 0
    thresholds: ReadinessThresholds = field(default_factory=ReadinessThresholds)

    def summary(self) -> str:
        """One line for a probe's output, e.g. "not ready: broker 2 not in ISR of 3 partitions (t-0,
        t-1, t-2); cluster: 1 under-min-ISR partition (u-0)"."""
        own = [r.describe() for r in self.reasons if not r.kind.is_cluster_wide]
        cluster = [r.describe() for r in self.reasons if r.kind.is_cluster_wide]
        if self.ready:
            parts = [f"ready: broker {self.broker_id} in sync ({_partitions(self.hosted)} hosted)"]
        else:
            broker = (
                f"broker {self.broker_id} {', '.join(own)}" if own else f"broker {self.broker_id} in sync"
            )
            parts = [f"not ready: {broker}"]
        if cluster:
            parts.append(f"cluster: {', '.join(cluster)}")
        elif self.ready and not self.tolerated:
            parts.append("cluster in sync")
        if self.tolerated:
            tolerated = (f"{r.describe()}, max {self.thresholds.limit(r.kind)}" for r in self.tolerated)
            parts.append(f"tolerated: {'; '.join(tolerated)}")
        return "; ".join(parts)


def _in_sync(state: ClusterState, partition: PartitionState) -> tuple[int, ...]:
    """The ISR members that really are in sync: not offline, registered and unfenced."""
    return tuple(
        b
        for b in partition.isr
        if b not in partition.offline_replicas
        and (broker := state.brokers.get(b)) is not None
        and not broker.fenced
    )


def _hosts(partition: PartitionState, broker_id: int) -> bool:
    return broker_id in partition.replicas or broker_id in partition.isr


def _cluster_class(state: ClusterState, partition: PartitionState) -> ReasonKind | None:
    """A partition's worst degraded class, None when it is fully in sync."""
    in_sync = len(_in_sync(state, partition))
    min_isr = state.min_isr(partition.id.topic)
    replicas = len(partition.replicas)
    if not partition.has_leader or in_sync == 0:
        return ReasonKind.OFFLINE
    if in_sync < min_isr:
        return ReasonKind.UNDER_MIN_ISR
    if in_sync < replicas:
        return ReasonKind.AT_MIN_ISR if in_sync == min_isr else ReasonKind.UNDER_REPLICATED
    return None


def _reason(kind: ReasonKind, partitions: list[PartitionId], examples: int) -> Reason:
    return Reason(kind, len(partitions), tuple(partitions[: max(examples, 0)]))


def _degraded(state: ClusterState) -> dict[ReasonKind, list[PartitionId]]:
    degraded: dict[ReasonKind, list[PartitionId]] = {kind: [] for kind in _PHRASES}
    for partition in state.partitions:
        kind = _cluster_class(state, partition)
        if kind is not None:
            degraded[kind].append(partition.id)
    return degraded


def _decide(
    state: ClusterState,
    broker_id: int,
    thresholds: ReadinessThresholds,
    hosted: list[PartitionState],
    missing: list[PartitionId],
    degraded: dict[ReasonKind, list[PartitionId]],
) -> Readiness:
    broker: BrokerState | None = state.brokers.get(broker_id)
    reasons: list[Reason] = []
    if broker is None:
        reasons.append(
            Reason(ReasonKind.NOT_REGISTERED, len(hosted)) if hosted else Reason(ReasonKind.UNKNOWN)
        )
    elif broker.fenced:
        reasons.append(Reason(ReasonKind.FENCED))
    if missing:
        reasons.append(_reason(ReasonKind.NOT_IN_ISR, missing, thresholds.examples))
    tolerated: list[Reason] = []
    for kind, partitions in degraded.items():
        if not partitions:
            continue
        reason = _reason(kind, partitions, thresholds.examples)
        (reasons if len(partitions) > thresholds.limit(kind) else tolerated).append(reason)
    return Readiness(broker_id, not reasons, tuple(reasons), tuple(tolerated), len(hosted), thresholds)


def broker_readiness(
    state: ClusterState, broker_id: int, thresholds: ReadinessThresholds | None = None
) -> Readiness:
    """Whether `broker_id` may say ready: registered, unfenced, in the ISR of every partition it
    hosts, and every cluster-wide degraded class within its threshold (see `ReadinessThresholds`)."""
    thresholds = thresholds or ReadinessThresholds()
    hosted = [p for p in state.partitions if _hosts(p, broker_id)]
    missing = [p.id for p in hosted if broker_id not in _in_sync(state, p)]
    return _decide(state, broker_id, thresholds, hosted, missing, _degraded(state))


def every_broker_readiness(
    state: ClusterState, thresholds: ReadinessThresholds | None = None
) -> dict[int, Readiness]:
    """`broker_readiness` of every broker the cluster knows (registered, or named in a replica set or
    ISR), in id order, from one walk of the partitions: a follower asks this of 10,000 partitions
    every poll, where one `broker_readiness` per broker walks them once per broker."""
    thresholds = thresholds or ReadinessThresholds()
    hosted: dict[int, list[PartitionState]] = {b: [] for b in _known_brokers(state)}
    missing: dict[int, list[PartitionId]] = {b: [] for b in hosted}
    for partition in state.partitions:
        in_sync = _in_sync(state, partition)
        for broker_id in dict.fromkeys((*partition.replicas, *partition.isr)):
            hosted[broker_id].append(partition)
            if broker_id not in in_sync:
                missing[broker_id].append(partition.id)
    degraded = _degraded(state)
    return {
        broker_id: _decide(state, broker_id, thresholds, partitions, missing[broker_id], degraded)
        for broker_id, partitions in hosted.items()
    }


class BlockKind(StrEnum):
    """Why restarting a broker would hurt a partition whose ISR it is in."""

    OFFLINE = "offline"  # the partition has no leader: the broker may be the one to lead it
    UNDER_MIN_ISR = "under-min-isr"  # already below min ISR: a restart takes it further down
    AT_MIN_ISR = "at-min-isr"  # exactly at min ISR: a restart takes it below
    LAST_IN_SYNC = "last-in-sync"  # the only replica in sync (min ISR <= 1 would not catch it)


@dataclass(frozen=True, slots=True, order=True)
class Blocker:
    """A partition that stops a broker's restart: its in-sync count now and its min ISR."""

    partition: PartitionId
    kind: BlockKind
    in_sync: int
    min_isr: int

    def __str__(self) -> str:
        return f"{self.partition} {self.kind} ({self.in_sync}/{self.min_isr})"


@dataclass(frozen=True, slots=True)
class BrokerRestart:
    """One broker's answer: restartable, or the partitions that block it (all of them, in order)."""

    broker_id: int
    blockers: tuple[Blocker, ...] = ()

    @property
    def restartable(self) -> bool:
        return not self.blockers

    def summary(self, examples: int = 3) -> str:
        if self.restartable:
            return f"broker {self.broker_id} restartable"
        shown = ", ".join(str(b) for b in self.blockers[: max(examples, 0)])
        more = ", ..." if len(self.blockers) > examples else ""
        return f"broker {self.broker_id} blocked by {_partitions(len(self.blockers))}: {shown}{more}"


@dataclass(frozen=True, slots=True)
class RestartPlan:
    """Every broker the cluster knows (registered, or named in a replica set or ISR), in id order."""

    brokers: tuple[BrokerRestart, ...]

    @property
    def restartable(self) -> tuple[int, ...]:
        return tuple(b.broker_id for b in self.brokers if b.restartable)

    @property
    def blocked(self) -> tuple[int, ...]:
        return tuple(b.broker_id for b in self.brokers if not b.restartable)

    def broker(self, broker_id: int) -> BrokerRestart:
        """A broker's answer; a broker the cluster does not know blocks nothing."""
        for restart in self.brokers:
            if restart.broker_id == broker_id:
                return restart
        return BrokerRestart(broker_id)


def _block_kind(state: ClusterState, partition: PartitionState, in_sync: int) -> BlockKind | None:
    """What restarting one of a partition's `in_sync` replicas would do to it, None when nothing."""
    min_isr = state.min_isr(partition.id.topic)
    if not partition.has_leader:
        return BlockKind.OFFLINE
    if in_sync < min_isr:
        return BlockKind.UNDER_MIN_ISR
    if in_sync == min_isr:
        return BlockKind.AT_MIN_ISR
    if in_sync == 1:
        return BlockKind.LAST_IN_SYNC
    return None


def _known_brokers(state: ClusterState) -> Iterable[int]:
    known = set(state.brokers)
    for partition in state.partitions:
        known.update(partition.replicas, partition.isr)
    return sorted(known)


def restart_plan(state: ClusterState) -> RestartPlan:
    """For every broker, whether stopping it now keeps every partition at or above its min ISR.

    A broker is blocked by each partition it is in sync for whose in-sync count is at or below min
    ISR, whose only in-sync replica it is, or that has no leader. A broker outside a partition's ISR
    is never blocked by it, even when that partition is under min ISR: its restart removes no
    in-sync replica, and it is often the broker the partition needs back (Strimzi's rule blocks only
    brokers in the ISR too). Unlike Strimzi, a partition whose replication factor equals its min ISR
    blocks its brokers: restarting any of them takes it below min ISR.
    """
    blockers: dict[int, list[Blocker]] = {broker_id: [] for broker_id in _known_brokers(state)}
    for partition in state.partitions:  # once, in order: each broker's blockers in partition order
        in_sync = _in_sync(state, partition)
        kind = _block_kind(state, partition, len(in_sync))
        if kind is None:
            continue
        blocker = Blocker(partition.id, kind, len(in_sync), state.min_isr(partition.id.topic))
        for broker_id in dict.fromkeys(in_sync):
            blockers[broker_id].append(blocker)
    return RestartPlan(tuple(BrokerRestart(b, tuple(found)) for b, found in blockers.items()))
