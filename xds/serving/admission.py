"""Who may open a stream on a serving process, and when it must refuse one.

Two reasons to refuse, both answered before anything is sent, counted by reason
(`kafka_xds_streams_refused_total`) and logged at most once a minute per kind:
- capacity: the worker serves its share of `xds.max_concurrent_streams`, or its event loop runs more
  than `xds.overload_lag_seconds` late (RESOURCE_EXHAUSTED: the client retries with backoff, rather
  than wait unseen inside gRPC until gRPC cancels the call);
- access: the client certificate's identity is allowed no Kafka cluster, or has none
  (PERMISSION_DENIED / UNAUTHENTICATED). See xds.serving.access.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
from grpc import aio

from xds.serving.access import AccessPolicy, Refusal, admit, identity_of
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
    ) -> None:
        self._metrics = metrics
        self._stream_limit = stream_limit
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

    def _refused(self, reason: str, message: str, key: str | None = None, **fields: object) -> None:
        self._metrics.streams_refused.labels(reason).inc()
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
