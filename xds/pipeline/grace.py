"""Removal grace: a broker that vanished keeps its listener and cluster for a while.

A broker restart deletes and re-creates its registration within seconds. Removing the broker's
listener on every sidecar only to add it back a moment later churns every Envoy, so a departed broker
loses its endpoint at once (connections fail fast) but keeps its listener and cluster until
`removal_grace_seconds` have passed. Pure: time comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xds.pipeline.topology import Broker, SourceState, Topology


@dataclass(frozen=True, slots=True)
class DepartedBroker:
    broker: Broker
    departed_at: float
    remove_at: float


@dataclass(frozen=True, slots=True)
class GraceState:
    """The brokers of one cluster seen last, and those that left and are still in grace."""

    grace_seconds: float
    last_seen: tuple[Broker, ...] = ()
    departed: tuple[DepartedBroker, ...] = field(default=())

    def advance(self, topology: Topology, now: float) -> GraceState:
        """Fold a new topology in: note departures, forget brokers that came back, drop expired ones."""
        if topology.state is not SourceState.SYNCED:
            # A stale source repeats its last brokers; a syncing or unavailable one knows nothing new.
            # Neither is evidence that a broker left.
            return self.expire(now)
        present = {broker.broker_id for broker in topology.brokers}
        departed = {
            gone.broker.broker_id: gone for gone in self.departed if gone.broker.broker_id not in present
        }
        for broker in self.last_seen:
            if broker.broker_id not in present and broker.broker_id not in departed:
                departed[broker.broker_id] = DepartedBroker(broker, now, now + self.grace_seconds)
        ordered = tuple(sorted(departed.values(), key=lambda gone: gone.broker.broker_id))
        return GraceState(self.grace_seconds, topology.brokers, ordered).expire(now)

    def expire(self, now: float) -> GraceState:
        kept = tuple(gone for gone in self.departed if gone.remove_at > now)
        if len(kept) == len(self.departed):
            return self
        return GraceState(self.grace_seconds, self.last_seen, kept)

    @property
    def next_deadline(self) -> float | None:
        return min((gone.remove_at for gone in self.departed), default=None)
