"""The gRPC transport: Envoy's AggregatedDiscoveryService on grpcio's asyncio server.

Each stream is a thin loop around its `StreamProtocol`: requests and "new snapshot" wake-ups go
into one inbox, the protocol says what to send, and the responses reuse the resources serialized
once per change. Delta xDS is answered UNIMPLEMENTED until it is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from envoy_data_plane.envoy.config.core.v3 import ControlPlane
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.protobuf import Any
from grpc import aio

from xds.cache import SnapshotCache
from xds.config import XdsSettings, parse_listen
from xds.log import event
from xds.metrics import Metrics
from xds.protocol import Response, StreamProtocol
from xds.resources import SHORT_TYPE_NAMES

log = logging.getLogger("kafka_xds.server")

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
_WAKE = object()  # the inbox item for "a new snapshot was published"
_END = object()  # the inbox item for "the client half-closed" or "the server is shutting down"
_ENCODED_CACHE_SIZE = 64  # encoded responses kept: a few versions of each type, EDS subsets included


@dataclass
class StreamInfo:
    """One connected sidecar, as the debug server shows it."""

    stream_id: int
    peer: str
    connected_at: float
    protocol: StreamProtocol = field(default_factory=StreamProtocol)
    inbox: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    wake_pending: bool = False
    # type URL -> (nonce, when the change it carries was seen) of the response awaiting its ACK
    change_seen_at: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.protocol.node.id if self.protocol.node else ""

    @property
    def envoy_version(self) -> str:
        node = self.protocol.node
        if node is None:
            return ""
        build = node.user_agent_build_version
        if build is not None and build.version is not None:
            version = build.version
            return f"{version.major_number}.{version.minor_number}.{version.patch}"
        return node.user_agent_version or ""

    def wake(self) -> None:
        if not self.wake_pending:
            self.wake_pending = True
            self.inbox.put_nowait(_WAKE)


class AdsServer:
    def __init__(
        self,
        settings: XdsSettings,
        cache: SnapshotCache,
        metrics: Metrics | None = None,
        identifier: str = "kafka-xds",
    ) -> None:
        self._settings = settings
        self._cache = cache
        self._metrics = metrics or Metrics()
        self._fanout_pending: set[int] = set()  # streams yet to handle the latest publish
        self._unwatch = cache.watch(self._published)
        self._control_plane = ControlPlane(identifier=identifier)
        self._server: aio.Server | None = None
        self._ids = itertools.count(1)
        self.streams: dict[int, StreamInfo] = {}
        self.port: int | None = None
        self._encoded: dict[tuple[str, str], bytes] = {}

    async def start(self) -> None:
        host, port = parse_listen(self._settings.listen)
        keepalive_ms = int(self._settings.keepalive_time_seconds * 1000)
        server = aio.server(
            options=[
                ("grpc.keepalive_time_ms", keepalive_ms),
                ("grpc.keepalive_timeout_ms", int(self._settings.keepalive_timeout_seconds * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ]
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                            self._stream_aggregated_resources,
                            request_deserializer=DiscoveryRequest.parse,
                            response_serializer=_as_bytes,
                        ),
                        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                            self._delta_aggregated_resources,
                            request_deserializer=bytes,
                            response_serializer=bytes,
                        ),
                    },
                )
            ]
        )
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.port = server.add_insecure_port(address)
        await server.start()
        self._server = server
        event(log, logging.INFO, "ADS server listening", address=address)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, end every stream cleanly (sidecars reconnect elsewhere), then stop."""
        if self._server is None:
            return
        for stream in list(self.streams.values()):
            stream.inbox.put_nowait(_END)
        await self._server.stop(self._settings.shutdown_grace_seconds if grace is None else grace)
        self._server = None
        self._unwatch()

    async def _delta_aggregated_resources(
        self, request_iterator: AsyncIterator[bytes], context: aio.ServicerContext[bytes, bytes]
    ) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "incremental (delta) xDS is not implemented yet: use state-of-the-world ADS (api_type GRPC)",
        )

    async def _stream_aggregated_resources(
        self,
        request_iterator: AsyncIterator[DiscoveryRequest],
        context: aio.ServicerContext[DiscoveryRequest, bytes],
    ) -> AsyncIterator[bytes]:
        if len(self.streams) >= self._settings.max_concurrent_streams:
            event(
                log,
                logging.WARNING,
                "stream refused: at the stream limit",
                peer=context.peer(),
                limit=self._settings.max_concurrent_streams,
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this kafka-xds serves at most {self._settings.max_concurrent_streams} streams",
            )
        stream = StreamInfo(next(self._ids), context.peer(), time.time())
        self.streams[stream.stream_id] = stream
        self._metrics.streams.set(len(self.streams))
        reader = asyncio.create_task(self._read(request_iterator, stream))
        event(log, logging.INFO, "stream opened", stream=stream.stream_id, peer=stream.peer)
        try:
            while True:
                item = await stream.inbox.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                if item is _WAKE:
                    stream.wake_pending = False
                    responses = stream.protocol.snapshot_changed(self._cache.snapshot)
                else:
                    assert isinstance(item, DiscoveryRequest)
                    responses = self._receive(stream, item)
                for response in responses:
                    self._metrics.pushes.labels(
                        SHORT_TYPE_NAMES.get(response.type_url, response.type_url)
                    ).inc()
                    if self._cache.change_seen_at is not None:
                        stream.change_seen_at[response.type_url] = (
                            response.nonce,
                            self._cache.change_seen_at,
                        )
                    yield self._encode(response)
                if item is _WAKE:
                    self._fanned_out(stream.stream_id)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            del self.streams[stream.stream_id]
            self._metrics.streams.set(len(self.streams))
            self._fanned_out(stream.stream_id)
            event(log, logging.INFO, "stream closed", stream=stream.stream_id, node=stream.node_id)

    def _published(self) -> None:
        """A new snapshot: wake every stream, and time how long until all of them have handled it."""
        self._fanout_pending = set(self.streams)
        for stream in self.streams.values():
            stream.wake()

    def _fanned_out(self, stream_id: int) -> None:
        if stream_id in self._fanout_pending:
            self._fanout_pending.discard(stream_id)
            if not self._fanout_pending and self._cache.change_seen_at is not None:
                self._metrics.fanout_seconds.observe(time.monotonic() - self._cache.change_seen_at)

    def _receive(self, stream: StreamInfo, request: DiscoveryRequest) -> list[Response]:
        state = stream.protocol.types.get(request.type_url)
        nack_before = state.nack if state else None
        was_awaiting = state.awaiting_ack if state else False
        responses = stream.protocol.receive(request, self._cache.snapshot, time.time())
        if state is not None and was_awaiting and not state.awaiting_ack:
            name = SHORT_TYPE_NAMES[request.type_url]
            nonce, seen_at = stream.change_seen_at.pop(request.type_url, ("", None))
            if state.nack is not nack_before and state.nack is not None:
                self._metrics.nacks.labels(name).inc()
                event(
                    log,
                    logging.WARNING,
                    "sidecar rejected config (NACK); it keeps its last good version",
                    node=stream.node_id,
                    type=name,
                    rejected_version=state.nack.version,
                    kept_version=state.acked_version,
                    error=state.nack.message,
                )
            else:
                self._metrics.acks.labels(name).inc()
                if seen_at is not None and nonce == request.response_nonce:
                    self._metrics.convergence_seconds.observe(time.monotonic() - seen_at)
        return responses

    async def _read(self, request_iterator: AsyncIterator[DiscoveryRequest], stream: StreamInfo) -> None:
        try:
            async for request in request_iterator:
                stream.inbox.put_nowait(request)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a broken stream ends this stream only; the sidecar reconnects
            event(log, logging.WARNING, "stream read failed", stream=stream.stream_id, error=repr(err))
        stream.inbox.put_nowait(_END)

    def _encode(self, response: Response) -> bytes:
        """The response's bytes. Everything but the nonce is encoded once per content version and
        shared by every stream; the nonce is appended as its own field (protobuf parses concatenated
        encodings as one message), so a push to N sidecars does not re-encode N times."""
        key = (response.type_url, response.version)
        body = self._encoded.get(key)
        if body is None:
            body = bytes(
                DiscoveryResponse(
                    version_info=response.version,
                    resources=[
                        Any(type_url=resource.type_url, value=resource.payload)
                        for resource in response.resources
                    ],
                    type_url=response.type_url,
                    control_plane=self._control_plane,
                )
            )
            self._encoded[key] = body
            while len(self._encoded) > _ENCODED_CACHE_SIZE:
                del self._encoded[next(iter(self._encoded))]
        return body + bytes(DiscoveryResponse(nonce=response.nonce))


def _as_bytes(encoded: bytes) -> bytes:
    return encoded
