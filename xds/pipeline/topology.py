"""What a source knows about one Kafka cluster: its live brokers and how fresh that knowledge is.

Sources produce `Topology` values; every later stage reads them and none mutates them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from xds.shared.addresses import HostPort


@dataclass(frozen=True, slots=True)
class Broker:
    """One registered broker: its id, every listener endpoint by name, its rack."""

    broker_id: int
    listeners: tuple[tuple[str, HostPort], ...]
    rack: str | None = None
    registered_at_ms: int | None = None

    @classmethod
    def create(
        cls,
        broker_id: int,
        listeners: Mapping[str, HostPort],
        rack: str | None = None,
        registered_at_ms: int | None = None,
    ) -> Broker:
        return cls(broker_id, tuple(sorted(listeners.items())), rack or None, registered_at_ms)

    def endpoint(self, listener_name: str) -> HostPort | None:
        for name, host_port in self.listeners:
            if name == listener_name:
                return host_port
        return None


@dataclass(frozen=True, slots=True)
class SkippedRegistration:
    """A registration a source could not use, with the reason an operator needs to fix it."""

    where: str
    reason: str
    broker_id: int | None = None


class SourceState(StrEnum):
    SYNCING = "syncing"  # never completed a read: nothing may be pushed for this cluster yet
    SYNCED = "synced"  # the brokers are what the backend says right now
    STALE = "stale"  # the backend is unreachable: the brokers are the last known ones
    UNAVAILABLE = "unavailable"  # never synced and gave up waiting: served empty, loudly


@dataclass(frozen=True, slots=True)
class Topology:
    """The brokers of one Kafka cluster as one source sees them at one moment."""

    cluster: str
    source_kind: str
    state: SourceState
    brokers: tuple[Broker, ...] = ()
    skipped: tuple[SkippedRegistration, ...] = ()
    error: str | None = None
    stale_since: float | None = None  # wall-clock seconds, set while state is STALE
    cluster_id: str | None = None
    _by_id: Mapping[int, Broker] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def create(
        cls,
        cluster: str,
        source_kind: str,
        state: SourceState,
        brokers: Iterable[Broker] = (),
        skipped: Iterable[SkippedRegistration] = (),
        error: str | None = None,
        stale_since: float | None = None,
        cluster_id: str | None = None,
    ) -> Topology:
        ordered = tuple(sorted(brokers, key=lambda broker: broker.broker_id))
        ids = [broker.broker_id for broker in ordered]
        if len(set(ids)) != len(ids):
            raise ValueError(f"cluster {cluster}: duplicate broker ids in {ids}")
        return cls(
            cluster,
            source_kind,
            state,
            ordered,
            tuple(skipped),
            error,
            stale_since,
            cluster_id,
            {broker.broker_id: broker for broker in ordered},
        )

    @property
    def synced_once(self) -> bool:
        return self.state is not SourceState.SYNCING

    def broker(self, broker_id: int) -> Broker | None:
        return self._by_id.get(broker_id)

    def went_stale(self, error: str, now: float) -> Topology:
        """The same brokers, marked stale: a source that loses its backend never reports 'no brokers'."""
        if self.state in (SourceState.SYNCING, SourceState.UNAVAILABLE):
            return Topology.create(self.cluster, self.source_kind, self.state, error=error)
        since = self.stale_since if self.state is SourceState.STALE and self.stale_since else now
        return Topology.create(
            self.cluster,
            self.source_kind,
            SourceState.STALE,
            self.brokers,
            self.skipped,
            error,
            since,
            self.cluster_id,
        )
