"""Every message between the main process and a serving worker, as a named, typed value.

The main process sends `Init` once, then `SnapshotUpdate`s (the whole snapshot first, then only what
changed), `Query`s (streams, metrics, notices), and at the end `Stop`. A worker answers `Listening`
(or `Failed`) once, `Applied` after each update, a `Reply` per query, and `Stopped` when its streams
have ended. Messages travel as pickles on a private socket pair (xds.process.spawn); both ends are
the same program.

One diff turns a published snapshot into an update (`xds.process.updates.snapshot_update`), and
`SnapshotUpdate.apply` turns it into the served snapshot, the same way for the main process serving
alone and for every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from xds.serving.protocol import ServedSnapshot
from xds.serving.reports import StreamQuery
from xds.serving.settings import ServingSettings
from xds.shared.resource import Resource

# ---- main process -> worker


@dataclass(frozen=True, slots=True)
class Init:
    """A worker's settings; the first message it gets."""

    index: int  # 1..N, in log lines and per-worker metrics
    settings: ServingSettings
    identifier: str  # the control plane's identifier in responses
    stream_limit: int  # this worker's share of `xds.max_concurrent_streams`
    access: tuple[tuple[str, tuple[str, ...]], ...] | None  # (identity, clusters) rules; None: no policy
    log_level: str
    log_format: str


@dataclass(frozen=True, slots=True)
class SnapshotUpdate:
    """A published snapshot: all of it (`full`), or what changed since the previous one."""

    generation: int
    change_seen_at: float | None  # time.monotonic() of the change it carries (same host, same clock)
    full: bool
    upserts: tuple[Resource, ...]
    removed: tuple[tuple[str, str], ...]  # (type URL, name)

    def apply(self, served: ServedSnapshot | None) -> ServedSnapshot:
        """The served snapshot after this update; an unchanged resource keeps its encoding."""
        if self.full or served is None:
            return ServedSnapshot.build(self.generation, self.upserts, served, self.change_seen_at)
        return served.updated(self.generation, self.upserts, self.removed, self.change_seen_at)


Question = Literal["streams", "metrics", "notices"]


@dataclass(frozen=True, slots=True)
class Query:
    """A question about the worker's streams (`StreamQuery`), its metrics, or its notices after a
    cursor (`notices_epoch`, `notices_after`: xds.serving.notices); answered by a `Reply`."""

    request_id: int
    question: Question
    streams: StreamQuery | None = None
    notices_epoch: int | None = None
    notices_after: int = 0


@dataclass(frozen=True, slots=True)
class Stop:
    """End every stream within `grace` seconds, then exit."""

    grace: float


ToWorker = Init | SnapshotUpdate | Query | Stop

# ---- worker -> main process


@dataclass(frozen=True, slots=True)
class Listening:
    pid: int


@dataclass(frozen=True, slots=True)
class Failed:
    """It could not start (e.g. the address is in use): one line the main process reports."""

    error: str


@dataclass(frozen=True, slots=True)
class Applied:
    generation: int


# A metric family as plain data: (name, documentation, type, unit, [(sample name, labels, value)]).
MetricFamily = tuple[str, str, str, str, list[tuple[str, dict[str, str], float]]]


@dataclass(frozen=True, slots=True)
class Reply:
    request_id: int
    answer: Any  # a stream report (dict), a list of MetricFamily, or a NoticeBatch


@dataclass(frozen=True, slots=True)
class Stopped:
    """Every stream has ended; the worker exits next."""


FromWorker = Listening | Failed | Applied | Reply | Stopped
