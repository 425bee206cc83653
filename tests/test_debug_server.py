"""Health, readiness and the snapshot view, against the whole application in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import write_static_brokers
from tests.support.wait import eventually
from xds.app import Application
from xds.config import parse_config


def _config(brokers_file: Path) -> dict[str, Any]:
    return {
        "xds": {"listen": "127.0.0.1:0", "debounce_ms": 0},
        "debug": {"listen": "127.0.0.1:0"},
        "upstream_tls": {"ca_file": "/etc/ca.pem", "cert_file": "/etc/c.pem", "key_file": "/etc/secret.key"},
        "kafka_clusters": [
            {
                "name": "kafka-a",
                "loopback_ip": "127.0.0.10",
                "port_base": 9090,
                "upstream_listener": "MESH",
                "static": {"file": str(brokers_file), "poll_interval_seconds": 0.05},
            }
        ],
    }


@pytest.fixture
async def app(tmp_path) -> AsyncIterator[tuple[Application, Path]]:
    brokers_file = tmp_path / "brokers.yaml"  # not there yet: the source cannot sync
    application = Application(parse_config(_config(brokers_file)))
    await application.start()
    yield application, brokers_file
    await application.stop()


async def _get(application: Application, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{application.debug.port}{path}") as response,
    ):
        return response.status, await response.json()


async def test_healthz_answers_while_not_ready(app):
    application, _ = app
    assert await _get(application, "/healthz") == (200, {"status": "ok"})


async def test_readyz_names_the_waiting_source_until_it_synced(app):
    application, brokers_file = app
    status, body = await _get(application, "/readyz")
    assert status == 503
    assert "kafka-a" in body["waiting"]
    write_static_brokers(brokers_file, [{"id": 1, "host": "10.0.0.1", "port": 9094}])

    async def ready() -> bool:
        return (await _get(application, "/readyz"))[0] == 200

    await eventually(ready, timeout=10, what="/readyz 200")


async def test_snapshot_shows_resources_and_never_key_material(app):
    application, brokers_file = app
    assert (await _get(application, "/debug/snapshot"))[0] == 503
    write_static_brokers(brokers_file, [{"id": 1, "host": "10.0.0.1", "port": 9094}])

    async def snapshot() -> Any:
        status, body = await _get(application, "/debug/snapshot")
        return body if status == 200 else None

    body = await eventually(snapshot, timeout=10, what="a snapshot")
    assert set(body["types"]) == {"clusters", "endpoints", "listeners"}
    assert "kafka-a/broker-1" in body["types"]["listeners"]["resources"]
    status, filtered = await _get(application, "/debug/snapshot?type=endpoints&name=kafka-a/broker-1")
    assert status == 200
    assert list(filtered["types"]) == ["endpoints"]
    assert list(filtered["types"]["endpoints"]["resources"]) == ["kafka-a/broker-1"]
    assert "BEGIN" not in str(body)


async def test_stop_cancels_and_awaits_every_task(tmp_path):
    brokers_file = write_static_brokers(tmp_path / "b.yaml", [{"id": 1, "host": "10.0.0.1", "port": 9094}])
    application = Application(parse_config(_config(brokers_file)))
    await application.start()
    tasks = list(application._tasks)
    await application.stop()
    assert all(task.done() for task in tasks)
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("source:")]


async def test_topology_shows_brokers_as_registered_and_as_planned(app):
    application, brokers_file = app
    write_static_brokers(
        brokers_file,
        [
            {
                "id": 1,
                "host": "10.0.0.1",
                "port": 9094,
                "rack": "az1",
                "listeners": {"CLIENT": "127.0.0.10:9091"},
            },
        ],
    )

    async def topology() -> Any:
        status, body = await _get(application, "/debug/topology")
        cluster = body["clusters"]["kafka-a"]
        return body if status == 200 and cluster["brokers"] and cluster["loopback_ip"] else None

    body = await eventually(topology, timeout=10, what="a synced topology")
    cluster = body["clusters"]["kafka-a"]
    assert cluster["source"]["kind"] == "static"
    assert cluster["source"]["state"] == "synced"
    first = cluster["brokers"][0]
    assert first["planned"] == "127.0.0.10:9091"
    assert first["upstream"] == "10.0.0.1:9094"
    assert first["listeners"] == {"CLIENT": "127.0.0.10:9091", "MESH": "10.0.0.1:9094"}
    assert cluster["skipped"] == []  # skipped registrations: tests/test_zookeeper_e2e.py
