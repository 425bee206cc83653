"""`kafka-xds placement` (a real process) against a real KRaft 4.1 cluster of 6 brokers over 2
Kubernetes clusters x 3 zones (racks `k8s-1.az-a` ... `k8s-2.az-c`), its plans applied with Kafka's
own reassignment tool (`ReassignPartitionsCommand`, a real Java process, as
kafka-reassign-partitions.sh runs it).

Each test creates its own topics (a prefix each, selected with --topics) with a few records in
every partition: skewed manual assignments that break each rule (all of RF 3 in k8s-1; RF 4 in two
zones; RF 3 at min.insync.replicas 2, which no assignment can keep through losing a Kubernetes
cluster) and topics Kafka's rack-aware default placed. The violations expected are computed here,
from the assignment Kafka reports, by the rules as the issue states them; nothing of xds.health.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest_kafka_real import RealCluster
from tests.support.wait import eventually
from xds.demo.java import java, tail
from xds.demo.kafka import release_libs

pytestmark = [pytest.mark.kafka]

NAME = "placement-kr"
RACKS = {1: "k8s-1.az-a", 2: "k8s-1.az-b", 3: "k8s-1.az-c", 4: "k8s-2.az-a", 5: "k8s-2.az-b", 6: "k8s-2.az-c"}
PATTERN = r"(?P<cluster>[^.]+)\.(?P<zone>.+)"
DIMENSIONS = {"cluster": ("k8s-1", "k8s-2"), "zone": ("az-a", "az-b", "az-c")}
REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"  # in kafka-tools-4.1.0.jar

Assignment = dict[tuple[str, int], dict[str, Any]]  # (topic, partition) -> {"replicas", "isr", "leader"}
Found = set[tuple[str, int, str, str | None]]  # (topic, partition, rule, dimension)


@pytest.fixture(scope="module")
def kafka(real_kafka) -> RealCluster:
    cluster: RealCluster = real_kafka(NAME, brokers=6, racks=RACKS)
    return cluster


@pytest.fixture
async def admin(kafka: RealCluster) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka.kafka.bootstrap_servers, request_timeout_ms=10_000)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def config(kafka: RealCluster, tmp_path: Path) -> Path:
    entry = {
        "name": NAME,
        "loopback_ip": kafka.loopback_ip,
        "port_base": 9090,
        "upstream_listener": "INTERNAL",
        "kraft": {"bootstrap_servers": kafka.kafka.bootstrap_servers},
        "health": {"timeout_seconds": 20, "placement": {"rack_pattern": PATTERN, "worst": 5}},
    }
    path = tmp_path / "kafka-xds.yaml"
    path.write_text(yaml.safe_dump({"xds": {"tls": None}, "upstream_tls": None, "kafka_clusters": [entry]}))
    return path


# -- the rules, stated independently -------------------------------------------------------------


def _where(broker: int) -> dict[str, str]:
    cluster, zone = RACKS[broker].split(".")
    return {"cluster": cluster, "zone": zone}


def predicted(assignment: Assignment, min_isr: dict[str, int]) -> Found:
    """Per partition and dimension: spread (max - min <= 1 over every value), losing the value with
    most replicas leaves min.insync.replicas replicas, and the same for the in-sync replicas."""
    found: Found = set()
    for (topic, partition), state in assignment.items():
        need = min_isr.get(topic, 1)
        for dimension, values in DIMENSIONS.items():
            counts = Counter(_where(b)[dimension] for b in state["replicas"])
            per_value = [counts[value] for value in values]
            if max(per_value) - min(per_value) > 1:
                found.add((topic, partition, "spread", dimension))
            if len(state["replicas"]) - max(per_value) < need:
                found.add((topic, partition, "dimension-loss", dimension))
            in_sync = Counter(_where(b)[dimension] for b in state["isr"])
            if len(state["isr"]) - max(in_sync.values()) < need:
                found.add((topic, partition, "isr-at-risk", dimension))
    return found


def unfixable(topic: str, replicas: int, dimension: str, min_isr: dict[str, int]) -> bool:
    """Losing a value of `dimension` leaves fewer than min ISR at best: ceil(RF / values) on one."""
    values = len(DIMENSIONS[dimension])
    return replicas - -(-replicas // values) < min_isr.get(topic, 1)


# -- the cluster ----------------------------------------------------------------------------------


async def describe(admin: AIOKafkaAdminClient, prefix: str) -> Assignment:
    topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
    found: Assignment = {}
    for topic in await admin.describe_topics(topics):
        for p in topic["partitions"]:
            found[(topic["topic"], p["partition"])] = {
                "replicas": tuple(p["replicas"]),
                "isr": tuple(p["isr"]),
                "leader": p["leader"],
            }
    return found


async def create_topics(
    kafka: RealCluster,
    admin: AIOKafkaAdminClient,
    manual: dict[str, list[tuple[int, ...]]],
    default: dict[str, tuple[int, int]],
    min_isr: dict[str, int],
) -> Assignment:
    """`manual`: topic -> replicas per partition; `default`: topic -> (partitions, RF) for Kafka's
    own rack-aware placement. Every partition gets records, and is fully in sync before this ends."""
    configs = {topic: {"min.insync.replicas": str(n)} for topic, n in min_isr.items()}
    new = [
        NewTopic(
            topic,
            -1,
            -1,
            replica_assignments=dict(enumerate(map(list, partitions))),
            topic_configs=configs.get(topic),
        )
        for topic, partitions in manual.items()
    ] + [
        NewTopic(topic, count, rf, topic_configs=configs.get(topic)) for topic, (count, rf) in default.items()
    ]
    await admin.create_topics(new, timeout_ms=20_000)
    prefix = next(iter([*manual, *default])).split("-")[0] + "-"

    async def in_sync() -> Assignment:
        found = await describe(admin, prefix)
        expected = sum(len(p) for p in manual.values()) + sum(n for n, _ in default.values())
        if len(found) < expected or any(set(p["isr"]) != set(p["replicas"]) for p in found.values()):
            return {}
        return found

    await eventually(in_sync, timeout=60, interval=0.5, what=f"{prefix}* created and in sync")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(topic, b"x" * 1000, partition=partition)
            for topic, partition in await describe(admin, prefix)
            for _ in range(20)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return await eventually(in_sync, timeout=60, interval=0.5, what=f"{prefix}* in sync with records")


async def placement(config: Path, *args: str) -> tuple[int, str, str]:
    """`python -m xds placement --config FILE ...` as a process: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xds",
        "placement",
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def placement_json(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = await placement(config, "--json", *args)
    assert code in (0, 1), (code, err)
    answer = json.loads(out)
    assert answer["exit_code"] == code
    (cluster,) = answer["clusters"]
    return code, cluster


def reported(cluster: dict[str, Any]) -> Found:
    return {(v["topic"], v["partition"], v["rule"], v["dimension"]) for v in cluster["violations"]["all"]}


async def reassign(kafka: RealCluster, argv: list[str], log: Path) -> str:
    """One printed kafka-reassign-partitions.sh command, run as Kafka's tool class."""
    assert argv[0] == "kafka-reassign-partitions.sh"
    process = await java(release_libs(kafka.kafka.version), REASSIGN, argv[1:], log)
    code = await asyncio.wait_for(process.wait(), 90)
    output = await asyncio.to_thread(log.read_text, errors="replace")
    assert code == 0, f"{' '.join(argv)} exited with {code}: {tail(log)}"
    return output


async def apply_batch(
    kafka: RealCluster, admin: AIOKafkaAdminClient, batch: dict[str, Any], prefix: str, log: Path
) -> None:
    """--execute, then --verify until complete; every Metadata seen meanwhile has at least RF in sync."""
    rf = {key: len(p["replicas"]) for key, p in (await describe(admin, prefix)).items()}
    output = await reassign(kafka, batch["execute"], log)
    assert "Successfully started partition reassignment" in output, output

    async def complete() -> bool:
        for key, state in (await describe(admin, prefix)).items():
            assert len(state["isr"]) >= rf[key], f"{key} below its RF {rf[key]}: {state}"
        verified = await reassign(kafka, batch["verify"], log)
        # Complete: nothing in progress, and the throttles cleared (--verify does that last).
        return "is still in progress" not in verified and "Clearing broker-level throttles" in verified

    await eventually(complete, timeout=90, interval=0.5, what=f"{batch['file']} complete")


def changed_replicas(before: Assignment, after: Assignment) -> int:
    return sum(len(set(after[key]["replicas"]) - set(state["replicas"])) for key, state in before.items())


# -- the tests ------------------------------------------------------------------------------------

SKEWED = {
    "one-cluster": [(1, 2, 3), (2, 3, 1), (3, 1, 2)],  # RF 3 all in k8s-1
    "two-zones": [(1, 4, 2, 5), (2, 5, 1, 4)],  # RF 4 in az-a and az-b only
    "rf3-min2": [(1, 4, 2)],  # two in az-a; min ISR 2 cannot survive losing k8s-1
}
DEFAULT = {"default-rf3": (6, 3), "default-rf6": (2, 6)}
MIN_ISR = {"two-zones": 2, "rf3-min2": 2, "default-rf6": 3}


def _named(prefix: str, by_topic: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}-{topic}": value for topic, value in by_topic.items()}


async def test_the_report_shows_exactly_the_violations_the_rules_predict(kafka, admin, config):
    min_isr = _named("report", MIN_ISR)
    assignment = await create_topics(
        kafka, admin, _named("report", SKEWED), _named("report", DEFAULT), min_isr
    )
    expected = predicted(assignment, min_isr)
    assert {(t, r, d) for t, _, r, d in expected} >= {
        ("report-one-cluster", "spread", "cluster"),
        ("report-one-cluster", "dimension-loss", "cluster"),
        ("report-one-cluster", "isr-at-risk", "cluster"),
        ("report-two-zones", "spread", "zone"),
        ("report-rf3-min2", "spread", "zone"),
        ("report-rf3-min2", "dimension-loss", "cluster"),
        ("report-rf3-min2", "dimension-loss", "zone"),
    }
    assert not any(t == "report-default-rf6" for t, *_ in expected)  # RF 6 on 6 brokers: one each

    code, cluster = await placement_json(config, "--topics", "report-.*")

    assert code == 1
    assert reported(cluster) == expected
    replicas = Counter(b for p in assignment.values() for b in p["replicas"])
    leaders = Counter(p["leader"] for p in assignment.values())
    cells = {(c["row"], c["column"]): c for c in cluster["matrix"]["cells"]}
    for broker, rack in RACKS.items():
        cluster_value, zone = rack.split(".")
        cell = cells[(cluster_value, zone)]
        assert (cell["brokers"], cell["replicas"], cell["leaders"]) == (
            [broker],
            replicas[broker],
            leaders[broker],
        )
    assert cluster["unplaced"] == []

    code, text, _ = await placement(config, "--topics", "report-.*")
    assert code == 1
    assert all(len(line) <= 100 for line in text.splitlines()), text
    assert "cluster \\ zone" in text and "report-one-cluster  spread" in text


async def test_the_plan_applied_with_kafkas_tool_leaves_only_what_it_cannot_fix(
    kafka, admin, config, tmp_path
):
    min_isr = _named("fix", MIN_ISR)
    before = await create_topics(kafka, admin, _named("fix", SKEWED), _named("fix", DEFAULT), min_isr)
    violations = predicted(before, min_isr)
    cannot = {
        (t, p, r, d)
        for t, p, r, d in violations
        if r == "dimension-loss"
        and d is not None
        and unfixable(t, len(before[(t, p)]["replicas"]), d, min_isr)
    }
    assert cannot == {("fix-rf3-min2", 0, "dimension-loss", "cluster")}
    # Each partition breaking a rule a move can fix needs one move at least; one is enough here.
    needs_a_move = {
        (t, p)
        for t, p, r, d in violations - cannot
        if not (r == "isr-at-risk" and (t, p, "dimension-loss", d) in cannot)
    }
    plan_file = tmp_path / "fix.json"

    code, cluster = await placement_json(config, "--topics", "fix-.*", "--plan", str(plan_file))

    assert code == 1
    plan = cluster["plan"]
    assert plan["executed"] is False
    assert {(m["topic"], m["partition"]) for b in plan["batches"] for m in b["moves"]} == needs_a_move
    assert plan["replica_moves"] == len(needs_a_move)
    assert {(u["topic"], u["partition"], u["rule"], u["dimension"]) for u in plan["unfixable"]} == cannot
    written = json.loads(plan_file.read_text())
    assert written["version"] == 1
    assert {(p["topic"], p["partition"]) for p in written["partitions"]} == needs_a_move
    (batch,) = plan["batches"]
    assert batch["execute"][-3:] == ["--execute", "--throttle", "50000000"]

    await apply_batch(kafka, admin, batch, "fix-", tmp_path / "reassign.log")

    after = await describe(admin, "fix-")
    assert changed_replicas(before, after) <= plan["replica_moves"]
    for move in (m for b in plan["batches"] for m in b["moves"]):
        key = (move["topic"], move["partition"])
        assert after[key]["replicas"] == tuple(move["after"])
        if before[key]["leader"] == move["after"][0]:
            assert after[key]["leader"] == before[key]["leader"]  # the leader was kept
    left = predicted(after, min_isr)
    assert left == cannot | {("fix-rf3-min2", 0, "isr-at-risk", "cluster")}
    code, cluster = await placement_json(config, "--topics", "fix-.*")
    assert (code, reported(cluster)) == (1, left)
    code, cluster = await placement_json(config, "--topics", "fix-(?!rf3-min2).*")
    assert (code, reported(cluster)) == (0, set())


async def test_a_drain_in_batches_keeps_every_partition_at_its_rf_and_the_rules(
    kafka, admin, config, tmp_path
):
    manual: dict[str, list[tuple[int, ...]]] = {
        "drain-rf3": [(1, 5, 3), (5, 1, 6), (2, 4, 6), (1, 2, 6), (5, 3, 4)],
        "drain-rf4": [(1, 5, 3, 4)],
    }
    min_isr = {"drain-rf4": 2}
    before = await create_topics(kafka, admin, manual, {}, min_isr)
    assert predicted(before, min_isr) == set()
    hosting = {key for key, p in before.items() if {1, 5} & set(p["replicas"])}
    plan_file = tmp_path / "drain.json"

    code, cluster = await placement_json(
        config,
        "--topics",
        "drain-rf3,drain-rf4",
        "--plan",
        str(plan_file),
        "--drain",
        "1,5",
        "--batch-size",
        "3",
    )

    assert code == 0
    plan = cluster["plan"]
    assert plan["drained"] == [1, 5]
    assert plan["unfixable"] == []
    assert [b["partitions"] for b in plan["batches"]] == [3, 2]
    assert [b["file"] for b in plan["batches"]] == [
        str(tmp_path / "drain.1.json"),
        str(tmp_path / "drain.2.json"),
    ]
    assert {(m["topic"], m["partition"]) for b in plan["batches"] for m in b["moves"]} == hosting
    moved: set[tuple[str, int]] = set()
    for number, batch in enumerate(plan["batches"], 1):
        await apply_batch(kafka, admin, batch, "drain-", tmp_path / f"reassign-{number}.log")
        moved |= {(m["topic"], m["partition"]) for m in batch["moves"]}
        now = await describe(admin, "drain-")
        for key, state in now.items():
            assert len(state["replicas"]) == len(before[key]["replicas"])
            assert set(state["isr"]) == set(state["replicas"])
            if key in moved:
                assert not {1, 5} & set(state["replicas"]), (key, state)
            else:
                assert state["replicas"] == before[key]["replicas"]
        assert predicted(now, min_isr) == set()
        code, cluster = await placement_json(config, "--topics", "drain-.*")
        assert (code, reported(cluster)) == (0, set())
    assert changed_replicas(before, await describe(admin, "drain-")) <= plan["replica_moves"]
