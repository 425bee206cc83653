"""kafka-xds (its own process) following a real KRaft 4.1 cluster's partitions with `health:`: 4
brokers over 2 Kubernetes clusters x 2 zones (racks `k8s-1.az-a` ... `k8s-2.az-b`), a topic of
replication factor 3 and min.insync.replicas 2. What its endpoints and metrics say is checked
against what the cluster itself says (aiokafka's admin client on the INTERNAL listeners):

- all in sync: /health/clusters/{cluster}/brokers/{id}/ready is 200 for every broker, every broker
  restartable, every broker_ready gauge 1;
- a topic created with a skewed manual assignment (both replicas in k8s-1) is a new-topic anomaly,
  logged once, counted once, however many polls see it;
- a broker stopped: 503 for the others with exactly the partitions it hosted at min ISR, the
  restartable list shrinks to the brokers sharing none with it, the metrics say so; started again:
  200 for every broker once it is back in every ISR.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import base_config
from tests.conftest_kafka_real import RealCluster
from tests.support.addresses import LoopbackAddresses
from tests.support.wait import eventually
from tests.support.xds_process import XdsProcess

pytestmark = [pytest.mark.kafka]

NAME = "health-kr"
RACKS = {1: "k8s-1.az-a", 2: "k8s-1.az-b", 3: "k8s-2.az-a", 4: "k8s-2.az-b"}
PATTERN = r"(?P<cluster>[^.]+)\.(?P<zone>.+)"
TOPIC, PARTITIONS = "orders", 8
SKEWED = "skewed"
READY = "/health/clusters/" + NAME + "/brokers/{}/ready"


@pytest.fixture(scope="module")
def kafka(real_kafka) -> RealCluster:
    cluster: RealCluster = real_kafka(NAME, brokers=4, racks=RACKS)
    return cluster


@pytest.fixture
async def admin(kafka: RealCluster) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka.kafka.bootstrap_servers, request_timeout_ms=10_000)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _describe(admin: AIOKafkaAdminClient, topic: str) -> dict[str, dict[str, Any]]:
    (found,) = await admin.describe_topics([topic])
    return {f"{topic}-{p['partition']}": p for p in found["partitions"]}


async def _metrics(server: XdsProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = await server.get("/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("kafka_xds_health_")
    }


def _sample(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return metrics[(name, tuple(sorted({"cluster": NAME, **labels}.items())))]


async def test_kafka_xds_answers_readiness_restarts_and_placement_of_a_real_cluster(
    kafka: RealCluster, admin: AIOKafkaAdminClient, xds_processes, addresses: LoopbackAddresses
):
    ids = sorted(RACKS)
    await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, topic_configs={"min.insync.replicas": "2"})])

    async def created_in_sync() -> bool:
        partitions = await _describe(admin, TOPIC)
        return len(partitions) == PARTITIONS and all(len(p["isr"]) == 3 for p in partitions.values())

    await eventually(created_in_sync, timeout=60, what="orders created, every ISR full")

    entry = kafka.source_config(None)
    entry["health"] = {
        "poll_interval_seconds": 1,
        "timeout_seconds": 3,
        "readiness": {"examples": 100},
        "placement": {"rack_pattern": PATTERN},
    }
    server: XdsProcess = await xds_processes(base_config(None, [entry], addresses.take()))

    # -- all in sync --------------------------------------------------------------------------------
    async def all_ready() -> bool:
        for broker_id in ids:
            status, body = await server.get(READY.format(broker_id))
            assert status == 200, body
            assert body["summary"].endswith("cluster in sync"), body
        return True

    await eventually(all_ready, timeout=30, what="every broker ready")
    status, plan = await server.get(f"/health/clusters/{NAME}/restartable")
    assert status == 200 and plan["restartable"] == ids
    metrics = await _metrics(server)
    assert all(_sample(metrics, "kafka_xds_health_broker_ready", broker=str(b)) == 1 for b in ids)
    assert _sample(metrics, "kafka_xds_health_partitions", state="in_sync") == PARTITIONS
    assert _sample(metrics, "kafka_xds_health_new_topic_anomalies_total") == 0

    # -- a new topic with a skewed assignment: both replicas in k8s-1 --------------------------------
    await admin.create_topics([NewTopic(SKEWED, -1, -1, replica_assignments={0: [1, 2], 1: [2, 1]})])

    async def anomaly() -> dict[str, Any]:
        status, placement = await server.get(f"/health/clusters/{NAME}/placement")
        assert status == 200 and placement["anomalies"], placement
        found: dict[str, Any] = placement
        return found

    placement = await eventually(anomaly, timeout=30, what="the skewed topic reported")
    (found,) = placement["anomalies"]
    assert found["topic"] == SKEWED
    assert found["rules"] == {"spread": 2, "dimension-loss": 2}
    assert found["partitions"] == [f"{SKEWED}-0", f"{SKEWED}-1"]
    cells = {(c["row"], c["column"]): c["violations"] for c in placement["report"]["matrix"]["cells"]}
    assert cells[("k8s-1", "az-a")] >= 2 and cells[("k8s-1", "az-b")] >= 2
    polled_at = placement["polled_at"]

    async def two_more_polls() -> bool:
        _, summary = await server.get("/health")
        return bool(summary["clusters"][NAME]["polled_at"] >= polled_at + 2)

    await eventually(two_more_polls, timeout=30, what="two more polls")
    _, placement = await server.get(f"/health/clusters/{NAME}/placement")
    assert placement["anomaly_count"] == 1
    assert _sample(await _metrics(server), "kafka_xds_health_new_topic_anomalies_total") == 1
    logged = [line for line in server.log_text().splitlines() if "new topic breaks replica placement" in line]
    assert len(logged) == 1 and f"topic={SKEWED}" in logged[0], logged

    # -- broker 4 stopped ------------------------------------------------------------------------------
    replicas = {name: p["replicas"] for name, p in (await _describe(admin, TOPIC)).items()}
    hosted = sorted(
        (p for p, members in replicas.items() if 4 in members), key=lambda p: int(p.split("-")[1])
    )
    sharing = {b for members in replicas.values() if 4 in members for b in members} - {4}
    await kafka.stop_broker(4)
    try:

        async def at_min_isr() -> bool:
            for broker_id in (1, 2, 3):
                status, body = await server.get(READY.format(broker_id))
                assert status == 503, body
                assert body["reasons"] == [
                    {
                        "kind": "at-min-isr",
                        "count": len(hosted),
                        "text": body["reasons"][0]["text"],
                        "partitions": hosted,
                    }
                ], body
            return True

        await eventually(at_min_isr, timeout=60, what="the others not ready, naming its partitions")

        async def gone() -> bool:
            # a controlled shutdown leaves the ISRs first, and the registered brokers once it is done
            status, body = await server.get(READY.format(4))
            assert status == 503 and body["reasons"][0]["kind"] == "not-registered", body
            return True

        await eventually(gone, timeout=30, what="broker 4 no longer registered")
        status, plan = await server.get(f"/health/clusters/{NAME}/restartable")
        assert status == 200
        assert plan["restartable"] == sorted(set(ids) - sharing)
        assert set(plan["blocked"]) == sharing
        metrics = await _metrics(server)
        assert _sample(metrics, "kafka_xds_health_partitions", state="at_min_isr") == len(hosted)
        assert all(_sample(metrics, "kafka_xds_health_broker_ready", broker=str(b)) == 0 for b in ids)
        assert _sample(metrics, "kafka_xds_health_restartable_brokers") == len(ids) - len(sharing)
        _, placement = await server.get(f"/health/clusters/{NAME}/placement")
        assert "unplaced-replica" not in placement["report"]["by_rule"]  # stopped, not unplaced
    finally:
        await kafka.start_broker(4)

    await eventually(all_ready, timeout=90, interval=0.5, what="every broker ready again")
