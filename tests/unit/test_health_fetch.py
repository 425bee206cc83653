"""A live cluster's answers as ClusterState: the conversion and its warnings, the servers asked in
turn, and the bound on the whole fetch (a server that never answers cannot hold it)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka.protocol.metadata import MetadataRequest

from tests.unit.test_kafka_partitions import (
    LEADER_NOT_AVAILABLE,
    TOPIC_AUTHORIZATION_FAILED,
    configs_v2,
    metadata_v5,
    rf3,
    topic_config,
)
from xds.config.model import KraftSettings
from xds.health.fetch import ClusterStateReader, ClusterUnreachable, cluster_state
from xds.health.readiness import ReasonKind, broker_readiness, restart_plan
from xds.health.state import PartitionId
from xds.kafka.metadata import MetadataError
from xds.kafka.partitions import (
    TOPIC_RESOURCE,
    MinIsrConfigs,
    PartitionSnapshot,
    decode_topics_metadata,
)
from xds.shared.addresses import HostPort

SERVER = HostPort("10.0.0.1", 9092)


def snapshot(topics: list[tuple[Any, ...]], configs: MinIsrConfigs) -> PartitionSnapshot:
    return PartitionSnapshot(SERVER, decode_topics_metadata(metadata_v5(topics)), configs)


def test_a_snapshot_becomes_the_cluster_state_the_decisions_take():
    configs = MinIsrConfigs({"orders": 2, "__consumer_offsets": 2}, 1, "broker 1")
    state, warnings = cluster_state(
        "kafka-a", snapshot([rf3("orders", isr_without=3), rf3("__consumer_offsets", 1)], configs)
    )
    assert warnings == ()
    assert state.cluster == "kafka-a"
    assert {b.broker_id: b.rack for b in state.brokers.values()} == {1: "rack-1", 2: "rack-2", 3: "rack-3"}
    assert not any(b.fenced for b in state.brokers.values())  # Metadata says nothing of fencing
    assert state.controller_id == 1
    assert state.min_isr("orders") == 2 and state.default_min_isr == 1
    assert [str(p.id) for p in state.partitions] == [
        "__consumer_offsets-0",
        "orders-0",
        "orders-1",
        "orders-2",
    ]
    orders = state.partitions[1]
    assert (orders.leader, orders.replicas, orders.isr) == (1, (1, 2, 3), (1, 2))
    readiness = broker_readiness(state, 3)
    assert not readiness.ready
    assert [r.kind for r in readiness.reasons] == [ReasonKind.NOT_IN_ISR, ReasonKind.AT_MIN_ISR]
    assert restart_plan(state).restartable == (3,)


def test_a_topic_whose_config_is_unreadable_gets_the_broker_default_and_a_warning():
    configs = MinIsrConfigs({"orders": 3}, 2, "broker 1", {"secret": "TOPIC_AUTHORIZATION_FAILED"})
    state, warnings = cluster_state("kafka-a", snapshot([rf3("orders"), rf3("secret")], configs))
    assert state.min_isr("secret") == 2
    assert state.min_isr("orders") == 3
    assert warnings == (
        "min.insync.replicas of 1 topic(s) unreadable, broker default 2 used: "
        "secret (TOPIC_AUTHORIZATION_FAILED)",
    )


def test_without_a_broker_default_an_unreadable_topic_needs_every_replica():
    configs = MinIsrConfigs({}, None, None, {"secret": "TOPIC_AUTHORIZATION_FAILED"})
    state, warnings = cluster_state("kafka-a", snapshot([rf3("secret")], configs))
    assert state.min_isr("secret") == 3
    assert "broker default unknown: taken as their replication factor (stricter)" in warnings[0]
    assert restart_plan(state).restartable == ()  # nothing is known safe to restart


def test_a_topic_metadata_could_not_describe_is_named():
    topics = [rf3("orders"), (LEADER_NOT_AVAILABLE, "creating", False, [])]
    state, warnings = cluster_state("kafka-a", snapshot(topics, MinIsrConfigs({"orders": 2}, 1)))
    assert state.topics == ("orders",)
    assert warnings == (
        "Metadata could not describe 1 topic(s), not counted: creating (LEADER_NOT_AVAILABLE)",
    )


def test_many_unreadable_topics_are_counted_and_a_few_named():
    unread = {f"t{n}": TOPIC_AUTHORIZATION_FAILED for n in range(5)}
    configs = MinIsrConfigs({}, 2, "broker 1", {name: "DENIED" for name in unread})
    _, warnings = cluster_state("kafka-a", snapshot([rf3(name, 1) for name in unread], configs))
    assert warnings == (
        "min.insync.replicas of 5 topic(s) unreadable, broker default 2 used: "
        "t0 (DENIED), t1 (DENIED), t2 (DENIED), ...",
    )


# -- asking servers in turn, within the time --------------------------------------------------------


class Servers:
    """Per server: 'answer' (a healthy RF 3 cluster), 'hang', or an exception to raise."""

    def __init__(self, behaviour: dict[str, Any]) -> None:
        self.behaviour = behaviour
        self.asked: list[str] = []
        self.closed = 0

    async def request(self, server: HostPort, request: Any, timeout: float | None = None) -> dict[str, Any]:
        what = self.behaviour.get(str(server), ConnectionRefusedError(111, "Connection refused"))
        if isinstance(request, MetadataRequest):
            self.asked.append(str(server))
        if what == "hang":
            await asyncio.sleep(3600)
        if isinstance(what, BaseException):
            raise what
        if isinstance(request, MetadataRequest):
            return metadata_v5([rf3("orders")])
        return configs_v2(topic_config("orders", "2"))

    async def close(self) -> None:
        self.closed += 1


def _settings(*servers: str) -> KraftSettings:
    return KraftSettings(bootstrap_servers=list(servers))


async def test_the_first_server_that_answers_is_used_and_asked_first_next_time():
    servers = Servers({"10.0.0.2:9092": "answer", "10.0.0.3:9092": "answer"})
    reader = ClusterStateReader(
        "kafka-a", _settings("10.0.0.1:9092", "10.0.0.2:9092", "10.0.0.3:9092"), servers
    )
    fetched = await reader.fetch(timeout=5)
    assert fetched.server == "10.0.0.2:9092"
    assert fetched.cluster_id == "cluster-1"
    assert fetched.state.min_isr("orders") == 2
    assert servers.asked == ["10.0.0.1:9092", "10.0.0.2:9092"]
    servers.asked.clear()
    await reader.fetch(timeout=5)
    assert servers.asked == ["10.0.0.2:9092"]
    await reader.close()
    assert servers.closed == 1


async def test_every_server_failing_is_cluster_unreachable_with_each_ones_problem():
    servers = Servers({"10.0.0.2:9092": MetadataError("SaslAuthenticationFailed: bad credentials")})
    reader = ClusterStateReader("kafka-a", _settings("10.0.0.1:9092", "10.0.0.2:9092"), servers)
    with pytest.raises(ClusterUnreachable) as raised:
        await reader.fetch(timeout=5)
    assert raised.value.problems == (
        ("10.0.0.1:9092", "connection refused"),
        ("10.0.0.2:9092", "SaslAuthenticationFailed: bad credentials"),
    )
    assert not raised.value.timed_out
    assert (
        str(raised.value)
        == "10.0.0.1:9092: connection refused; 10.0.0.2:9092: SaslAuthenticationFailed: bad credentials"
    )


async def test_servers_that_never_answer_share_the_time_and_the_fetch_ends_within_it():
    servers = Servers({"10.0.0.1:9092": "hang", "10.0.0.2:9092": "hang", "10.0.0.3:9092": "hang"})
    reader = ClusterStateReader(
        "kafka-a", _settings("10.0.0.1:9092", "10.0.0.2:9092", "10.0.0.3:9092"), servers
    )
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable) as raised:
        await reader.fetch(timeout=1.5)
    took = time.monotonic() - started
    assert 1.4 < took < 1.9
    assert raised.value.timed_out
    # Each got a share of at least MIN_ATTEMPT_SECONDS (or what was left): the first 1 s, the second
    # the 0.5 s left, the third none.
    assert raised.value.problems == (
        ("10.0.0.1:9092", "timed out after 1.0 s"),
        ("10.0.0.2:9092", "timed out after 0.5 s"),
        ("10.0.0.3:9092", "not asked: out of time"),
    )


async def test_a_hanging_server_leaves_time_for_the_next_one():
    servers = Servers({"10.0.0.1:9092": "hang", "10.0.0.2:9092": "answer"})
    reader = ClusterStateReader("kafka-a", _settings("10.0.0.1:9092", "10.0.0.2:9092"), servers)
    started = time.monotonic()
    fetched = await reader.fetch(timeout=4)
    assert fetched.server == "10.0.0.2:9092"
    assert 1.9 < time.monotonic() - started < 3  # the first got half of the 4 s


async def test_a_describe_configs_error_resource_is_a_warning_not_a_failure():
    class Denied(Servers):
        async def request(self, server, request, timeout=None):
            if isinstance(request, MetadataRequest):
                return metadata_v5([rf3("orders")])
            return configs_v2((TOPIC_AUTHORIZATION_FAILED, None, TOPIC_RESOURCE, "orders", []))

    reader = ClusterStateReader("kafka-a", _settings("10.0.0.1:9092"), Denied({}))
    fetched = await reader.fetch()
    assert fetched.state.min_isr("orders") == 3  # no broker default known: every replica
    assert "TOPIC_AUTHORIZATION_FAILED" in fetched.warnings[0]
    assert fetched.state.partitions[0].id == PartitionId("orders", 0)
