"""End to end with real Apache Kafka: 3.9 brokers in ZooKeeper mode and a 4.1 KRaft cluster, each
followed by kafka-xds (its own process) and reached through a real Envoy over mTLS by real clients.

Each broker listens the way the README tells users to run brokers: INTERNAL (plaintext, its own
address: replication and what kafka-xds learns the host from) and MESH (mTLS, client certificates
required, advertising the plan's loopback address). A reschedule restarts a broker with its id and
data on a new address.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import base_config
from tests.conftest_kafka_real import RealCluster
from tests.support.addresses import LoopbackAddresses
from tests.support.envoy import Envoy
from tests.support.wait import eventually
from tests.support.xds_process import XdsProcess

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.zookeeper,
    pytest.mark.kafka,
]

_CHURN = ("listener_manager.listener_modified", "cluster_manager.cluster_modified")


@pytest.fixture(scope="module")
def zk_cluster(zookeeper, real_kafka) -> RealCluster:
    cluster: RealCluster = real_kafka("kafka-zk", brokers=3, zookeeper=zookeeper)
    return cluster


_SASL_USER, _SASL_PASSWORD = "kafka-xds", f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def kraft_cluster(real_kafka) -> RealCluster:
    cluster: RealCluster = real_kafka("kafka-kr", brokers=3, sasl_users={_SASL_USER: _SASL_PASSWORD})
    return cluster


class _Mesh:
    """kafka-xds following one real cluster, and one sidecar serving it."""

    def __init__(self, cluster: RealCluster, server: XdsProcess, envoy: Envoy) -> None:
        self.cluster, self.server, self.envoy = cluster, server, envoy

    async def endpoints(self) -> dict[int, list[str]]:
        """Each broker's upstream endpoint in the sidecar."""
        found = await self.envoy.cluster_endpoints()
        prefix = f"{self.cluster.name}/broker-"
        return {int(name[len(prefix) :]): hosts for name, hosts in found.items() if name.startswith(prefix)}

    def expected(self, broker_ids: set[int]) -> dict[int, list[str]]:
        kafka = self.cluster.kafka
        return {broker_id: [f"{kafka.spec(broker_id).host}:{kafka.mesh_port}"] for broker_id in broker_ids}

    async def follows(self, broker_ids: set[int]) -> None:
        async def followed() -> bool:
            endpoints, expected = await self.endpoints(), self.expected(broker_ids)
            assert endpoints == expected, f"the sidecar has {endpoints}, not {expected}"
            return True

        await eventually(followed, timeout=60, what=f"the sidecar following brokers {sorted(broker_ids)}")

    async def churn(self) -> dict[str, int]:
        stats = await self.envoy.stats()
        return {name: stats.get(name, 0) for name in _CHURN}

    async def proxied_bytes(self) -> int:
        """Bytes clients sent into the sidecar's broker listeners (tcp_proxy, downstream side)."""
        stats = await self.envoy.stats()
        return sum(
            value
            for name, value in stats.items()
            if name.startswith("tcp.") and name.endswith(".downstream_cx_rx_bytes_total")
        )


async def _mesh(cluster: RealCluster, zookeeper: Any, xds_processes, envoys, addresses) -> _Mesh:
    config = base_config(cluster.certs, [cluster.source_config(zookeeper)], addresses.take())
    server = await xds_processes(config)
    envoy = await envoys("app-1", config)
    return _Mesh(cluster, server, envoy)


async def _follows_reschedule_add_and_remove(mesh: _Mesh, addresses: LoopbackAddresses) -> None:
    cluster = mesh.cluster
    await mesh.follows({1, 2, 3})
    before = await mesh.churn()

    await cluster.move(2, addresses.take())  # a pod reschedule: same id and data, a new IP

    await mesh.follows({1, 2, 3})
    assert await mesh.churn() == before  # only broker 2's endpoints changed (EDS)
    status, topology = await mesh.server.get("/debug/topology")
    assert status == 200
    assert topology["clusters"][cluster.name]["source"]["state"] == "synced"

    await cluster.add_broker(cluster.spec_for(4, addresses.take()))
    await mesh.follows({1, 2, 3, 4})
    await cluster.remove_broker(4)
    await mesh.follows({1, 2, 3})  # after removal_grace_seconds


async def test_the_zookeeper_source_follows_real_kafka_3_9_brokers_through_a_reschedule(
    zk_cluster, zookeeper, xds_processes, envoys, addresses
):
    mesh = await _mesh(zk_cluster, zookeeper, xds_processes, envoys, addresses)
    await _follows_reschedule_add_and_remove(mesh, addresses)
    _, topology = await mesh.server.get("/debug/topology")
    cluster = topology["clusters"]["kafka-zk"]
    assert cluster["plan_mismatches"] == []  # MESH advertises exactly the plan's address
    assert sorted(broker["id"] for broker in cluster["brokers"]) == [1, 2, 3]


async def test_the_kraft_source_follows_a_real_kafka_4_1_cluster_and_never_its_controller(
    kraft_cluster, xds_processes, envoys, addresses
):
    mesh = await _mesh(kraft_cluster, None, xds_processes, envoys, addresses)
    await _follows_reschedule_add_and_remove(mesh, addresses)
    assert set(await mesh.endpoints()) == {1, 2, 3}  # the controller (node 3000) is no broker here


async def test_real_clients_keep_every_record_through_the_sidecar_across_a_reschedule(
    zk_cluster, zookeeper, xds_processes, envoys, addresses
):
    cluster = zk_cluster
    mesh = await _mesh(cluster, zookeeper, xds_processes, envoys, addresses)
    await mesh.follows({1, 2, 3})
    bootstrap = cluster.plan_address(1)  # the only address the clients know: the sidecar's
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 3, topic_configs={"min.insync.replicas": "2"})])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}", auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    sent: list[bytes] = []
    received: list[bytes] = []

    async def produce(count: int) -> None:
        for _ in range(count):
            value = f"record-{len(sent)}".encode()
            await producer.send_and_wait(topic, value, key=value)
            sent.append(value)
            await asyncio.sleep(0.01)

    async def consume() -> None:
        async for record in consumer:
            received.append(record.value)

    consuming = asyncio.create_task(consume())
    try:
        await produce(100)
        await cluster.move(2, addresses.take())  # while the clients keep their connections
        await mesh.follows({1, 2, 3})
        await produce(100)
        await cluster.stop_broker(3)  # its partitions' leaders move to the others
        await produce(100)
        await cluster.start_broker(3)
        await produce(100)

        async def all_consumed() -> bool:
            return len(received) >= len(sent)

        await eventually(all_consumed, timeout=60, what="every record consumed")
        # Every broker address the clients learned is the plan's: no connection bypassed the sidecar.
        learned = {broker.host for broker in producer.client.cluster.brokers()}
        learned |= {broker.host for broker in consumer._client.cluster.brokers()}
        assert learned == {cluster.loopback_ip}
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await consumer.stop()
        await producer.stop()

    assert len(sent) == 400
    assert sorted(received) == sorted(sent)  # every record, none twice
    assert await mesh.proxied_bytes() > 400 * len(b"record-000") * 2  # keys and values, at least


async def _speak_without_a_client_certificate(host: str, port: int, ca_file: str) -> None:
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        writer.write(b"\x00\x00\x00\x00")
        await writer.drain()
        await asyncio.wait_for(reader.readexactly(4), 5)
    finally:
        writer.close()


async def test_the_mesh_listener_refuses_a_client_without_the_sidecars_certificate(zk_cluster):
    kafka = zk_cluster.kafka
    speak = _speak_without_a_client_certificate(
        kafka.spec(1).host, kafka.mesh_port, str(zk_cluster.certs.ca_file)
    )
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await speak


def _sasl_source(cluster: RealCluster, mechanism: str, password_file: Path) -> dict[str, object]:
    entry = cluster.source_config(None)
    entry["upstream_listener"] = "SASL"  # the bootstrap servers' listener: Metadata answers its endpoints
    entry["kraft"] = {
        "bootstrap_servers": cluster.kafka.sasl_bootstrap_servers,
        "poll_interval_seconds": 0.5,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl": {"mechanism": mechanism, "username": _SASL_USER, "password_file": str(password_file)},
    }
    return entry


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_the_kraft_source_asks_a_real_cluster_over_sasl_and_no_log_line_holds_the_password(
    kraft_cluster, mechanism, tmp_path, xds_processes, addresses, monkeypatch
):
    monkeypatch.setenv("KAFKA_XDS_LOG_LEVEL", "debug")  # aiokafka's and kazoo's debug lines too
    password_file = tmp_path / "password"
    password_file.write_text(_SASL_PASSWORD + "\n")
    password_file.chmod(0o600)
    wrong_file = tmp_path / "wrong-password"
    wrong_password = f"wrong-{uuid.uuid4().hex}"
    wrong_file.write_text(wrong_password)
    wrong_file.chmod(0o600)

    config = base_config(None, [_sasl_source(kraft_cluster, mechanism, password_file)], addresses.take())
    server = await xds_processes(config, name=f"sasl-{mechanism}")
    _, topology = await server.get("/debug/topology")
    cluster = topology["clusters"][kraft_cluster.name]
    assert cluster["source"]["state"] == "synced"
    registered = {broker["id"]: broker["listeners"]["SASL"] for broker in cluster["brokers"]}
    assert sorted(registered.values()) == sorted(kraft_cluster.kafka.sasl_bootstrap_servers)

    refused = base_config(None, [_sasl_source(kraft_cluster, mechanism, wrong_file)], addresses.take())
    wrong = await xds_processes(refused, name=f"sasl-wrong-{mechanism}", wait_ready=False)

    async def reported() -> bool:
        _, body = await wrong.get("/debug/topology")
        error = body["clusters"][kraft_cluster.name]["source"]["error"] or ""
        return "uthentication" in error

    await eventually(reported, timeout=30, what="the wrong password reported as an authentication failure")
    assert (await wrong.get("/readyz"))[0] == 503
    for process in (server, wrong):
        log = process.log_text()
        assert _SASL_PASSWORD not in log and wrong_password not in log
