"""Real serving workers that fail: a restart that fails is retried and logged, readiness says so,
and `/debug/streams` never answers "no stream" for workers that did not answer."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import write_static_brokers
from tests.support.addresses import LoopbackAddresses
from tests.support.wait import eventually
from xds.app import Application
from xds.config.model import parse_config
from xds.process import supervisor
from xds.process.spawn import Spawned, spawn


@pytest.fixture
async def two_workers(tmp_path, addresses: LoopbackAddresses) -> AsyncIterator[Application]:
    host = addresses.take()
    brokers_file = write_static_brokers(tmp_path / "b.yaml", [{"id": 1, "host": "10.0.0.1", "port": 9094}])
    config = {
        "xds": {"listen": f"{host}:0", "debounce_ms": 0, "tls": None, "workers": 2},
        "debug": {"listen": f"{host}:0"},
        "upstream_tls": None,
        "kafka_clusters": [
            {
                "name": "kafka-a",
                "loopback_ip": "127.0.0.10",
                "port_base": 9090,
                "upstream_listener": "MESH",
                "static": {"file": str(brokers_file)},
            }
        ],
    }
    application = Application(parse_config(config))
    await application.start()
    await eventually(lambda: _ready(application), timeout=30, what="/readyz 200")
    yield application
    await application.stop()


async def _get(application: Application, path: str) -> tuple[int, Any]:
    host = application.config.debug.listen.rsplit(":", 1)[0]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{application.debug.port}{path}") as response,
    ):
        return response.status, await response.json()


async def _ready(application: Application) -> bool:
    return (await _get(application, "/readyz"))[0] == 200


def _worker_pid(application: Application, index: int) -> int:
    fleet = application.fleet
    assert isinstance(fleet, supervisor.WorkerFleet)
    process = fleet._workers[index - 1]._process
    assert process is not None
    return process.pid


async def test_a_stream_query_is_not_404_while_a_worker_has_not_answered(two_workers):
    pid = _worker_pid(two_workers, 1)
    os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing
    try:
        status, body = await _get(two_workers, "/debug/streams?node=nobody")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert status == 503
    assert set(body["workers_not_answering"]) == {"worker 1"}
    assert "did not answer" in body["error"]
    assert (await _get(two_workers, "/debug/streams?node=nobody"))[0] == 404  # all answered


async def test_a_worker_whose_restart_fails_is_retried_logged_and_not_ready_meanwhile(
    two_workers, monkeypatch, caplog
):
    attempts = []

    def failing_once() -> Spawned:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError(24, "Too many open files")
        return spawn()

    monkeypatch.setattr("xds.process.supervisor.spawn", failing_once)
    caplog.set_level(logging.ERROR, logger="kafka_xds.workers")
    os.kill(_worker_pid(two_workers, 1), signal.SIGKILL)

    async def failed_restart_shown() -> bool:
        status, body = await _get(two_workers, "/readyz")
        return status == 503 and "Too many open files" in body["waiting"].get("worker 1", "")

    await eventually(failed_restart_shown, timeout=10, what="/readyz naming the failed restart")
    await eventually(lambda: _ready(two_workers), timeout=30, what="the worker restarted")
    assert len(attempts) == 2
    failures = [record for record in caplog.records if "could not start" in record.getMessage()]
    assert len(failures) == 1
    assert "Too many open files" in str(failures[0].__dict__.get("fields"))
