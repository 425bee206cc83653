"""The serving side as the main process sees it: in this process, or in worker processes.

Both kinds of `Fleet` take every snapshot the pipeline publishes, say whether they can serve it
(readiness), report on their streams for `/debug/streams` and add their metrics to the scrape. With
`xds.workers: 1` streams are served on the main process's event loop (`LocalFleet`); with more,
each worker is its own process sharing the ADS port (`WorkerFleet` in xds.process.supervisor).
Both turn each snapshot into the same `SnapshotUpdate` and apply it the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client.metrics_core import Metric

from xds.config.model import XdsSettings
from xds.pipeline.publisher import Publisher
from xds.pipeline.snapshot import Snapshot
from xds.process.updates import snapshot_update
from xds.serving.access import AccessPolicy
from xds.serving.notices import Notice
from xds.serving.protocol import ServedSnapshot
from xds.serving.reports import StreamQuery, merge, report
from xds.serving.stream_metrics import StreamMetrics
from xds.serving.transport import AdsServer


class Fleet(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def waiting(self) -> dict[str, str]:
        """Why it cannot serve the current snapshot yet, by part; empty when it can."""
        ...

    async def streams(self, query: StreamQuery) -> dict[str, Any]: ...

    async def refresh_metrics(self) -> None:
        """Fetch what `collect` returns next (called right before each scrape)."""
        ...

    async def notices(self) -> tuple[list[Notice], int]:
        """The NACKs and refusals since the last call (one reader: the debug server's sampler), and
        how many were missed (more than a serving process's ring since the last call)."""
        ...

    def collect(self) -> Iterable[Metric]: ...


class LocalFleet:
    """Streams served on this process's event loop."""

    def __init__(
        self,
        settings: XdsSettings,
        cache: Publisher,
        metrics: StreamMetrics,
        access: AccessPolicy | None = None,
    ) -> None:
        self.ads = AdsServer(settings, metrics, access=access)
        self._cache = cache
        self._served: ServedSnapshot | None = None
        self._sent: Snapshot | None = None
        self._unwatch = cache.watch(self._published)
        self._notices_seen = 0

    async def start(self) -> None:
        await self.ads.start()
        if self._cache.snapshot is not None:
            self._published()

    async def stop(self) -> None:
        self._unwatch()
        await self.ads.stop()

    def _published(self) -> None:
        snapshot = self._cache.snapshot
        assert snapshot is not None
        self._served = snapshot_update(self._cache, snapshot, self._sent).apply(self._served)
        self._sent = snapshot
        self.ads.publish(self._served)

    def waiting(self) -> dict[str, str]:
        return {}

    async def streams(self, query: StreamQuery) -> dict[str, Any]:
        return merge([report(self.ads.streams.values(), self.ads.views, query)], query)

    async def refresh_metrics(self) -> None:
        return None

    async def notices(self) -> tuple[list[Notice], int]:
        batch = self.ads.notices.after(self.ads.notices.epoch, self._notices_seen)
        self._notices_seen = batch.last
        return list(batch.notices), batch.missed

    def collect(self) -> Iterable[Metric]:
        return ()  # this process's registry holds the stream metrics already
