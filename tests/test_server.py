"""The grpcio transport, in process, with a real gRPC client speaking ADS to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from grpc import aio

from tests.test_protocol import World, name
from xds.cache import SnapshotCache
from xds.config import XdsSettings
from xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE
from xds.server import SERVICE, AdsServer


class AdsClient:
    """A minimal ADS client: what Envoy's gRPC mux does, driven by hand."""

    def __init__(self, port: int) -> None:
        self.channel = aio.insecure_channel(f"127.0.0.1:{port}")
        self.requests: asyncio.Queue[DiscoveryRequest | None] = asyncio.Queue()
        method = self.channel.stream_stream(
            f"/{SERVICE}/StreamAggregatedResources",
            request_serializer=bytes,
            response_deserializer=DiscoveryResponse.parse,
        )
        self.call = method(self._requests())

    async def _requests(self) -> AsyncIterator[DiscoveryRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    def send(self, request: DiscoveryRequest) -> None:
        self.requests.put_nowait(request)

    async def receive(self) -> DiscoveryResponse:
        response = await asyncio.wait_for(self.call.read(), 10)
        assert isinstance(response, DiscoveryResponse)
        return response

    async def close(self) -> None:
        self.requests.put_nowait(None)
        await self.channel.close()


@pytest.fixture
async def ads() -> AsyncIterator[tuple[AdsServer, SnapshotCache]]:
    cache = SnapshotCache()
    server = AdsServer(XdsSettings(listen="127.0.0.1:0", max_concurrent_streams=2), cache)
    await server.start()
    yield server, cache
    await server.stop(grace=0)


async def test_responses_decode_with_their_resources_and_nonce(ads):
    server, cache = ads
    world = World()
    cache.publish(world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"}))
    assert server.port is not None
    client = AdsClient(server.port)
    client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="app-1")))
    response = await client.receive()
    assert response.type_url == CLUSTER_TYPE
    assert response.nonce == "1"
    assert response.version_info == cache.snapshot.version(CLUSTER_TYPE)
    assert len(response.resources) == 2
    assert response.control_plane is not None and response.control_plane.identifier == "kafka-xds"
    await client.close()


async def test_a_published_change_reaches_a_connected_stream(ads):
    server, cache = ads
    world = World()
    cache.publish(world.snapshot({1: "10.0.0.1"}))
    client = AdsClient(server.port)
    client.send(DiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names=[name(1)], node=Node(id="app-1")))
    first = await client.receive()
    client.send(
        DiscoveryRequest(
            type_url=ENDPOINT_TYPE,
            resource_names=[name(1)],
            version_info=first.version_info,
            response_nonce=first.nonce,
        )
    )
    await asyncio.sleep(0.1)
    cache.publish(world.snapshot({1: "10.0.0.9"}))
    moved = await client.receive()
    assert moved.version_info != first.version_info
    assert b"10.0.0.9" in moved.resources[0].value
    await client.close()


async def test_nothing_is_sent_before_the_first_snapshot(ads):
    server, cache = ads
    client = AdsClient(server.port)
    client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="app-1")))
    pending = asyncio.ensure_future(client.receive())
    await asyncio.sleep(0.5)
    assert not pending.done()
    cache.publish(World().snapshot({1: "10.0.0.1"}))
    assert (await pending).type_url == CLUSTER_TYPE
    await client.close()


async def test_delta_xds_is_answered_unimplemented(ads):
    server, _ = ads
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        method = channel.stream_stream(
            f"/{SERVICE}/DeltaAggregatedResources", request_serializer=bytes, response_deserializer=bytes
        )
        call = method(iter([b""]))
        with pytest.raises(aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_streams_beyond_the_limit_are_refused(ads):
    server, cache = ads
    cache.publish(World().snapshot({1: "10.0.0.1"}))
    clients = [AdsClient(server.port) for _ in range(2)]
    for client in clients:
        client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="app")))
        await client.receive()
    extra = AdsClient(server.port)
    extra.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="one-too-many")))
    with pytest.raises(aio.AioRpcError) as raised:
        await extra.receive()
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for client in [*clients, extra]:
        await client.close()


async def test_stop_ends_open_streams(ads):
    server, cache = ads
    cache.publish(World().snapshot({1: "10.0.0.1"}))
    client = AdsClient(server.port)
    client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id="app-1")))
    await client.receive()
    assert len(server.streams) == 1
    await server.stop(grace=1)
    assert await asyncio.wait_for(client.call.read(), 5) is aio.EOF
    assert server.streams == {}
    await client.close()
