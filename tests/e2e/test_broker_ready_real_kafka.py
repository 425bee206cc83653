"""`kafka-xds broker-ready` as a real process against real Apache Kafka: a KRaft 4.1 cluster of 4
brokers and a ZooKeeper-mode 3.9 cluster of 3, topics of replication factor 3 and min.insync.replicas
2. Every answer is the CLI's exit code and its one line (or JSON), checked against what the cluster
itself says (aiokafka's admin client on the INTERNAL listeners).

- all in sync: every broker ready, every broker restartable;
- a broker stopped: every other broker reports exactly the partitions it hosted (now at min ISR),
  the stopped one reports itself not registered, and only it is restartable (the others are blocked
  by exactly the partitions they share with it); restarted: ready once back in every ISR;
- a broker whose replication is held back (a replication throttle on the leaders, data produced
  while it was down) stays not ready, naming the partitions it lags on, until the throttle goes;
- the override and its expiry; an unreachable cluster answers within the bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.admin import AlterConfigsRequest

from tests.conftest_kafka_real import RealCluster
from tests.support.addresses import LoopbackAddresses
from tests.support.wait import eventually
from xds.config.model import KraftSettings
from xds.health.override import ENV_VAR
from xds.kafka.client import KafkaMetadataClient, parse_bootstrap_server

pytestmark = [pytest.mark.kafka]

TOPIC = "orders"
PARTITIONS = 8
MIN_ISR = "2"
PROBE_TIMEOUT = 5.0
TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4


@dataclass(frozen=True)
class Answer:
    code: int
    line: str
    seconds: float

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.line)
        return parsed


async def broker_ready(*args: str, env: dict[str, str] | None = None) -> Answer:
    """The CLI as a probe runs it: a process of its own; its exit code and its only line."""
    environment = {k: v for k, v in os.environ.items() if k != ENV_VAR} | (env or {})
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xds",
        "broker-ready",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    seconds = time.monotonic() - started
    assert process.returncode is not None
    lines = out.decode().splitlines()
    assert len(lines) == 1, f"expected one line, got {out!r} (stderr {err!r})"
    assert err == b"", err
    return Answer(process.returncode, lines[0], seconds)


class Cluster:
    """A real cluster and what the tests ask of it."""

    def __init__(self, real: RealCluster) -> None:
        self.real = real
        self.ids = sorted(spec.broker_id for spec in real.kafka.brokers)
        self.admin: AIOKafkaAdminClient | None = None

    @property
    def bootstrap(self) -> list[str]:
        return self.real.kafka.bootstrap_servers

    def options(self) -> list[str]:
        return [option for server in self.bootstrap for option in ("--bootstrap-server", server)]

    async def probe(self, broker_id: int, *extra: str, env: dict[str, str] | None = None) -> Answer:
        return await broker_ready(
            *self.options(), "--broker-id", str(broker_id), "--examples", "100", *extra, env=env
        )

    async def probe_all(self, *extra: str) -> dict[int, Answer]:
        answers = await asyncio.gather(*(self.probe(b, *extra) for b in self.ids))
        return dict(zip(self.ids, answers, strict=True))

    async def restartable(self, *extra: str) -> Answer:
        return await broker_ready(*self.options(), "--restartable", "--json", "--examples", "100", *extra)

    async def replicas(self) -> dict[str, tuple[int, ...]]:
        """`orders-N` -> its replicas, as the cluster's own admin API says."""
        admin = await self._admin()
        (topic,) = await admin.describe_topics([TOPIC])
        return {f"{TOPIC}-{p['partition']}": tuple(p["replicas"]) for p in topic["partitions"]}

    async def isr(self) -> dict[str, tuple[int, ...]]:
        admin = await self._admin()
        (topic,) = await admin.describe_topics([TOPIC])
        return {f"{TOPIC}-{p['partition']}": tuple(p["isr"]) for p in topic["partitions"]}

    async def _admin(self) -> AIOKafkaAdminClient:
        if self.admin is None:
            self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
            await self.admin.start()
        return self.admin

    async def create_topic(self) -> None:
        admin = await self._admin()
        await admin.create_topics(
            [NewTopic(TOPIC, PARTITIONS, 3, topic_configs={"min.insync.replicas": MIN_ISR})]
        )

        async def every_partition_in_sync() -> bool:
            isr = await self.isr()
            return len(isr) == PARTITIONS and all(len(members) == 3 for members in isr.values())

        await eventually(every_partition_in_sync, timeout=60, what="the topic created, every ISR full")

    async def alter(self, broker_id: int, *resources: tuple[int, str, dict[str, str]]) -> None:
        """AlterConfigs sent to broker `broker_id` (a broker's own configs are altered only on it);
        each resource's configs replace all its dynamic ones."""
        client = KafkaMetadataClient(KraftSettings(bootstrap_servers=self.bootstrap), "tests")
        server = parse_bootstrap_server(self.real.kafka.internal_address(broker_id))
        request = AlterConfigsRequest(
            [(kind, name, list(configs.items())) for kind, name, configs in resources]
        )
        try:
            answer = await client.request(server, request)
        finally:
            await client.close()
        for resource in answer["resources"]:
            assert resource["error_code"] == 0, resource

    async def produce(self, megabytes: int) -> None:
        """`megabytes` of records spread over every partition, acknowledged by min ISR (acks=all)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20)
        await producer.start()
        try:
            value = os.urandom(10_000)
            sends = [
                await producer.send(TOPIC, value, partition=n % PARTITIONS) for n in range(megabytes * 100)
            ]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

    async def in_sync(self) -> None:
        """Until every broker says ready (each test leaves the cluster so)."""

        async def all_ready() -> bool:
            answers = await self.probe_all()
            assert all(a.code == 0 for a in answers.values()), {b: a.line for b, a in answers.items()}
            return True

        await eventually(all_ready, timeout=90, interval=0.5, what="every broker ready")

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.close()


@pytest.fixture(scope="module")
def kraft_cluster(real_kafka) -> RealCluster:
    # Replica fetches of at most 64 kB a partition: a replication throttle is enforced between
    # fetches, so with Kafka's 1 MB one fetch would catch a partition up before the quota bites.
    fetches = {"replica.fetch.max.bytes": "65536", "replica.fetch.response.max.bytes": "131072"}
    cluster: RealCluster = real_kafka("ready-kr", brokers=4, properties=fetches)
    return cluster


@pytest.fixture(scope="module")
def zk_cluster(zookeeper, real_kafka) -> RealCluster:
    # The last brokers stopped at the module's end cannot hand leadership to anyone: give up a
    # controlled shutdown soon rather than retry it for 30 s.
    quick = {"controlled.shutdown.max.retries": "1", "controlled.shutdown.retry.backoff.ms": "500"}
    cluster: RealCluster = real_kafka("ready-zk", brokers=3, zookeeper=zookeeper, properties=quick)
    return cluster


async def _cluster(real: RealCluster) -> AsyncIterator[Cluster]:
    cluster = Cluster(real)
    try:
        if TOPIC not in await (await cluster._admin()).list_topics():
            await cluster.create_topic()
        await cluster.in_sync()
        yield cluster
    finally:
        await cluster.close()


@pytest.fixture
async def kraft(kraft_cluster) -> AsyncIterator[Cluster]:
    async for cluster in _cluster(kraft_cluster):
        yield cluster


@pytest.fixture
async def zk(zk_cluster) -> AsyncIterator[Cluster]:
    async for cluster in _cluster(zk_cluster):
        yield cluster


def _hosting(replicas: dict[str, tuple[int, ...]], *brokers: int) -> list[str]:
    """The partitions every one of `brokers` is a replica of, in partition order."""
    hosted = [p for p, members in replicas.items() if all(b in members for b in brokers)]
    return sorted(hosted, key=lambda p: int(p.rsplit("-", 1)[1]))


# -- ZooKeeper mode, 3 brokers ----------------------------------------------------------------------
# First in the module: its ZooKeeper is then set up before `real_kafka`, so torn down after every
# broker (brokers whose ZooKeeper is gone hang on SIGTERM until killed).


@pytest.mark.zookeeper
async def test_zookeeper_mode_ready_then_one_stopped_then_back(zk: Cluster):
    answers = await zk.probe_all()
    assert {b: a.code for b, a in answers.items()} == {1: 0, 2: 0, 3: 0}
    assert all(a.line.endswith("; cluster in sync") for a in answers.values())
    assert (await zk.restartable()).json["restartable"] == [1, 2, 3]

    everything = [f"{TOPIC}-{n}" for n in range(PARTITIONS)]  # RF 3 on 3 brokers: all hold all
    await zk.real.stop_broker(2)
    try:

        async def at_min_isr() -> dict[int, Answer]:
            answers = await zk.probe_all("--json")
            for broker_id in (1, 3):
                assert answers[broker_id].code == 1
                reasons = answers[broker_id].json["reasons"]
                assert reasons == [{"kind": "at-min-isr", "count": PARTITIONS, "partitions": everything}]
            return answers

        answers = await eventually(at_min_isr, timeout=60, interval=0.5, what="every partition at min ISR")
        assert answers[2].json["reasons"][0]["kind"] == "not-registered"
        plan = (await zk.restartable()).json
        assert plan["restartable"] == [2]
        assert {b["broker_id"] for b in plan["blocked"]} == {1, 3}
    finally:
        await zk.real.start_broker(2)
    await zk.in_sync()


# -- KRaft, 4 brokers -------------------------------------------------------------------------------


async def test_all_in_sync_every_broker_is_ready_and_restartable(kraft: Cluster):
    replicas = await kraft.replicas()
    answers = await kraft.probe_all()
    for broker_id, answer in answers.items():
        hosted = len(_hosting(replicas, broker_id))
        assert answer.code == 0
        assert (
            answer.line == f"ready: broker {broker_id} in sync ({hosted} partitions hosted); cluster in sync"
        )
        assert answer.seconds < PROBE_TIMEOUT
    restartable = await kraft.restartable()
    assert restartable.code == 0
    assert restartable.json["restartable"] == [1, 2, 3, 4]
    assert restartable.json["blocked"] == []
    alone = [(await kraft.probe(1)).seconds for _ in range(3)]
    assert max(alone) < PROBE_TIMEOUT
    together = sorted(round(a.seconds, 2) for a in answers.values())
    print(f"probe answer: alone {[round(t, 2) for t in alone]} s, four at once {together} s")


async def test_a_stopped_broker_makes_the_others_report_its_partitions_until_it_is_back(kraft: Cluster):
    replicas = await kraft.replicas()
    stopped = 3
    expected = _hosting(replicas, stopped)
    await kraft.real.stop_broker(stopped)
    try:

        async def at_min_isr() -> dict[int, Answer]:
            answers = await kraft.probe_all("--json")
            for broker_id in (1, 2, 4):
                answer = answers[broker_id].json
                assert answers[broker_id].code == 1 and not answer["ready"]
                # Every other broker is in sync itself: only the partitions broker 3 hosted, all of
                # them and nothing else, at min ISR.
                assert answer["reasons"] == [
                    {"kind": "at-min-isr", "count": len(expected), "partitions": expected}
                ]
            return answers

        answers = await eventually(at_min_isr, timeout=60, interval=0.5, what="the partitions at min ISR")
        own = answers[stopped].json
        assert answers[stopped].code == 1
        assert own["reasons"][0] == {"kind": "not-registered", "count": len(expected), "partitions": []}
        assert own["reasons"][1]["kind"] == "not-in-isr" and own["reasons"][1]["partitions"] == expected
        assert answers[1].json["brokers"] == [1, 2, 4]  # a stopped (fenced) broker is absent

        plan = (await kraft.restartable()).json
        assert plan["restartable"] == [stopped]  # it is in no ISR: stopping it takes nothing lower
        blocked = {b["broker_id"]: [x["partition"] for x in b["blockers"]] for b in plan["blocked"]}
        assert blocked == {b: _hosting(replicas, b, stopped) for b in (1, 2, 4)}
        assert all(x["kind"] == "at-min-isr" for b in plan["blocked"] for x in b["blockers"])
        refused = await kraft.restartable("--broker-id", "1")
        assert refused.code == 1 and refused.json["broker_restartable"] is False
        line = await broker_ready(*kraft.options(), "--restartable")
        assert line.code == 0 and line.line.startswith(f"restartable now: {stopped}; broker 1 blocked by ")

        await kraft.produce(4)  # the restarted broker has something to catch up on
    finally:
        await kraft.real.start_broker(stopped)

    async def ready_once_in_every_isr() -> bool:
        answer = await kraft.probe(stopped)
        isr = await kraft.isr()  # after the answer: an ISR only grows while the broker catches up
        lagging = [p for p in expected if stopped not in isr[p]]
        assert not (answer.code == 0 and lagging), f"ready while not in the ISR of {lagging}: {answer.line}"
        assert answer.code == 0 or answer.line.startswith(f"not ready: broker {stopped}"), answer.line
        return answer.code == 0

    await eventually(ready_once_in_every_isr, timeout=90, interval=0.2, what=f"broker {stopped} ready")
    await kraft.in_sync()


async def test_a_held_back_broker_stays_not_ready_naming_what_it_lags_on(kraft: Cluster):
    replicas = await kraft.replicas()
    held = 2
    hosted = _hosting(replicas, held)
    others = [b for b in kraft.ids if b != held]
    # Replication throttled to 50 kB/s on the leaders' side and on the follower's; only replicas
    # out of the ISR are throttled, so set before it stops, it holds back only its catching up. ~6 MB
    # to catch up takes a minute or more (after a burst of ~0.5 MB per leader, the quota's first
    # window).
    rate = str(50 * 1024)
    throttled = {"leader.replication.throttled.replicas": "*", "follower.replication.throttled.replicas": "*"}
    await kraft.alter(1, (TOPIC_RESOURCE, TOPIC, {"min.insync.replicas": MIN_ISR, **throttled}))
    for b in others:
        await kraft.alter(b, (BROKER_RESOURCE, str(b), {"leader.replication.throttled.rate": rate}))
    await kraft.alter(held, (BROKER_RESOURCE, str(held), {"follower.replication.throttled.rate": rate}))
    try:
        await kraft.real.stop_broker(held)
        try:
            await kraft.produce(8)  # ~6 MB of it on the partitions broker 2 hosts
        finally:
            await kraft.real.start_broker(held)
        seen: set[str] = set()
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:  # it stays not ready while it lags, every time it is asked
            answer = await kraft.probe(held, "--json")
            isr = await kraft.isr()
            lagging = [p for p in hosted if held not in isr[p]]
            assert answer.code == 1, answer.line
            own = answer.json["reasons"][0]
            assert own["kind"] == "not-in-isr"
            assert set(own["partitions"]) >= set(lagging)  # what it lags on now, at least
            assert set(own["partitions"]) <= set(hosted)
            seen.update(own["partitions"])
            assert answer.json["summary"].startswith(f"not ready: broker {held} not in ISR of ")
        assert seen == set(hosted), f"it lagged on {sorted(seen)} only, of {hosted}"
        other = await kraft.probe(1, "--json")
        assert other.code == 1 and other.json["reasons"][0]["kind"] == "at-min-isr"
        assert set(other.json["reasons"][0]["partitions"]) <= set(hosted)
    finally:
        await kraft.alter(1, (TOPIC_RESOURCE, TOPIC, {"min.insync.replicas": MIN_ISR}))
        for b in kraft.ids:
            await kraft.alter(b, (BROKER_RESOURCE, str(b), {}))
    await kraft.in_sync()  # the throttle gone, it catches up and says ready


async def test_the_override_and_its_expiry(kraft: Cluster, tmp_path: Path):
    unknown = 9  # a broker the cluster does not know: not ready, without stopping anything
    answer = await kraft.probe(unknown)
    assert answer.code == 1
    assert answer.line == f"not ready: broker {unknown} unknown (not registered, hosts no partition)"

    answer = await kraft.probe(unknown, env={ENV_VAR: "rebuilding broker 9"})
    assert answer.code == 0
    assert answer.line.startswith(
        f"OVERRIDDEN by {ENV_VAR} without expiry: rebuilding broker 9; the check says: not ready:"
    )

    override = tmp_path / "ready"
    override.write_text("for: 3s\nreason: roll past broker 9\n")
    answer = await kraft.probe(unknown, "--override-file", str(override), "--json")
    assert answer.code == 0 and answer.json["overridden"] and answer.json["checked_ready"] is False
    until = answer.json["override"]["until"]
    assert answer.json["summary"].startswith(f"OVERRIDDEN by {override} until {until}: roll past broker 9")

    async def expired() -> Answer:
        answer = await kraft.probe(unknown, "--override-file", str(override))
        assert answer.code == 1, answer.line
        return answer

    answer = await eventually(expired, timeout=20, interval=0.2, what="the override expired")
    assert answer.line.endswith(f"override by {override} expired at {until}, ignored: roll past broker 9")
    override.touch()  # renews a `for:` override
    assert (await kraft.probe(unknown, "--override-file", str(override))).code == 0
    override.unlink()
    assert (await kraft.probe(unknown, "--override-file", str(override))).code == 1


async def test_an_unreachable_cluster_is_not_ready_within_the_bound(addresses: LoopbackAddresses):
    host = addresses.take()
    silent = socket.create_server((host, 0))  # accepts, never answers: a hung broker
    refused = socket.create_server((host, 0))
    refused_port = refused.getsockname()[1]
    refused.close()
    silent_port = silent.getsockname()[1]
    try:
        servers = [
            "--bootstrap-server",
            f"{host}:{refused_port}",
            "--bootstrap-server",
            f"{host}:{silent_port}",
        ]
        answer, restart = await asyncio.gather(
            broker_ready(*servers, "--broker-id", "1", "--timeout", "2"),
            broker_ready(*servers, "--restartable", "--timeout", "2"),
        )
    finally:
        silent.close()
    assert answer.code == 1
    assert answer.line == (
        f"not ready: cluster unreachable ({host}:{refused_port}: connection refused; "
        f"{host}:{silent_port}: timed out after 2.0 s)"
    )
    assert answer.seconds < 2 + 1.5
    assert restart.code == 1 and restart.line.startswith("restartable: unknown: cluster unreachable (")
