"""The /health routes of the debug server: a broker's readiness for httpGet probes (200/503, no token
needed, details only with it), the restart plan, the placement report, every cluster's summary, and
what an unknown cluster or one without health settings gets. The followers' polls are answered by
`ScriptedReader` (see tests/support/health.py); the server, its token and its routes are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.support.health import ScriptedReader, cluster, orders, settings, stopped, topic
from tests.support.wait import eventually
from xds.app import Application
from xds.config.model import KraftSettings, parse_config
from xds.debug.server import DebugServer
from xds.health.fetch import ClusterUnreachable
from xds.health.follower import HealthFollower, HealthFollowers
from xds.pipeline.metrics import Metrics

TOKEN = "the-debug-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONNECTION = KraftSettings(bootstrap_servers=["10.0.0.1:9092"])
UNREACHABLE = ClusterUnreachable("kafka-a", (("10.0.0.1:9092", "connection refused"),), False)


def _config(tmp_path: Path) -> dict[str, Any]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    return {
        "xds": {"listen": "127.0.0.1:0", "tls": None},
        "debug": {"listen": "127.0.0.1:0", "token_file": str(token_file)},
        "upstream_tls": None,
        "kafka_clusters": [
            {
                "name": name,
                "loopback_ip": f"127.0.0.{10 + n}",
                "port_base": 9090,
                "upstream_listener": "INTERNAL",
                "static": {"brokers": [{"id": 1, "host": "10.0.0.1", "port": 9092}]},
            }
            for n, name in enumerate(("kafka-a", "kafka-b", "kafka-c"))
        ],
    }


class Served:
    """A debug server with a token, whose followers are kafka-a (placement) and kafka-b (no
    placement); kafka-c has no health settings."""

    def __init__(self, tmp_path: Path) -> None:
        application = Application(parse_config(_config(tmp_path)))
        self.readers = {
            "kafka-a": ScriptedReader(cluster(orders())),
            "kafka-b": ScriptedReader(cluster(orders())),
        }
        self.followers = {
            "kafka-a": HealthFollower("kafka-a", CONNECTION, settings(), reader=self.readers["kafka-a"]),
            "kafka-b": HealthFollower(
                "kafka-b", CONNECTION, settings(with_placement=False), reader=self.readers["kafka-b"]
            ),
        }
        health = HealthFollowers(self.followers, ("kafka-c",), ("kafka-a", "kafka-b", "kafka-c"))
        metrics = Metrics()
        self.server = DebugServer(
            application.config, application.controller, application.cache, application.fleet, metrics, health
        )
        self.client: TestClient[Any, Any] | None = None

    async def poll(self, name: str = "kafka-a", *answers: Any) -> None:
        if answers:
            self.readers[name].then(*answers)
        await self.followers[name].poll()

    async def get(self, path: str, token: bool = True) -> tuple[int, Any]:
        assert self.client is not None
        response = await self.client.get(path, headers=AUTH if token else {})
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    found = Served(tmp_path)
    async with TestClient(TestServer(found.server.app())) as client:
        found.client = client
        yield found


READY = "/health/clusters/kafka-a/brokers/{}/ready"


async def test_a_ready_broker_answers_200(served: Served):
    await served.poll()
    status, body = await served.get(READY.format(1))
    assert status == 200
    assert body["ready"] is True and body["broker"] == 1 and body["cluster"] == "kafka-a"
    assert body["summary"] == "ready: broker 1 in sync (3 partitions hosted); cluster in sync"
    assert body["reasons"] == [] and body["hosted"] == 3


async def test_a_broker_not_ready_answers_503_with_its_reasons_and_partitions(served: Served):
    await served.poll("kafka-a", stopped(cluster(orders()), 4))
    status, body = await served.get(READY.format(1))
    assert status == 503
    assert body["ready"] is False
    assert body["reasons"] == [
        {
            "kind": "at-min-isr",
            "count": 3,
            "text": "3 at-min-ISR partitions (orders-1, orders-2, orders-3)",
            "partitions": ["orders-1", "orders-2", "orders-3"],
        }
    ]


async def test_the_readiness_route_needs_no_token_and_then_names_no_partition(served: Served):
    await served.poll("kafka-a", stopped(cluster(orders()), 4))
    status, body = await served.get(READY.format(1), token=False)
    assert status == 503
    assert body["reasons"] == [{"kind": "at-min-isr", "count": 3, "text": "3 at-min-ISR partitions"}]
    assert body["summary"] == "not ready: broker 1 in sync; cluster: 3 at-min-ISR partitions"
    assert "orders" not in str(body)


async def test_the_other_health_routes_need_the_token(served: Served):
    await served.poll()
    for path in ("/health", "/health/clusters/kafka-a/restartable", "/health/clusters/kafka-a/placement"):
        status, _ = await served.get(path, token=False)
        assert status == 401, path


async def test_an_unreachable_cluster_answers_503_for_every_broker(served: Served):
    await served.poll()
    await served.poll("kafka-a", UNREACHABLE)
    status, body = await served.get(READY.format(1))
    assert status == 503
    assert body["state"] == "unreachable"
    assert body["reasons"][0]["kind"] == "cluster-unreachable"
    assert body["summary"].startswith("not ready: cluster unreachable for ")
    assert body["last_error"] == "10.0.0.1:9092: connection refused"
    status, anonymous = await served.get(READY.format(1), token=False)
    assert status == 503 and "last_error" not in anonymous and "10.0.0.1" not in str(anonymous)


async def test_before_the_first_poll_every_broker_answers_503(served: Served):
    status, body = await served.get(READY.format(1))
    assert status == 503 and body["reasons"][0]["kind"] == "state-unknown"


async def test_a_probe_may_refuse_a_state_older_than_it_asks_for(served: Served):
    await served.poll()
    status, body = await served.get(READY.format(1) + "?max_age_seconds=3600", token=False)
    assert status == 200
    status, body = await served.get(READY.format(1) + "?max_age_seconds=0.000001", token=False)
    assert status == 503
    assert body["reasons"][0]["kind"] == "state-too-old"
    assert "older than the 1e-06 s asked for" in body["summary"]
    for bad in ("0", "soon", "nan"):
        status, body = await served.get(READY.format(1) + f"?max_age_seconds={bad}")
        assert status == 400, bad


async def test_a_broker_id_that_is_no_number_is_a_bad_request(served: Served):
    status, body = await served.get(READY.format("one"))
    assert status == 400 and "not a whole number" in body["error"]


async def test_an_unknown_cluster_is_404_with_the_known_names_to_whoever_has_the_token(served: Served):
    status, body = await served.get("/health/clusters/nope/brokers/1/ready")
    assert status == 404
    assert body == {"error": "unknown cluster 'nope'", "clusters": ["kafka-a", "kafka-b", "kafka-c"]}
    status, anonymous = await served.get("/health/clusters/nope/brokers/1/ready", token=False)
    assert status == 404 and "clusters" not in anonymous


async def test_a_cluster_without_health_settings_is_404_saying_how_to_enable_it(served: Served):
    status, body = await served.get("/health/clusters/kafka-c/restartable")
    assert status == 404
    assert "has no health settings: add `health: {}`" in body["error"]


async def test_restartable_lists_the_brokers_a_roll_may_take_now(served: Served):
    await served.poll("kafka-a", stopped(cluster(orders()), 4))
    status, body = await served.get("/health/clusters/kafka-a/restartable")
    assert status == 200
    assert body["restartable"] == [4] and body["blocked"] == [1, 2, 3]
    broker_1 = body["brokers"][0]
    assert broker_1["blocked_by"] == 2
    assert broker_1["blockers"][0] == {
        "partition": "orders-2",
        "kind": "at-min-isr",
        "in_sync": 2,
        "min_isr": 2,
    }


async def test_restartable_of_an_unreachable_cluster_is_503_and_none(served: Served):
    await served.poll()
    await served.poll("kafka-a", UNREACHABLE)
    status, body = await served.get("/health/clusters/kafka-a/restartable")
    assert status == 503
    assert body["restartable"] == []
    assert body["note"].startswith("no broker is known restartable: cluster unreachable")


async def test_placement_reports_violations_the_matrix_and_new_topic_anomalies(served: Served):
    await served.poll("kafka-a", cluster(orders(), min_isr=1))
    await served.poll("kafka-a", cluster([*orders(), *topic("skewed", (1, 2))], min_isr=1))
    status, body = await served.get("/health/clusters/kafka-a/placement")
    assert status == 200
    report = body["report"]
    assert report["by_rule"] == {"spread": 1, "dimension-loss": 1, "isr-at-risk": 1}
    assert report["by_topic"] == {"skewed": {"spread": 1, "dimension-loss": 1, "isr-at-risk": 1}}
    assert report["worst"] == [{"partition": "skewed-0", "violations": 3}]
    cells = {(c["row"], c["column"]): c for c in report["matrix"]["cells"]}
    assert cells[("k8s-1", "az-a")] == {
        "row": "k8s-1",
        "column": "az-a",
        "brokers": 1,
        "replicas": 4,
        "leaders": 2,
        "violations": 1,
    }
    assert cells[("k8s-2", "az-b")]["violations"] == 0
    (anomaly,) = body["anomalies"]
    assert anomaly["topic"] == "skewed" and anomaly["partitions"] == ["skewed-0"]
    status, limited = await served.get("/health/clusters/kafka-a/placement?limit=1")
    assert len(limited["report"]["violations"]) == 1


async def test_placement_of_a_cluster_without_placement_settings_is_404(served: Served):
    status, body = await served.get("/health/clusters/kafka-b/placement")
    assert status == 404 and "no placement settings" in body["error"]


async def test_health_summarises_every_cluster(served: Served):
    await served.poll("kafka-a", stopped(cluster(orders()), 4))
    status, body = await served.get("/health")
    assert status == 200
    assert body["without_health"] == ["kafka-c"]
    a, b = body["clusters"]["kafka-a"], body["clusters"]["kafka-b"]
    assert a["state"] == "reachable"
    assert a["partitions"] == {
        "total": 4,
        "in_sync": 1,
        "offline": 0,
        "under_min_isr": 0,
        "at_min_isr": 3,
        "under_replicated": 0,
    }
    assert a["brokers"] == {"known": 4, "ready": [], "not_ready": [1, 2, 3, 4]}
    assert a["restartable"] == [4]
    assert b["state"] == "unknown" and b["partitions"] is None and b["restartable"] == []


async def test_the_status_page_shows_each_followed_cluster(served: Served):
    await served.poll()
    status, html = await served.get("/")
    assert status == 200
    assert "<h2>Kafka health</h2>" in html and "id='health-kafka-a'" in html and "<svg" in html


async def test_the_application_runs_a_follower_per_cluster_and_stops_it(tmp_path: Path, addresses):
    """A real refused connection: the cluster is reported unreachable, and stopping ends the task."""
    config = _config(tmp_path)
    config["debug"] = {"listen": "127.0.0.1:0"}
    nobody = f"{addresses.take()}:9092"
    config["kafka_clusters"][0]["health"] = {
        "connection": {"bootstrap_servers": [nobody]},
        "timeout_seconds": 1,
    }
    application = Application(parse_config(config))
    await application.start()
    try:
        assert [f.cluster for f in application.health] == ["kafka-a"]
        url = f"http://127.0.0.1:{application.debug.port}"

        async def unreachable() -> bool:
            async with aiohttp.ClientSession() as session, session.get(url + "/health") as response:
                body = await response.json()
            return bool(body["clusters"]["kafka-a"]["state"] == "unreachable")

        await eventually(unreachable, timeout=10, what="kafka-a reported unreachable")
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "health:kafka-a"]
        assert len(tasks) == 1
    finally:
        await application.stop()
    assert tasks[0].done()
