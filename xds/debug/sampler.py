"""The status page's last hour: what the metrics already count, sampled every few seconds.

One background task of the debug server (started and stopped with it) takes, every `interval`
seconds, the connected sidecars, pushes, NACKs, refusals and the convergence histogram from the
registry the scrape reads (the serving workers' counts fetched the way a scrape fetches them), into
a ring that holds an hour; and moves the NACKs and refusals the serving side noticed into the
event history, one event per kind of problem per sample. Nothing here runs per request or per
stream: the page only reads the ring.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from xds.pipeline.history import EventKind, EventLog, Severity
from xds.process.fleet import Fleet
from xds.serving.notices import NackNotice, Notice, RefusalNotice
from xds.shared.log import event

__all__ = ["Point", "Sample", "Sampler", "interval_points", "read_sample", "record_notices"]

log = logging.getLogger("kafka_xds.debug")
_SIDECARS = "kafka_xds_connected_streams"
_PUSHES = "kafka_xds_pushes_total"
_NACKS = "kafka_xds_nacks_total"
_REFUSALS = "kafka_xds_streams_refused_total"
_CONVERGENCE = "kafka_xds_convergence_seconds_bucket"
_SAMPLED = (_SIDECARS, _PUSHES, _NACKS, _REFUSALS, _CONVERGENCE)
_NAMES_SHOWN = 3  # node ids or peers named in one NACK or refusal event; the rest counted


@dataclass(frozen=True, slots=True)
class Sample:
    """The counts at one moment (counters as totals since start)."""

    at: float  # wall clock
    sidecars: float
    pushes: float
    nacks: float
    refusals: float
    convergence: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last


@dataclass(frozen=True, slots=True)
class Point:
    """One interval between two samples: what happened in it, per minute where it is a rate."""

    at: float  # the interval's end
    sidecars: float
    pushes_per_minute: float
    nacks: float
    refusals: float
    convergence_p99: float | None  # seconds; None when no change converged in the interval


def read_sample(families: Iterable[Metric], at: float) -> Sample:
    totals = dict.fromkeys((_SIDECARS, _PUSHES, _NACKS, _REFUSALS), 0.0)
    buckets: dict[float, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
            elif sample.name == _CONVERGENCE:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Sample(
        at,
        totals[_SIDECARS],
        totals[_PUSHES],
        totals[_NACKS],
        totals[_REFUSALS],
        tuple(sorted(buckets.items())),
    )


def _increase(before: float, after: float) -> float:
    return after - before if after >= before else after  # a worker restarted: it counts from 0 again


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram's cumulative buckets, interpolated within a bucket as
    Prometheus' histogram_quantile does; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bound: that bound is all we know
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def interval_points(samples: Sequence[Sample]) -> list[Point]:
    """What happened between each two consecutive samples."""
    points = []
    for before, after in itertools.pairwise(samples):
        seconds = max(after.at - before.at, 1e-9)
        earlier = dict(before.convergence)
        converged = [(bound, _increase(earlier.get(bound, 0.0), count)) for bound, count in after.convergence]
        points.append(
            Point(
                after.at,
                after.sidecars,
                _increase(before.pushes, after.pushes) * 60 / seconds,
                _increase(before.nacks, after.nacks),
                _increase(before.refusals, after.refusals),
                quantile(0.99, converged),
            )
        )
    return points


def record_notices(events: EventLog, notices: Sequence[Notice], missed: int) -> None:
    """One event per rejected version and error (the sidecars that sent that NACK named), and one
    per refusal reason."""
    nacks: dict[tuple[str, str, str | None, str], list[NackNotice]] = {}
    refusals: dict[str, list[RefusalNotice]] = {}
    for notice in notices:
        if isinstance(notice, NackNotice):
            key = (notice.type_name, notice.rejected_version, notice.kept_version, notice.error)
            nacks.setdefault(key, []).append(notice)
        else:
            refusals.setdefault(notice.reason, []).append(notice)
    for (type_name, rejected, kept, error), rejecting in nacks.items():
        kept_text = f"keep {kept[:8]}" if kept else "have none yet"
        events.record(
            EventKind.NACK,
            f"{_count(len(rejecting), 'sidecar')} rejected {type_name} version {rejected[:8]} "
            f"(they {kept_text}): {error} — {_named([notice.node_id or '?' for notice in rejecting])}",
            severity=Severity.ERROR,
            at=rejecting[-1].at,
        )
    for reason, refused in refusals.items():
        who = [notice.identity or notice.peer for notice in refused]
        events.record(
            EventKind.REFUSAL,
            f"{_count(len(refused), 'stream')} refused ({reason}) — {_named(who)}",
            severity=Severity.WARNING,
            at=refused[-1].at,
        )
    if missed:
        events.record(
            EventKind.REFUSAL,
            f"{missed} more NACKs or refusals not shown: more than a worker keeps between two samples "
            "(kafka_xds_nacks_total and kafka_xds_streams_refused_total count them all)",
            severity=Severity.WARNING,
        )


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _named(names: Sequence[str]) -> str:
    distinct = list(dict.fromkeys(names))
    shown = ", ".join(distinct[:_NAMES_SHOWN])
    return shown + (f" and {len(distinct) - _NAMES_SHOWN} more" if len(distinct) > _NAMES_SHOWN else "")


class Sampler:
    """The ring of samples over `window` seconds and the task that fills it."""

    def __init__(
        self,
        registry: CollectorRegistry,
        fleet: Fleet,
        events: EventLog,
        interval: float = 10.0,
        window: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # The stream metrics are in this registry when streams are served in this process, else
        # in what the fleet collected from its workers: one of the two, never both.
        self._registry = registry.restricted_registry(_SAMPLED)
        self._fleet = fleet
        self._events = events
        self.interval = interval
        self._samples: collections.deque[Sample] = collections.deque(maxlen=int(window / interval) + 1)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def samples(self) -> tuple[Sample, ...]:
        return tuple(self._samples)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="debug-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a missing sample is a gap in a chart, not a reason to stop
                event(log, logging.WARNING, "status page sample failed", error=repr(err))
            await asyncio.sleep(self.interval)

    async def sample_once(self) -> Sample:
        await self._fleet.refresh_metrics()  # the workers' counts, as a scrape fetches them
        families = itertools.chain(self._registry.collect(), self._fleet.collect())
        sample = read_sample(families, self._clock())
        self._samples.append(sample)
        notices, missed = await self._fleet.notices()
        record_notices(self._events, notices, missed)
        return sample
