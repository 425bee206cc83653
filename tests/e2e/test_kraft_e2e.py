"""The KRaft source against a real Kafka-protocol broker (Tansu), and end to end through a real Envoy.

Tansu answers Metadata as Kafka does: its node id, the endpoint it advertises on the listener asked,
its cluster id. A broker "moving" is Tansu restarting with another advertised address; "another
cluster" is Tansu restarting with another cluster id. With KAFKA_BOOTSTRAP set, one more test asks a
real Kafka cluster (e.g. the docker-compose `kraft` profile: KAFKA_BOOTSTRAP=127.0.0.1:29092).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

from tests.conftest import base_config
from tests.support.kafka import TANSU_NODE_ID, KafkaRelay
from tests.support.wait import eventually
from xds.config.model import parse_config
from xds.demo.brokers import Certs, exchange
from xds.kafka.client import KafkaMetadataClient
from xds.pipeline.sources.kraft import KraftSource
from xds.pipeline.topology import SourceState, Topology
from xds.shared.addresses import HostPort

pytestmark = pytest.mark.kafka

PORT = 9000 + TANSU_NODE_ID  # port_base 9000
# The plan's loopback IP where no Envoy runs: the source alone only reads brokers, it binds nothing.
SOURCE_ONLY_LOOPBACK = "127.0.0.12"


def kraft_cluster(bootstrap: list[str], loopback: str, **kraft: Any) -> dict[str, Any]:
    return {
        "name": "kafka-k",
        "loopback_ip": loopback,
        "port_base": 9000,
        "upstream_listener": "MESH",
        "removal_grace_seconds": 2,
        "kraft": {"bootstrap_servers": bootstrap, "poll_interval_seconds": 0.2, **kraft},
    }


class Following:
    """A KraftSource running in this test's loop, with every Topology it published."""

    def __init__(self, bootstrap: list[str], **kraft: Any) -> None:
        cluster = kraft_cluster(bootstrap, SOURCE_ONLY_LOOPBACK, **kraft)
        config = parse_config({"xds": {"tls": None}, "upstream_tls": None, "kafka_clusters": [cluster]})
        self.source = KraftSource(config.kafka_clusters[0])
        self.published: list[Topology] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Following:
        self._task = asyncio.create_task(self.source.run(self.published.append))
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    @property
    def current(self) -> Topology | None:
        return self.published[-1] if self.published else None

    async def until(self, state: SourceState, endpoint: str | None = None, error: str = "") -> Topology:
        async def probe() -> Topology:
            topology = self.current
            assert topology is not None, "nothing published yet"
            assert topology.state is state and error in (topology.error or ""), topology
            if endpoint is not None:
                broker = topology.broker(TANSU_NODE_ID)
                assert broker is not None and str(broker.endpoint("MESH")) == endpoint, topology
            return topology

        return await eventually(probe, timeout=20, what=f"{state} {endpoint or ''} {error}")


async def test_metadata_client_reads_a_real_brokers_answer(tansu, addresses):
    first_pod, second_pod = addresses.take(), addresses.take()
    broker = await tansu(addresses.take(), advertised=f"{first_pod}:19094", cluster_id="kraft-one")
    settings = (
        parse_config(
            {
                "xds": {"tls": None},
                "upstream_tls": None,
                "kafka_clusters": [kraft_cluster([broker.bootstrap], SOURCE_ONLY_LOOPBACK)],
            }
        )
        .kafka_clusters[0]
        .kraft
    )
    assert settings is not None
    client = KafkaMetadataClient(settings, "kafka-k")
    server = HostPort(broker.host, broker.port)
    try:
        first = await client.fetch(server)
        again = await client.fetch(server)  # over the same connection
        # The kept connection dies (a restart, an idle timeout): the next fetch reconnects at once.
        await broker.restart(advertised=f"{second_pod}:19094")
        after_restart = await client.fetch(server)
    finally:
        await client.close()
    assert first == again
    assert first.cluster_id == "kraft-one"
    assert [(b.node_id, b.host, b.port) for b in first.brokers] == [(TANSU_NODE_ID, first_pod, 19094)]
    assert [(b.host, b.port) for b in after_restart.brokers] == [(second_pod, 19094)]


async def test_follows_a_broker_that_moves_goes_away_and_comes_back(tansu, addresses):
    first_pod, second_pod = f"{addresses.take()}:19094", f"{addresses.take()}:19094"
    broker = await tansu(addresses.take(), advertised=first_pod)
    # The first bootstrap server refuses connections: the second one is asked.
    async with Following([f"{addresses.take()}:1", broker.bootstrap]) as following:
        synced = await following.until(SourceState.SYNCED, first_pod)
        assert synced.cluster_id == "kraft-test"

        await broker.restart(advertised=second_pod)  # rescheduled: same listener, new address
        await following.until(SourceState.SYNCED, second_pod)
        published = len(following.published)
        await asyncio.sleep(1)  # five more polls with nothing changed: nothing published
        assert len(following.published) == published

        await broker.stop()
        stale = await following.until(SourceState.STALE, second_pod, error="connection refused")
        assert f"{broker.bootstrap}: connection refused" in (stale.error or "")
        assert [b.broker_id for b in stale.brokers] == [TANSU_NODE_ID]  # kept, never emptied

        await broker.start()
        await following.until(SourceState.SYNCED, second_pod)


async def test_a_restart_as_another_cluster_is_refused_until_the_right_one_is_back(tansu, addresses):
    prod_pod, staging_pod, moved_pod = (f"{addresses.take()}:19094" for _ in range(3))
    broker = await tansu(addresses.take(), advertised=prod_pod, cluster_id="prod-b")
    async with Following([broker.bootstrap]) as following:
        await following.until(SourceState.SYNCED, prod_pod)
        await broker.restart(advertised=staging_pod, cluster_id="staging-b")
        refused = await following.until(SourceState.STALE, prod_pod, error="'staging-b' but was 'prod-b'")
        assert refused.cluster_id == "prod-b"
        await broker.restart(advertised=moved_pod, cluster_id="prod-b")
        await following.until(SourceState.SYNCED, moved_pod)


@pytest.fixture
async def relays(certs: Certs) -> AsyncIterator[list[KafkaRelay]]:
    fronts: list[KafkaRelay] = []
    yield fronts
    for front in fronts:
        await front.stop()


async def test_ssl_with_a_client_certificate(tansu, certs, relays, tmp_path, addresses):
    pod, relay = f"{addresses.take()}:19094", addresses.take()
    broker = await tansu(addresses.take(), advertised=pod)
    front = await KafkaRelay(relay, (broker.host, broker.port), certs.server_context(relay)).start()
    relays.append(front)
    ssl_settings = {
        "ca_file": str(certs.ca_file),
        "cert_file": str(certs.client_cert),
        "key_file": str(certs.client_key),
    }
    async with Following([f"{relay}:{front.port}"], security_protocol="SSL", ssl=ssl_settings) as following:
        await following.until(SourceState.SYNCED, pod)
    assert front.handshakes >= 1

    # Without a client certificate the listener refuses the handshake: reported, nothing synced.
    async with Following(
        [f"{relay}:{front.port}"], security_protocol="SSL", ssl={"ca_file": str(certs.ca_file)}
    ) as refused:
        topology = await refused.until(SourceState.SYNCING, error=f"{relay}:{front.port}:")
        assert not topology.brokers

    # A CA that did not sign the listener's certificate: a TLS verification error, named.
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with Following(
        [f"{relay}:{front.port}"], security_protocol="SSL", ssl={"ca_file": str(other)}
    ) as untrusted:
        await untrusted.until(SourceState.SYNCING, error="CERTIFICATE_VERIFY_FAILED")


@pytest.mark.envoy
async def test_kafka_xds_on_kraft_carries_bytes_to_the_broker_that_metadata_names(
    tansu, upstreams, envoys, xds_processes, certs, addresses
):
    """Bytes to the cluster's loopback IP, port 9111, reach the broker Metadata advertises, over
    mTLS, and follow it."""
    loopback, first_pod, moved_pod = addresses.take(), addresses.take(), addresses.take()
    first = await upstreams(f"broker-111@{first_pod}", first_pod)
    broker = await tansu(addresses.take(), advertised=f"{first_pod}:{first.port}")
    config = base_config(certs, [kraft_cluster([broker.bootstrap], loopback)], addresses.take())
    server = await xds_processes(config)
    envoy = await envoys("app-1", config)

    async def answers(prefix: str) -> bool:
        answer = await exchange(loopback, PORT, "ping")
        assert answer.startswith(prefix), answer
        return True

    await eventually(lambda: answers(f"broker-111@{first_pod}"), what="bytes through the sidecar")
    assert first.client_subjects[-1] == "commonName=sidecar.kafka-xds.test"  # mTLS: the sidecar's cert

    moved = await upstreams(f"broker-111@{moved_pod}", moved_pod)
    await broker.restart(advertised=f"{moved_pod}:{moved.port}")
    await eventually(lambda: answers(f"broker-111@{moved_pod}"), what="bytes to the moved broker")

    status, topology = await server.get("/debug/topology")
    assert status == 200
    cluster = topology["clusters"]["kafka-k"]
    assert cluster["source"]["kind"] == "kraft"
    assert cluster["source"]["cluster_id"] == "kraft-test"
    assert envoy is not None


@pytest.mark.skipif(
    not os.environ.get("KAFKA_BOOTSTRAP"), reason="set KAFKA_BOOTSTRAP=host:port to ask a real Kafka"
)
async def test_a_real_kafka_cluster_when_one_is_reachable():
    bootstrap = os.environ["KAFKA_BOOTSTRAP"].split(",")
    async with Following(bootstrap) as following:
        topology = await following.until(SourceState.SYNCED)
    assert topology.state is SourceState.SYNCED
    assert topology.cluster_id
    for broker in topology.brokers:
        assert broker.endpoint("MESH") is not None
