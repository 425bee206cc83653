"""Health, readiness and the snapshot view, against the whole application in process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import write_static_brokers
from tests.support.wait import eventually
from xds.app import Application
from xds.config.model import parse_config


def _config(brokers_file: Path) -> dict[str, Any]:
    return {
        "xds": {"listen": "127.0.0.1:0", "debounce_ms": 0, "tls": None},
        "debug": {"listen": "127.0.0.1:0"},
        "upstream_tls": {
            "ca_file": "/etc/ca.pem",
            "cert_file": "/etc/c.pem",
            "key_file": "/etc/secret.key",
            "verify_broker_names": False,
        },
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


async def test_a_plaintext_ads_server_is_warned_about_at_start(tmp_path, caplog):
    application = Application(parse_config(_config(tmp_path / "brokers.yaml")))  # xds.tls: null
    with caplog.at_level(logging.WARNING, logger="kafka_xds.app"):
        await application.start()
    await application.stop()
    (warning,) = [record for record in caplog.records if "xds.tls is null" in record.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "may claim any node id" in warning.getMessage()


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
    assert set(body["types"]) == {"secrets", "clusters", "endpoints", "listeners"}
    assert "kafka-a/broker-1" in body["types"]["listeners"]["resources"]
    certificate = body["types"]["secrets"]["resources"]["kafka-a/client-certificate"]["resource"]
    assert certificate["tlsCertificate"]["privateKey"] == {"filename": "/etc/secret.key"}  # a path only
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
    assert cluster["skipped"] == []  # skipped registrations: tests/e2e/test_zookeeper_e2e.py


async def _get_text(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers or {}) as response:
        return response.status, await response.text(), response.cookies


@pytest.fixture
async def guarded(tmp_path) -> AsyncIterator[Application]:
    """The application with a debug token and a synced static source."""
    brokers_file = write_static_brokers(tmp_path / "b.yaml", [{"id": 1, "host": "10.0.0.1", "port": 9094}])
    (tmp_path / "token").write_text("s3cret-token\n")
    config = _config(brokers_file)
    config["debug"]["token_file"] = str(tmp_path / "token")
    application = Application(parse_config(config))
    await application.start()
    yield application
    await application.stop()


async def test_the_bearer_scheme_is_case_insensitive(guarded):
    url = f"http://127.0.0.1:{guarded.debug.port}/debug/topology"
    for scheme in ("Bearer", "bearer", "BEARER"):
        status, _, _ = await _get_text(url, {"Authorization": f"{scheme} s3cret-token"})
        assert status == 200, scheme
    assert (await _get_text(url, {"Authorization": "Basic s3cret-token"}))[0] == 401


async def test_a_token_in_the_page_url_keeps_the_pages_links_working_without_showing_it(guarded):
    base = f"http://127.0.0.1:{guarded.debug.port}"
    # Like a browser, keep cookies from an IP address (aiohttp's default jar refuses them).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(base + "/?token=s3cret-token") as response:
            assert response.status == 200
            page = await response.text()
        assert "s3cret-token" not in page
        async with browser.get(base + "/debug/topology") as followed:  # a link on the page
            assert followed.status == 200
    assert (await _get_text(base + "/debug/topology"))[0] == 401  # no cookie, no token


async def test_unknown_snapshot_filters_are_400_for_a_type_and_404_for_a_name(guarded):
    headers = {"Authorization": "Bearer s3cret-token"}
    base = f"http://127.0.0.1:{guarded.debug.port}/debug/snapshot"

    async def ready() -> bool:
        return (await _get_text(base, headers))[0] == 200

    await eventually(ready, timeout=10, what="a snapshot")
    assert (await _get_text(base + "?type=nope", headers))[0] == 400
    assert (await _get_text(base + "?name=nope", headers))[0] == 404
    assert (await _get_text(base + "?type=listeners&name=nope", headers))[0] == 404
    assert (await _get_text(base + "?type=listeners&name=kafka-a/broker-1", headers))[0] == 200
    streams = f"http://127.0.0.1:{guarded.debug.port}/debug/streams"
    assert (await _get_text(streams + "?node=nobody", headers))[0] == 404
    assert (await _get_text(streams + "?identity=spiffe://nobody/*", headers))[0] == 404
    assert (await _get_text(streams + "?state=nope", headers))[0] == 400
    assert (await _get_text(streams + "?limit=0", headers))[0] == 400


async def test_metrics_start_at_zero_with_process_metrics_and_no_created_series(guarded):
    status, text, _ = await _get_text(
        f"http://127.0.0.1:{guarded.debug.port}/metrics", {"Authorization": "Bearer s3cret-token"}
    )
    assert status == 200
    assert 'kafka_xds_source_errors_total{cluster="kafka-a"} 0.0' in text
    assert 'kafka_xds_streams_refused_total{reason="overloaded"} 0.0' in text
    assert 'kafka_xds_streams_refused_total{reason="permission_denied"} 0.0' in text
    assert 'kafka_xds_nacks_total{type="clusters"} 0.0' in text
    assert "process_cpu_seconds_total" in text
    assert "python_info" in text
    assert "_created" not in text
