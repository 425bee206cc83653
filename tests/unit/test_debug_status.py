"""The status page and /debug/events against the whole application in process: brokers waiting for
the first sync, the history fed where things happen, the page rendered, the sampler stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import write_static_brokers
from tests.support.wait import eventually
from xds.app import Application
from xds.config.model import parse_config
from xds.debug.sections.view import EMPTY_VERSION
from xds.serving.admission import Admission
from xds.serving.notices import NoticeLog, RefusalNotice
from xds.serving.stream_metrics import StreamMetrics


def _static(name: str, loopback: str, brokers_file: Path) -> dict[str, Any]:
    return {
        "name": name,
        "loopback_ip": loopback,
        "port_base": 9090,
        "upstream_listener": "MESH",
        "static": {"file": str(brokers_file), "poll_interval_seconds": 0.05},
    }


@pytest.fixture
async def two_clusters(tmp_path) -> AsyncIterator[tuple[Application, Path, Path]]:
    """kafka-a's brokers file is there, kafka-b's not yet: nothing can be pushed."""
    a = write_static_brokers(tmp_path / "a.yaml", [{"id": 1, "host": "10.0.0.1", "port": 9094}])
    b = tmp_path / "b.yaml"
    config = {
        "xds": {"listen": "127.0.0.1:0", "debounce_ms": 0, "tls": None, "workers": 1},
        "debug": {"listen": "127.0.0.1:0"},
        "upstream_tls": None,
        "kafka_clusters": [_static("kafka-a", "127.0.0.10", a), _static("kafka-b", "127.0.0.11", b)],
    }
    application = Application(parse_config(config))
    await application.start()
    yield application, a, b
    await application.stop()


async def _get(application: Application, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{application.debug.port}{path}") as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_before_the_first_sync_known_brokers_are_waiting_at_their_planned_address(two_clusters):
    application, _, b = two_clusters

    async def planned() -> Any:
        _, body = await _get(application, "/debug/plan")
        return body["rows"]

    rows = await eventually(planned, what="kafka-a's brokers in /debug/plan")
    assert rows == [
        {
            "cluster": "kafka-a",
            "broker_id": 1,
            "loopback_ip": "127.0.0.10",
            "port": 9091,
            "upstream": "10.0.0.1:9094",
            "status": "waiting",
        }
    ]
    assert (await _get(application, "/readyz"))[0] == 503
    _, page = await _get(application, "/")
    assert "waiting: not pushed until every source synced" in page
    assert "<code>127.0.0.10:9091</code>" in page
    assert ">skipped<" not in page
    assert ">not ready<" in page
    _, topology = await _get(application, "/debug/topology")
    assert topology["clusters"]["kafka-a"]["brokers"][0]["status"] == "waiting"

    write_static_brokers(b, [{"id": 1, "host": "10.0.1.1", "port": 9094}])

    async def live() -> Any:
        _, body = await _get(application, "/debug/plan")
        return {row["status"] for row in body["rows"]} == {"live"} and len(body["rows"]) == 2

    await eventually(live, what="every broker live")
    assert application.metrics.brokers.labels("kafka-a", "live")._value.get() == 1


async def test_events_tell_what_happened_newest_first_with_a_cursor(two_clusters):
    application, a, b = two_clusters
    write_static_brokers(b, [{"id": 1, "host": "10.0.1.1", "port": 9094}])

    async def kinds(after: int = 0) -> list[str]:
        _, body = await _get(application, f"/debug/events?after={after}")
        return [recorded["kind"] for recorded in body["events"]]

    await eventually(lambda: _has(kinds(), "snapshot_published"), what="the first snapshot's event")
    _, page = await _get(application, "/")
    assert "Snapshot generation <b>1</b>, published" in page
    assert "secrets <span class=muted>none</span>" in page  # no TLS: no secrets, and no hash of nothing
    assert EMPTY_VERSION not in page
    _, body = await _get(application, "/debug/events")
    assert body["capacity"] == 200
    newest = body["events"][0]["sequence"]
    assert [recorded["sequence"] for recorded in body["events"]] == sorted(
        (recorded["sequence"] for recorded in body["events"]), reverse=True
    )
    assert {"cluster": "kafka-a", "kind": "source_synced"}.items() <= body["events"][-1].items()

    write_static_brokers(
        a, [{"id": 1, "host": "10.0.0.9", "port": 9094}, {"id": 2, "host": "10.0.0.2", "port": 9094}]
    )
    await eventually(lambda: _has(kinds(newest), "broker_moved"), what="the move")
    _, later = await _get(application, f"/debug/events?after={newest}")
    texts = [recorded["text"] for recorded in later["events"]]
    assert "broker 1 moved: 10.0.0.1:9094 → 10.0.0.9:9094 (clients keep 127.0.0.10:9091)" in texts
    assert "broker 2 added: clients use 127.0.0.10:9092, forwarded to 10.0.0.2:9094" in texts
    assert all(recorded["sequence"] > newest for recorded in later["events"])

    a.write_text("brokers: [")  # unreadable: kafka-a goes stale, its brokers kept

    async def stale_page() -> bool:
        _, page = await _get(application, "/")
        return "source lost" in page and ">degraded<" in page

    await eventually(stale_page, what="the stale source on the page")
    assert (await _get(application, "/debug/events?limit=x"))[0] == 400
    _, one = await _get(application, "/debug/events?limit=1")
    assert len(one["events"]) == 1


async def _has(kinds: Any, kind: str) -> bool:
    return kind in await kinds


async def test_stopping_the_application_stops_the_sampler(tmp_path):
    brokers_file = write_static_brokers(tmp_path / "a.yaml", [{"id": 1, "host": "10.0.0.1", "port": 9094}])
    config = {
        "xds": {"listen": "127.0.0.1:0", "tls": None, "workers": 1},
        "debug": {"listen": "127.0.0.1:0"},
        "upstream_tls": None,
        "kafka_clusters": [_static("kafka-a", "127.0.0.10", brokers_file)],
    }
    application = Application(parse_config(config))
    await application.start()
    assert [task for task in asyncio.all_tasks() if task.get_name() == "debug-sampler"]
    await application.stop()
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "debug-sampler"]


class _Context:
    def peer(self) -> str:
        return "ipv4:10.1.2.3:4567"

    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        raise RuntimeError(f"{code.name}: {message}")


async def test_a_refused_stream_is_a_notice_for_the_history():
    notices = NoticeLog()
    admission = Admission(StreamMetrics(CollectorRegistry()), 1, 1.0, None, 1, notices=notices)
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        await admission.capacity(1, _Context())  # type: ignore[arg-type]
    (notice,) = notices.after(None, 0).notices
    assert notice == RefusalNotice(notice.at, "at_limit", None, "ipv4:10.1.2.3:4567")
