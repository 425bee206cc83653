"""Who may open a stream on a serving process, and when it must refuse one.

Three reasons to refuse, each answered before anything is sent, counted by reason
(`kafka_xds_streams_refused_total`) and logged at most once a minute per kind:
- capacity: the worker serves its share of `xds.max_concurrent_streams`, or its event loop runs more
  than `xds.overload_lag_seconds` late (RESOURCE_EXHAUSTED: the client retries with backoff, rather
  than wait unseen inside gRPC until gRPC cancels the call);
- access: the client certificate's identity is allowed no Kafka cluster, or has none
  (PERMISSION_DENIED / UNAUTHENTICATED). See xds.serving.access;
- the identity's share: that identity already has its share of `xds.max_streams_per_identity` on
  this worker (RESOURCE_EXHAUSTED), so one identity cannot take every slot; other identities are
  unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

import grpc
from grpc import aio

from xds.serving.access import AccessPolicy, Refusal, admit, identity_of
from xds.serving.notices import NoticeLog
from xds.serving.stream_metrics import StreamMetrics
from xds.shared.log import Repeats, event

log = logging.getLogger("kafka_xds.server")
_LAG_INTERVAL_SECONDS = 0.25
_MIN_BACKLOG = 4096


class Admission:
    def __init__(
        self,
        metrics: StreamMetrics,
        stream_limit: int,
        overload_lag_seconds: float,
        access: AccessPolicy | None,
        worker: int,
        identity_limit: int | None = None,
        notices: NoticeLog | None = None,
    ) -> None:
        self._metrics = metrics
        self._notices = notices if notices is not None else NoticeLog()
        self._stream_limit = stream_limit
        self.identity_limit = identity_limit  # streams of one identity on this worker; None: any
        self._identity_streams: dict[str, int] = {}  # identities with streams here -> how many
        # New calls gRPC core may hold while this process takes them one by one: a burst as large
        # as the streams it may serve, several times over.
        self.backlog = max(4 * stream_limit, _MIN_BACKLOG)
        self._overload_lag_seconds = overload_lag_seconds
        self._access = access
        self._worker = worker
        self._repeats = Repeats()
        self.loop_lag = 0.0

    async def capacity(self, streams: int, context: aio.ServicerContext[bytes, bytes]) -> None:
        """Abort the call (RESOURCE_EXHAUSTED) when this worker cannot take another stream now."""
        if streams >= self._stream_limit:
            reason = "at_limit"
            message = f"this kafka-xds serves at most {self._stream_limit} streams per worker"
        elif self.loop_lag > self._overload_lag_seconds:
            reason = "overloaded"
            message = f"kafka-xds is overloaded (its event loop runs {self.loop_lag:.1f} s late); retry later"
        else:
            return
        self._refused(
            reason,
            "new streams refused (RESOURCE_EXHAUSTED); clients retry with backoff",
            peer=context.peer(),
            streams=streams,
            loop_lag_seconds=round(self.loop_lag, 2),
        )
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    async def identify(
        self, context: aio.ServicerContext[bytes, bytes], verified: bool
    ) -> tuple[str | None, frozenset[str] | None]:
        """The sidecar's verified identity and the Kafka clusters it may see (None: all); a sidecar
        the access policy allows nothing is refused here. Without verified client certificates
        there is no identity and everything is allowed."""
        if not verified:
            return None, None
        identity = identity_of(context.auth_context())
        scope = admit(identity, self._access)
        if isinstance(scope, Refusal):
            self._refused(
                scope.reason,
                f"stream refused ({scope.code.name}): {scope.message}",
                key=identity,
                identity=identity,
                peer=context.peer(),
            )
            await context.abort(scope.code, scope.message)
        return identity, scope

    async def claim(self, identity: str | None, context: aio.ServicerContext[bytes, bytes]) -> None:
        """Count a new stream of `identity`; abort the call (RESOURCE_EXHAUSTED) when the identity
        already has its share of this worker. Every claim is `release`d when its stream ends."""
        if identity is None or self.identity_limit is None:
            return
        streams = self._identity_streams.get(identity, 0)
        if streams >= self.identity_limit:
            self._refused(
                "identity_limit",
                "stream refused (RESOURCE_EXHAUSTED): its identity has every stream it may have",
                key=identity,
                identity=identity,
                peer=context.peer(),
                streams=streams,
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"identity {identity!r} has {streams} streams on this kafka-xds worker, its share of "
                "xds.max_streams_per_identity; retry later",
            )
        self._identity_streams[identity] = streams + 1

    def release(self, identity: str | None) -> None:
        """A claimed stream ended."""
        if identity is None or self.identity_limit is None:
            return
        streams = self._identity_streams.pop(identity) - 1
        if streams:
            self._identity_streams[identity] = streams

    def _refused(self, reason: str, message: str, key: str | None = None, **fields: object) -> None:
        self._metrics.streams_refused.labels(reason).inc()
        identity, peer = fields.get("identity"), fields.get("peer")
        self._notices.refusal(reason, identity if isinstance(identity, str) else None, str(peer or "?"))
        admitted = self._repeats.admit(f"{reason} {key}")
        if admitted is not None:
            event(log, logging.WARNING, message, reason=reason, worker=self._worker, **fields, **admitted)

    async def watch_loop_lag(self, on_lag: Callable[[float], None] | None = None) -> None:
        """How late the loop runs a timer: the honest measure of how far behind serving is."""
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + _LAG_INTERVAL_SECONDS
            await asyncio.sleep(_LAG_INTERVAL_SECONDS)
            lag = max(0.0, loop.time() - expected)
            # Rise at once, decay over a few ticks: one quiet tick does not end an overload.
            self.loop_lag = lag if lag > self.loop_lag else self.loop_lag * 0.5 + lag * 0.5
            self._metrics.loop_lag_seconds.set(self.loop_lag)


def worker_share(replica_limit: int, worker_streams: int, replica_streams: int) -> int:
    """A worker's share of a per-replica limit: the share it takes of `xds.max_concurrent_streams`
    (`worker_streams` of `replica_streams`), rounded up, since the kernel spreads connections over
    the workers evenly."""
    return max(1, min(replica_limit, math.ceil(replica_limit * worker_streams / replica_streams)))
