"""The grpcio transport, in process, with a real gRPC client speaking ADS (both variants) to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from grpc import aio
from prometheus_client import CollectorRegistry

from tests.support.protocol_world import World, name
from tests.support.wait import eventually
from xds.config.model import XdsSettings
from xds.serving.stream_metrics import StreamMetrics
from xds.serving.transport import SERVICE, AdsServer
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE


class AdsClient:
    """A minimal ADS client: what Envoy's gRPC mux does, driven by hand."""

    def __init__(
        self,
        port: int,
        delta: bool = False,
        options: list[tuple[str, int]] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        target = f"127.0.0.1:{port}"
        if credentials is None:
            self.channel = aio.insecure_channel(target, options=options or [])
        else:
            self.channel = aio.secure_channel(target, credentials, options=options or [])
        self.requests: asyncio.Queue[bytes | None] = asyncio.Queue()
        parse = DeltaDiscoveryResponse.parse if delta else DiscoveryResponse.parse
        method = self.channel.stream_stream(
            f"/{SERVICE}/{'DeltaAggregatedResources' if delta else 'StreamAggregatedResources'}",
            request_serializer=bytes,
            response_deserializer=parse,
        )
        self.call = method(self._requests())

    async def _requests(self) -> AsyncIterator[bytes]:
        while (request := await self.requests.get()) is not None:
            yield request

    def send(self, request: DiscoveryRequest | DeltaDiscoveryRequest | bytes) -> None:
        self.requests.put_nowait(request if isinstance(request, bytes) else bytes(request))

    async def receive(self) -> DiscoveryResponse:
        response = await asyncio.wait_for(self.call.read(), 10)
        assert isinstance(response, DiscoveryResponse | DeltaDiscoveryResponse)
        return response  # type: ignore[return-value]

    async def close(self) -> None:
        self.requests.put_nowait(None)
        await self.channel.close()


def _counter(registry: CollectorRegistry, name_: str, **labels: str) -> float:
    return registry.get_sample_value(name_, labels) or 0.0


@pytest.fixture
async def ads() -> AsyncIterator[tuple[AdsServer, CollectorRegistry, World]]:
    registry = CollectorRegistry()
    world = World()
    world.views({1: "10.0.0.1"})  # builds (and imports) the typed model once, before the loop is watched
    server = AdsServer(
        XdsSettings(listen="127.0.0.1:0", max_concurrent_streams=2, overload_lag_seconds=0.5),
        StreamMetrics(registry),
    )
    await server.start()
    yield server, registry, world
    await server.stop(grace=0)


def _publish(server: AdsServer, world: World, brokers: dict[int, str | None]) -> None:
    server.publish(world.views(brokers).snapshot)


async def test_responses_decode_with_their_resources_and_nonce(ads):
    server, _, world = ads
    _publish(server, world, {1: "10.0.0.1", 2: "10.0.0.2"})
    client = AdsClient(server.port)
    client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="app-1")))
    response = await client.receive()
    assert response.type_url == CLUSTER_TYPE
    assert response.nonce
    assert response.version_info == server.snapshot.versions[CLUSTER_TYPE]
    assert len(response.resources) == 2
    assert response.control_plane is not None and response.control_plane.identifier == "kafka-xds"
    await client.close()


async def test_a_published_change_reaches_a_connected_stream(ads):
    server, _, world = ads
    _publish(server, world, {1: "10.0.0.1", 2: "10.0.0.2"})
    client = AdsClient(server.port)
    names = [name(1), name(2)]
    client.send(DiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names=names, node=Node(id="app-1")))
    first = await client.receive()
    client.send(
        DiscoveryRequest(
            type_url=ENDPOINT_TYPE,
            resource_names=names,
            version_info=first.version_info,
            response_nonce=first.nonce,
        )
    )
    await eventually(lambda: _acked(server), what="the ACK")
    _publish(server, world, {1: "10.0.0.9", 2: "10.0.0.2"})
    moved = await client.receive()
    assert moved.version_info != first.version_info
    assert len(moved.resources) == 1 and b"10.0.0.9" in moved.resources[0].value
    await client.close()


async def _acked(server: AdsServer) -> bool:
    return all(
        not state.awaiting_ack
        for stream in server.streams.values()
        for state in stream.protocol.types.values()
    )


async def test_nothing_is_sent_before_the_first_snapshot(ads):
    server, _, world = ads
    client = AdsClient(server.port)
    client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="app-1")))
    pending = asyncio.ensure_future(client.receive())
    await asyncio.sleep(0.5)
    assert not pending.done()
    _publish(server, world, {1: "10.0.0.1"})
    assert (await pending).type_url == CLUSTER_TYPE
    await client.close()


async def test_delta_xds_serves_resources_with_their_versions(ads):
    server, registry, world = ads
    _publish(server, world, {1: "10.0.0.1", 2: "10.0.0.2"})
    client = AdsClient(server.port, delta=True)
    client.send(
        DeltaDiscoveryRequest(type_url=CLUSTER_TYPE, resource_names_subscribe=["*"], node=Node(id="a"))
    )
    response = await client.receive()
    assert isinstance(response, DeltaDiscoveryResponse)
    served = server.snapshot.resources(CLUSTER_TYPE)
    assert {resource.name: resource.version for resource in response.resources} == {
        resource: served[resource].version for resource in served
    }
    assert response.system_version_info == server.snapshot.versions[CLUSTER_TYPE]
    client.send(DeltaDiscoveryRequest(type_url=CLUSTER_TYPE, response_nonce=response.nonce))
    await eventually(
        lambda: _counter_at_least(registry, "kafka_xds_acks_total", 1, type="clusters"), what="ACK"
    )
    await client.close()


async def _counter_at_least(registry: CollectorRegistry, name_: str, value: float, **labels: str) -> bool:
    return _counter(registry, name_, **labels) >= value


async def test_streams_beyond_the_limit_are_refused_and_counted(ads):
    server, registry, world = ads
    _publish(server, world, {1: "10.0.0.1"})
    clients = [AdsClient(server.port) for _ in range(2)]
    for client in clients:
        client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="app")))
        await client.receive()
    extra = AdsClient(server.port)
    extra.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="one-too-many")))
    with pytest.raises(aio.AioRpcError) as raised:
        await extra.receive()
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _counter(registry, "kafka_xds_streams_refused_total", reason="at_limit") == 1
    for client in [*clients, extra]:
        await client.close()


async def test_an_overloaded_event_loop_refuses_new_streams_explicitly(ads):
    server, registry, world = ads
    _publish(server, world, {1: "10.0.0.1"})
    # Stall the loop for longer than overload_lag_seconds (0.5 s), as a burst of work would.
    asyncio.get_running_loop().call_soon(time.sleep, 1.2)
    await eventually(lambda: _lagging(server, 0.5), timeout=10, interval=0.05, what="the lag measured")
    client = AdsClient(server.port)
    client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="late")))
    with pytest.raises(aio.AioRpcError) as raised:
        await client.receive()
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "overloaded" in (raised.value.details() or "")
    assert _counter(registry, "kafka_xds_streams_refused_total", reason="overloaded") == 1
    await client.close()
    await eventually(lambda: _lagging(server, 0.5, below=True), timeout=10, what="the loop caught up")
    retry = AdsClient(server.port)
    retry.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="late")))
    assert (await retry.receive()).type_url == CLUSTER_TYPE
    await retry.close()


async def _lagging(server: AdsServer, threshold: float, below: bool = False) -> bool:
    lag = server.admission.loop_lag
    return lag < threshold if below else lag > threshold


async def test_a_request_that_does_not_parse_ends_only_its_stream_with_invalid_argument(ads):
    server, registry, world = ads
    _publish(server, world, {1: "10.0.0.1"})
    good = AdsClient(server.port)
    good.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="good")))
    await good.receive()
    bad = AdsClient(server.port)
    valid = bytes(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="bad")))
    bad.send(valid[:-3])  # a truncated field
    with pytest.raises(aio.AioRpcError) as raised:
        await bad.receive()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "DiscoveryRequest" in (raised.value.details() or "")
    assert _counter(registry, "kafka_xds_streams_ended_total", reason="invalid_request") == 1
    _publish(server, world, {1: "10.0.0.1", 2: "10.0.0.2"})
    assert len(server.streams) == 1  # the good stream goes on
    await good.close()
    await bad.close()


async def test_a_stream_beyond_the_name_limit_ends_with_resource_exhausted_and_is_counted():
    registry = CollectorRegistry()
    server = AdsServer(
        XdsSettings(listen="127.0.0.1:0", max_resource_names=100, overload_lag_seconds=60),
        StreamMetrics(registry),
    )
    await server.start()
    world = World()
    server.publish(world.views({1: "10.0.0.1"}).snapshot)
    try:
        assert server.port is not None
        client = AdsClient(server.port, delta=True)
        invented = [f"invented-{index}" for index in range(60)]
        client.send(DeltaDiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names_subscribe=invented))
        await client.receive()
        more = [f"more-{index}" for index in range(60)]
        client.send(DeltaDiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names_subscribe=more))
        with pytest.raises(aio.AioRpcError) as raised:
            await client.receive()
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "xds.max_resource_names" in (raised.value.details() or "")
        assert "100" in (raised.value.details() or "")
        await eventually(
            lambda: _counter_at_least(registry, "kafka_xds_streams_ended_total", 1, reason="name_limit"),
            what="the end counted",
        )
        await client.close()
    finally:
        await server.stop(grace=0)


@pytest.mark.parametrize(
    "garbage",
    [b"\x0a\x05ab", b"\x07", b"\x22\x02\xff\xfe", b"\x22\x00", b"\x0b\x01"],
    ids=["truncated-string", "bad-tag", "invalid-utf8-type-url", "empty-type-url", "group-wire-type"],
)
async def test_bytes_that_are_not_a_request_are_refused(ads, garbage):
    server, _, world = ads
    _publish(server, world, {1: "10.0.0.1"})
    client = AdsClient(server.port)
    client.send(garbage)
    with pytest.raises(aio.AioRpcError) as raised:
        await client.receive()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await client.close()


async def test_a_client_that_never_reads_is_held_back_not_buffered(ads):
    """Responses the client does not read fill its HTTP/2 window; then the server stops reading its
    requests (a few are read ahead at most), so flow control pushes back on that client alone."""
    server, _, world = ads
    brokers: dict[int, str | None] = {
        broker: f"10.0.{broker // 250}.{broker % 250}" for broker in range(1, 2001)
    }
    views = await asyncio.to_thread(world.views, brokers)  # seconds of typed building, off the loop
    server.publish(views.snapshot)
    small_window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024)]
    client = AdsClient(server.port, options=small_window)
    names = [name(broker) for broker in range(1, 2001)]
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE, "type.googleapis.com/envoy.config.listener.v3.Listener"):
        client.send(DiscoveryRequest(type_url=type_url, node=Node(id="slow")))
    big = bytes(DiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names=names * 10))
    for _ in range(200):  # 200 requests of ~600 KB that nobody will answer
        client.send(big)
    await eventually(lambda: _one_stream(server), what="the stream")
    await asyncio.sleep(2)
    (stream,) = server.streams.values()
    assert len(stream.outbox) <= 4
    assert stream.requests_read < 20  # the rest stays with the client, held back by flow control
    await client.close()


async def _one_stream(server: AdsServer) -> bool:
    return len(server.streams) == 1


async def test_stop_ends_open_streams_and_counts_them(ads):
    server, registry, world = ads
    _publish(server, world, {1: "10.0.0.1"})
    client = AdsClient(server.port)
    client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="app-1")))
    await client.receive()
    assert len(server.streams) == 1
    await server.stop(grace=1)
    assert await asyncio.wait_for(client.call.read(), 5) is aio.EOF
    assert server.streams == {}
    assert _counter(registry, "kafka_xds_streams_ended_total", reason="server_shutdown") == 1
    await client.close()


async def test_a_client_that_closes_is_counted(ads):
    server, registry, world = ads
    _publish(server, world, {1: "10.0.0.1"})
    client = AdsClient(server.port)
    client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="app-1")))
    await client.receive()
    await client.close()

    async def ended() -> bool:
        return (
            sum(
                _counter(registry, "kafka_xds_streams_ended_total", reason=reason)
                for reason in ("client_closed", "cancelled")
            )
            == 1
        )

    await eventually(ended, what="the end counted")
    assert server.streams == {}


async def test_a_burst_of_streams_beyond_the_limit_is_refused_explicitly_never_dropped():
    """More new streams at once than gRPC core queues by default (1000): none may be dropped by core
    without a status the server counts; each is served or refused with RESOURCE_EXHAUSTED."""
    registry = CollectorRegistry()
    server = AdsServer(
        XdsSettings(listen="127.0.0.1:0", max_concurrent_streams=10, overload_lag_seconds=60),
        StreamMetrics(registry),
    )
    await server.start()
    world = World()
    server.publish(world.views({1: "10.0.0.1"}).snapshot)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            method = channel.stream_stream(
                f"/{SERVICE}/StreamAggregatedResources",
                request_serializer=bytes,
                response_deserializer=DiscoveryResponse.parse,
            )
            first = bytes(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="burst")))
            done = asyncio.Event()

            async def requests() -> AsyncIterator[bytes]:
                yield first
                await done.wait()  # a sidecar keeps its stream open

            async def one() -> grpc.StatusCode:
                call = method(requests())
                try:
                    await asyncio.wait_for(call.read(), 60)
                except aio.AioRpcError as err:
                    return err.code()
                return grpc.StatusCode.OK

            codes = await asyncio.gather(*(one() for _ in range(1500)))
            done.set()
        outcomes = {code: codes.count(code) for code in set(codes)}
        assert set(outcomes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, outcomes
        refused = _counter(registry, "kafka_xds_streams_refused_total", reason="at_limit")
        assert refused == outcomes.get(grpc.StatusCode.RESOURCE_EXHAUSTED, 0) > 0
    finally:
        await server.stop(grace=0)
