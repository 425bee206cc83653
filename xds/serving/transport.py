"""The gRPC transport: Envoy's AggregatedDiscoveryService, both variants, on grpcio's asyncio server.

Each stream is a thin loop around its `StreamProtocol`: a reader hands raw requests over (at most a
few at a time, so a client that does not read its responses is held back by HTTP/2 flow control,
not buffered without limit), the protocol says what to send, and what it sends are byte strings
shared by every stream with the same subscription. Requests are parsed by `RequestParser` (once per
distinct byte string), never into typed messages.

Why streams must be cheap: grpcio's asyncio server takes new calls from gRPC core one at a time, on
the same event loop as every stream's work. When that loop is saturated, new calls wait inside gRPC
core, unseen, and core cancels those that wait longer than its unrequested-call limit (30 s), with
no status the application could log. So per-stream work is kept small, serving spreads over worker
processes (xds.process.supervisor), and a loop that falls behind refuses new streams explicitly
(RESOURCE_EXHAUSTED, counted and logged) so clients back off instead of silently timing out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from grpc import aio

from xds.serving.access import AccessPolicy
from xds.serving.admission import Admission, worker_share
from xds.serving.notices import NoticeLog
from xds.serving.protocol import (
    Acked,
    Delta,
    Ignored,
    MalformedRequest,
    Nacked,
    Nonces,
    Outcome,
    RequestParser,
    Sent,
    ServedSnapshot,
    Sotw,
    StreamProtocol,
    SyncState,
    TooManyNames,
    Views,
)
from xds.serving.protocol.messages import DeltaRequest, SotwRequest, control_plane
from xds.serving.settings import ServingSettings
from xds.serving.stream_metrics import StreamMetrics
from xds.serving.tls import ServerCertificates
from xds.shared.addresses import join_listen, parse_listen
from xds.shared.errors import ConfigError, StartupError
from xds.shared.log import Repeats, event
from xds.shared.resource_types import SHORT_TYPE_NAMES

log = logging.getLogger("kafka_xds.server")

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
_READ_AHEAD = 4  # requests a stream reads while its responses are not being sent; then HTTP/2 pushes back


def _set_event() -> asyncio.Event:
    ready = asyncio.Event()
    ready.set()
    return ready


@dataclass(eq=False)
class StreamInfo:
    """One connected sidecar: its protocol state and what the transport measured."""

    stream_id: str
    peer: str
    api: str  # "sotw" or "delta"
    connected_at: float  # wall clock, for people
    connected_monotonic: float
    protocol: StreamProtocol
    identity: str | None = None
    outbox: collections.deque[bytes] = field(default_factory=collections.deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=_set_event)  # nothing being sent
    failure: MalformedRequest | TooManyNames | None = None
    publish_pending: bool = False
    client_done: bool = False
    ending: bool = False
    synced_at: float | None = None  # monotonic, first time in sync
    pending_since: float | None = None  # monotonic: last sent a response not yet answered
    requests_read: int = 0
    responses: int = 0
    response_bytes: int = 0
    # type URL -> (nonce, when the change it carries was seen) of the response awaiting its ACK
    change_seen_at: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.protocol.node.id if self.protocol.node else ""

    @property
    def envoy_version(self) -> str:
        return self.protocol.node.envoy_version if self.protocol.node else ""

    @property
    def allowed(self) -> frozenset[str] | None:
        """The Kafka clusters this sidecar may see (its stream's scope); None: every one."""
        return self.protocol.scope

    def wake(self) -> None:
        self.publish_pending = True
        self.wakeup.set()


class AdsServer:
    """Serves ADS streams from the snapshots handed to `publish`."""

    def __init__(
        self,
        settings: ServingSettings,
        metrics: StreamMetrics,
        identifier: str = "kafka-xds",
        worker: int = 0,
        stream_limit: int | None = None,
        reuse_port: bool = False,
        access: AccessPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._certificates: ServerCertificates | None = None
        self._metrics = metrics
        self._worker = worker
        identity_limit = settings.max_streams_per_identity
        if identity_limit is not None and stream_limit is not None:
            identity_limit = worker_share(identity_limit, stream_limit, settings.max_concurrent_streams)
        self.notices = NoticeLog()  # NACKs and refusals, for the main process's history
        self.admission = Admission(
            metrics,
            stream_limit if stream_limit is not None else settings.max_concurrent_streams,
            settings.overload_lag_seconds,
            access,
            worker,
            identity_limit,
            self.notices,
        )
        self._reuse_port = reuse_port
        self._nonces = Nonces()
        self._control_plane = control_plane(identifier)
        self._parser = RequestParser()
        self._repeats = Repeats()
        self._ids = itertools.count(1)
        self._server: aio.Server | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._fanout_pending: set[str] = set()
        self.views: Views | None = None
        self.streams: dict[str, StreamInfo] = {}
        self.port: int | None = None

    @property
    def snapshot(self) -> ServedSnapshot | None:
        return self.views.snapshot if self.views is not None else None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        host, port = parse_listen(self._settings.listen)
        keepalive_ms = int(self._settings.keepalive_time_seconds * 1000)
        server = aio.server(
            options=[
                ("grpc.so_reuseport", 1 if self._reuse_port else 0),
                ("grpc.keepalive_time_ms", keepalive_ms),
                ("grpc.keepalive_timeout_ms", int(self._settings.keepalive_timeout_seconds * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.max_receive_message_length", self._settings.max_request_bytes),
                # gRPC core refuses calls beyond a backlog of calls the application has not taken
                # yet (1000 by default), without telling it: a burst of sidecars reconnecting
                # after a restart would lose streams silently. The backlog is sized for bursts
                # instead; admission then refuses what it must, explicitly and counted.
                ("grpc.server.max_pending_requests", self.admission.backlog),
                ("grpc.server.max_pending_requests_hard_limit", self.admission.backlog),
            ]
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                            functools.partial(self._serve, "sotw")
                        ),
                        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                            functools.partial(self._serve, "delta")
                        ),
                    },
                )
            ]
        )
        address = join_listen(host, port)
        try:
            self.port = await self._add_port(server, address)
        except RuntimeError:
            raise StartupError(f"xds.listen: cannot listen on {address}: address in use") from None
        await server.start()
        self._server = server
        self._lag_task = asyncio.create_task(self.admission.watch_loop_lag(), name="loop-lag")
        event(log, logging.INFO, "ADS server listening", address=address, worker=self._worker)

    async def _add_port(self, server: aio.Server, address: str) -> int:
        """Plaintext only when `xds.tls` is null; with TLS, the files are read here (each worker
        reads its own) and followed for changes."""
        if self._settings.tls is None:
            return server.add_insecure_port(address)
        try:
            self._certificates = await asyncio.to_thread(ServerCertificates, self._settings.tls)
        except ConfigError as err:
            raise StartupError(str(err)) from None
        return server.add_secure_port(address, self._certificates.credentials())

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, end every stream cleanly (sidecars reconnect elsewhere), then stop."""
        if self._server is None:
            return
        self._stopping = True
        if self.streams:
            event(log, logging.INFO, "ending streams", streams=len(self.streams), worker=self._worker)
        for stream in list(self.streams.values()):
            stream.ending = True
            stream.wakeup.set()
        await self._server.stop(self._settings.shutdown_grace_seconds if grace is None else grace)
        self._server = None
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task

    def publish(self, snapshot: ServedSnapshot) -> None:
        """A new snapshot: wake every stream, and time how long until all of them have handled it."""
        self.views = Views(snapshot, self._nonces, self._control_plane)
        self._fanout_pending = set(self.streams)
        for stream in self.streams.values():
            stream.wake()

    # -- streams --------------------------------------------------------------------------------

    async def _serve(
        self,
        api: str,
        request_iterator: AsyncIterator[bytes],
        context: aio.ServicerContext[bytes, bytes],
    ) -> AsyncIterator[bytes]:
        """One stream of either variant (bound to "sotw" or "delta" in `start`)."""
        parse: Callable[[bytes], SotwRequest | DeltaRequest] = (
            self._parser.sotw if api == "sotw" else self._parser.delta
        )
        await self.admission.capacity(len(self.streams), context)
        verified = self._certificates is not None and self._certificates.requires_client_certificate
        identity, scope = await self.admission.identify(context, verified)
        await self.admission.claim(identity, context)  # released in the `finally` below
        protocol = StreamProtocol(
            Sotw() if api == "sotw" else Delta(), scope, self._settings.max_resource_names
        )
        stream = StreamInfo(
            f"{self._worker}-{next(self._ids)}",
            context.peer(),
            api,
            time.time(),
            time.monotonic(),
            protocol,
            identity,
        )
        self.streams[stream.stream_id] = stream
        self._metrics.streams.set(len(self.streams))
        reader = asyncio.create_task(self._read(request_iterator, stream, parse))
        event(
            log,
            logging.DEBUG,
            "stream opened",
            stream=stream.stream_id,
            peer=stream.peer,
            api=api,
            identity=identity,
        )
        ended = "error"
        try:
            while True:
                await stream.wakeup.wait()
                stream.wakeup.clear()
                if stream.failure is not None:
                    raise stream.failure
                if stream.ending:
                    ended = "server_shutdown"
                    break
                if stream.publish_pending:
                    stream.publish_pending = False
                    stream.outbox.extend(self._account(stream, stream.protocol.publish(self.views)))
                    self._fanned_out(stream.stream_id)
                while stream.outbox:
                    stream.idle.clear()
                    yield stream.outbox.popleft()
                stream.idle.set()
                if stream.client_done:
                    ended = "client_closed"
                    break
        except MalformedRequest as err:
            ended = "invalid_request"
            event(
                log,
                logging.WARNING,
                "malformed request; stream ended",
                stream=stream.stream_id,
                peer=stream.peer,
                error=str(err),
            )
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except TooManyNames as err:
            ended = "name_limit"
            type_name = SHORT_TYPE_NAMES[err.type_url]
            message = (
                f"{err.names} {type_name} names subscribed; this kafka-xds serves at most {err.limit} "
                "per stream and type (xds.max_resource_names)"
            )
            # A sidecar that reconnects and does it again is logged once a minute, not every time.
            repeated = self._repeats.admit(f"name_limit {stream.identity}")
            if repeated is not None:
                event(
                    log,
                    logging.WARNING,
                    "too many resource names; stream ended (RESOURCE_EXHAUSTED)",
                    stream=stream.stream_id,
                    peer=stream.peer,
                    identity=stream.identity,
                    type=type_name,
                    names=err.names,
                    limit=err.limit,
                    **repeated,
                )
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        except asyncio.CancelledError:
            ended = "server_shutdown" if self._stopping else "cancelled"
            raise
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            del self.streams[stream.stream_id]
            self.admission.release(identity)
            self._metrics.streams.set(len(self.streams))
            self._metrics.streams_ended.labels(ended).inc()
            self._fanned_out(stream.stream_id)
            event(
                log,
                logging.DEBUG,
                "stream closed",
                stream=stream.stream_id,
                node=stream.node_id,
                reason=ended,
            )

    async def _read(
        self,
        request_iterator: AsyncIterator[bytes],
        stream: StreamInfo,
        parse: Callable[[bytes], SotwRequest | DeltaRequest],
    ) -> None:
        """Apply each request as it arrives; what it makes due goes to the stream's outbox. While the
        outbox is not being sent (the client does not read), at most a few requests are read ahead:
        then reading stops, and HTTP/2 flow control holds that client back."""
        ahead = 0
        try:
            async for raw in request_iterator:
                stream.requests_read += 1
                request = parse(raw)
                bodies = self._account(stream, stream.protocol.receive(request, self.views, time.time()))
                if bodies:
                    stream.outbox.extend(bodies)
                    stream.wakeup.set()
                if stream.outbox or not stream.idle.is_set():
                    ahead += 1
                    if ahead >= _READ_AHEAD:
                        await stream.idle.wait()
                        ahead = 0
                else:
                    ahead = 0
        except asyncio.CancelledError:
            raise
        except (MalformedRequest, TooManyNames) as err:
            stream.failure = err
        except Exception as err:  # a broken stream ends this stream only; the sidecar reconnects
            event(log, logging.DEBUG, "stream read failed", stream=stream.stream_id, error=repr(err))
        stream.client_done = True
        stream.wakeup.set()

    def _account(self, stream: StreamInfo, outcomes: list[Outcome]) -> list[bytes]:
        """The bodies to send of what the protocol says; counts and logs what happened."""
        now = time.monotonic()
        bodies: list[bytes] = []
        for outcome in outcomes:
            if isinstance(outcome, Sent):
                body = outcome.body
                counters = self._metrics.by_type[outcome.type_url]
                counters.pushes.inc()
                counters.response_bytes.inc(len(body.data))
                stream.responses += 1
                stream.response_bytes += len(body.data)
                stream.pending_since = stream.pending_since or now
                seen_at = self.snapshot.change_seen_at if self.snapshot is not None else None
                # A change's convergence is timed only for sidecars that were connected when it was
                # seen; a sidecar's first sync is timed on its own.
                if seen_at is not None and stream.connected_monotonic <= seen_at and not outcome.initial:
                    stream.change_seen_at[outcome.type_url] = (body.nonce, seen_at)
                bodies.append(body.data)
            elif isinstance(outcome, Acked):
                self._metrics.by_type[outcome.type_url].acks.inc()
                nonce, seen_at = stream.change_seen_at.pop(outcome.type_url, ("", 0.0))
                if nonce == outcome.nonce:
                    self._metrics.convergence_seconds.observe(now - seen_at)
            elif isinstance(outcome, Nacked):
                stream.change_seen_at.pop(outcome.type_url, None)
                self._metrics.by_type[outcome.type_url].nacks.inc()
                self.notices.nack(
                    stream.node_id,
                    SHORT_TYPE_NAMES[outcome.type_url],
                    outcome.rejected_version,
                    outcome.kept_version,
                    outcome.message,
                )
                event(
                    log,
                    logging.WARNING,
                    "sidecar rejected config (NACK); it keeps its last good version",
                    node=stream.node_id,
                    stream=stream.stream_id,
                    type=SHORT_TYPE_NAMES[outcome.type_url],
                    rejected_version=outcome.rejected_version,
                    kept_version=outcome.kept_version,
                    error=outcome.message,
                )
            elif isinstance(outcome, Ignored):
                event(
                    log,
                    logging.DEBUG,
                    "request ignored",
                    stream=stream.stream_id,
                    type=outcome.type_url,
                    reason=outcome.reason,
                )
        if outcomes:
            self._note_sync(stream, now)
        return bodies

    def _note_sync(self, stream: StreamInfo, now: float) -> None:
        if not any(state.awaiting_ack for state in stream.protocol.types.values()):
            stream.pending_since = None
        if stream.synced_at is None and stream.protocol.sync_state(self.views) is SyncState.IN_SYNC:
            stream.synced_at = now
            self._metrics.initial_sync_seconds.observe(now - stream.connected_monotonic)

    def _fanned_out(self, stream_id: str) -> None:
        if stream_id in self._fanout_pending:
            self._fanout_pending.discard(stream_id)
            snapshot = self.snapshot
            if not self._fanout_pending and snapshot is not None and snapshot.change_seen_at is not None:
                self._metrics.fanout_seconds.observe(time.monotonic() - snapshot.change_seen_at)
