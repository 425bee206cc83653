"""What a serving process tells the main process's history: NACKs and refused streams, as they happen.

Each serving process keeps the last `capacity` notices in a ring, numbered; the main process asks
for those after the last number it has seen, every few seconds, off the streams' path (recording
one is an append). A reader that fell more than the ring behind is told how many it missed; a
restarted process has a new `epoch`, so a reader's old cursor means nothing to it.
"""

from __future__ import annotations

import collections
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["NackNotice", "Notice", "NoticeBatch", "NoticeLog", "RefusalNotice"]

# Outside text (Envoy's error detail) is cut here: a notice is a line on a page, not a log.
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class NackNotice:
    """A sidecar rejected a response; it keeps its last good version."""

    at: float  # wall clock
    node_id: str
    type_name: str  # short: clusters, endpoints, ...
    rejected_version: str
    kept_version: str | None
    error: str


@dataclass(frozen=True, slots=True)
class RefusalNotice:
    """A stream refused before it was served (a `kafka_xds_streams_refused_total` reason)."""

    at: float
    reason: str
    identity: str | None
    peer: str


Notice = NackNotice | RefusalNotice


@dataclass(frozen=True, slots=True)
class NoticeBatch:
    notices: tuple[Notice, ...]
    epoch: int  # the log's: pass it back with `last`
    last: int  # the number of the newest notice in the process (0: none yet)
    missed: int  # notices after the reader's cursor that the ring no longer holds


class NoticeLog:
    def __init__(self, capacity: int = 256, clock: Callable[[], float] = time.time) -> None:
        self._ring: collections.deque[tuple[int, Notice]] = collections.deque(maxlen=capacity)
        self._numbers = itertools.count(1)
        self._last = 0
        self.clock = clock
        self.epoch = secrets.randbits(63)

    def nack(
        self, node_id: str, type_name: str, rejected_version: str, kept_version: str | None, error: str
    ) -> None:
        notice = NackNotice(
            self.clock(), node_id, type_name, rejected_version, kept_version, error[:_MAX_ERROR_CHARS]
        )
        self._add(notice)

    def refusal(self, reason: str, identity: str | None, peer: str) -> None:
        self._add(RefusalNotice(self.clock(), reason, identity, peer))

    def _add(self, notice: Notice) -> None:
        self._last = next(self._numbers)
        self._ring.append((self._last, notice))

    def after(self, epoch: int | None, cursor: int) -> NoticeBatch:
        """The notices numbered above `cursor` of the log `epoch` (another epoch, or None: all)."""
        if epoch != self.epoch or cursor > self._last:
            cursor = 0
        notices = tuple(notice for number, notice in self._ring if number > cursor)
        return NoticeBatch(notices, self.epoch, self._last, self._last - cursor - len(notices))
