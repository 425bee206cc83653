"""What happened, and when: a bounded ring of the main process's recent events, for people.

The controller records brokers that were added, moved, left and were removed, sources lost and
recovered, plan mismatches, failed builds and every published snapshot; the debug server adds the
NACKs and refusals the serving side reports. The status page and `/debug/events` read it. It holds
at most `capacity` events (the oldest go first) of at most `MAX_TEXT_CHARS` each, and every text
leaves without the secrets the process registered (xds.shared.log), whoever wrote it.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from xds.pipeline.plan import BrokerStatus, ClusterPlan, PlannedBroker
from xds.pipeline.topology import SourceState, Topology
from xds.shared.log import without_secrets

__all__ = ["MAX_TEXT_CHARS", "Event", "EventKind", "EventLog", "Severity", "plan_changes", "source_change"]

Change = tuple["EventKind", "Severity", str]

MAX_TEXT_CHARS = 500


class EventKind(StrEnum):
    BROKER_ADDED = "broker_added"
    BROKER_MOVED = "broker_moved"
    BROKER_LEAVING = "broker_leaving"  # its registration is gone: its listener is kept for the grace
    BROKER_RETURNED = "broker_returned"
    BROKER_REMOVED = "broker_removed"
    SOURCE_SYNCED = "source_synced"
    SOURCE_LOST = "source_lost"
    SOURCE_RECOVERED = "source_recovered"
    PLAN_MISMATCH = "plan_mismatch"
    PLAN_MISMATCH_RESOLVED = "plan_mismatch_resolved"
    BUILD_FAILED = "build_failed"
    BUILD_RECOVERED = "build_recovered"
    SNAPSHOT_PUBLISHED = "snapshot_published"
    NACK = "nack"
    REFUSAL = "refusal"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Event:
    sequence: int  # 1, 2, ... in the order recorded: a reader's cursor
    at: float  # wall clock
    kind: EventKind
    severity: Severity
    text: str  # one line for people
    cluster: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "at": self.at,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.at)),
            "kind": self.kind.value,
            "severity": self.severity.value,
            "cluster": self.cluster,
            "text": self.text,
        }


class EventLog:
    """The last `capacity` events, oldest first; recorded on the event loop only."""

    def __init__(self, capacity: int = 200, clock: Callable[[], float] = time.time) -> None:
        if capacity < 1:
            raise ValueError("an event log holds at least one event")
        self._events: collections.deque[Event] = collections.deque(maxlen=capacity)
        self._sequence = itertools.count(1)
        self._clock = clock
        self.capacity = capacity

    def record(
        self,
        kind: EventKind,
        text: str,
        cluster: str | None = None,
        severity: Severity = Severity.INFO,
        at: float | None = None,
    ) -> Event:
        text = without_secrets(text)
        if len(text) > MAX_TEXT_CHARS:
            text = text[: MAX_TEXT_CHARS - 1] + "…"
        recorded = Event(
            next(self._sequence), self._clock() if at is None else at, kind, severity, text, cluster
        )
        self._events.append(recorded)
        return recorded

    def recent(self, limit: int | None = None) -> tuple[Event, ...]:
        """The newest `limit` events (all without a limit), newest first."""
        newest_first = reversed(self._events)
        return tuple(newest_first if limit is None else itertools.islice(newest_first, limit))

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(tuple(self._events))


def source_change(previous: Topology, topology: Topology, now: float) -> Change | None:
    """A source's change of state for people: lost (stale, unavailable), recovered, first synced."""
    trouble = (SourceState.STALE, SourceState.UNAVAILABLE)
    source = f"{topology.source_kind} source"
    if topology.state is previous.state:
        return None
    if topology.state in trouble:
        kept = f"; its last known {_brokers(len(topology.brokers))} kept" if topology.brokers else ""
        reason = topology.error or "no reason given"
        return EventKind.SOURCE_LOST, Severity.ERROR, f"{source} {topology.state.value}: {reason}{kept}"
    if topology.state is SourceState.SYNCED and previous.state in trouble:
        since = f" after {now - previous.stale_since:.0f} s" if previous.stale_since else ""
        text = f"{source} synced again{since}: {_brokers(len(topology.brokers))}"
        return EventKind.SOURCE_RECOVERED, Severity.INFO, text
    if topology.state is SourceState.SYNCED:
        text = f"{source} completed its first sync: {_brokers(len(topology.brokers))}"
        return EventKind.SOURCE_SYNCED, Severity.INFO, text
    return None


def plan_changes(before: ClusterPlan, after: ClusterPlan) -> list[Change]:
    """What changed for people between two plans of one cluster: brokers added, moved (a new
    upstream), leaving (in removal grace), back, and removed."""
    old = {broker.broker_id: broker for broker in before.brokers}
    new = {broker.broker_id: broker for broker in after.brokers}
    changes: list[Change] = []
    for broker_id in sorted(old.keys() | new.keys()):
        was, now = old.get(broker_id), new.get(broker_id)
        if now is None:
            assert was is not None
            changes.append((EventKind.BROKER_REMOVED, Severity.WARNING, f"broker {broker_id} removed"))
        elif was is None:
            if now.status is BrokerStatus.LIVE:
                changes.append(
                    (EventKind.BROKER_ADDED, Severity.INFO, f"broker {broker_id} added: {_where(now)}")
                )
        elif was.status is BrokerStatus.LIVE and now.status is BrokerStatus.IN_GRACE:
            until = time.strftime("%H:%M:%S", time.localtime(now.remove_at)) if now.remove_at else "?"
            changes.append(
                (
                    EventKind.BROKER_LEAVING,
                    Severity.WARNING,
                    f"broker {broker_id} deregistered: its address {now.listen} is kept until {until}",
                )
            )
        elif was.status is not BrokerStatus.LIVE and now.status is BrokerStatus.LIVE:
            changes.append(
                (EventKind.BROKER_RETURNED, Severity.INFO, f"broker {broker_id} back: {_where(now)}")
            )
        elif was.upstream != now.upstream and now.status is BrokerStatus.LIVE:
            changes.append(
                (
                    EventKind.BROKER_MOVED,
                    Severity.INFO,
                    f"broker {broker_id} moved: {was.upstream} → {now.upstream} (clients keep {now.listen})",
                )
            )
    return changes


def _brokers(count: int) -> str:
    return f"{count} broker{'' if count == 1 else 's'}"


def _where(broker: PlannedBroker) -> str:
    return f"clients use {broker.listen}, forwarded to {broker.upstream}"
