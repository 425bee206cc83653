"""Holds the current snapshot and wakes every stream that must hear about a new one."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from xds.pipeline.snapshot import Snapshot

Wake = Callable[[], None]
# Generations remembered with their time and versions: what a person reads a sidecar's version as.
_PUBLICATIONS_KEPT = 64


@dataclass(frozen=True, slots=True)
class Publication:
    """One published snapshot, for people: its generation, when, and its version per type URL."""

    generation: int
    at: float  # wall clock
    versions: Mapping[str, str]


class Publisher:
    """The one current snapshot (all sidecars get the same resources) and the streams watching it.

    `publish` runs on the event loop; it only flags watchers, so its cost does not grow with the
    work each stream then does.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._snapshot: Snapshot | None = None
        self._watchers: set[Wake] = set()
        self._clock = clock
        self._wall_clock = wall_clock
        self._publications: collections.deque[Publication] = collections.deque(maxlen=_PUBLICATIONS_KEPT)
        self.published_at: float | None = None
        self.change_seen_at: float | None = None  # when a source saw the change this snapshot carries
        self.generation = 0

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def publish(self, snapshot: Snapshot, change_seen_at: float | None = None) -> bool:
        """Make `snapshot` current; return False (and wake nobody) when nothing changed.

        `change_seen_at` (on this cache's clock) is when the change was first seen, for the
        fan-out and convergence latencies."""
        if self._snapshot is not None and self._snapshot.versions() == snapshot.versions():
            return False
        self._snapshot = snapshot
        self.generation += 1
        self.published_at = self._clock()
        self.change_seen_at = change_seen_at if change_seen_at is not None else self.published_at
        self._publications.append(Publication(self.generation, self._wall_clock(), snapshot.versions()))
        for wake in list(self._watchers):
            wake()
        return True

    @property
    def publications(self) -> tuple[Publication, ...]:
        """The last published snapshots, oldest first (at most _PUBLICATIONS_KEPT)."""
        return tuple(self._publications)

    def watch(self, wake: Wake) -> Callable[[], None]:
        """Call `wake` after every publish; returns the function that stops watching."""
        self._watchers.add(wake)
        return lambda: self._watchers.discard(wake)

    @property
    def watchers(self) -> int:
        return len(self._watchers)
