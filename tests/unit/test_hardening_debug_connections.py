"""The debug server's connections are bounded: held-open connections are closed when they send no
request in time, and beyond the limit make room for new ones, so /healthz keeps answering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import write_static_brokers
from tests.support.addresses import LoopbackAddresses
from xds.app import Application
from xds.config.model import parse_config

LIMIT = 8


@pytest.fixture
async def guarded(tmp_path, addresses: LoopbackAddresses) -> AsyncIterator[tuple[str, int]]:
    host = addresses.take()
    brokers_file = write_static_brokers(tmp_path / "b.yaml", [{"id": 1, "host": "10.0.0.1", "port": 9094}])
    config = {
        "xds": {"listen": f"{host}:0", "debounce_ms": 0, "tls": None},
        "debug": {
            "listen": f"{host}:0",
            "max_connections": LIMIT,
            "header_timeout_seconds": 0.5,
            "idle_timeout_seconds": 1.0,
        },
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
    assert application.debug.port is not None
    yield host, application.debug.port
    await application.stop()


async def _healthz(host: str, port: int) -> float:
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}/healthz", timeout=aiohttp.ClientTimeout(5)) as response,
    ):
        assert response.status == 200
    return time.monotonic() - started


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Whether the server closes the connection within `timeout` (whatever it sent before)."""
    try:
        await asyncio.wait_for(reader.read(), timeout)  # to the end of the stream
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_a_connection_that_sends_half_a_request_is_closed_after_the_header_timeout(guarded):
    host, port = guarded
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
    started = time.monotonic()
    assert await _closed_by_server(reader, 5)
    assert time.monotonic() - started < 2
    writer.close()


async def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(guarded):
    host, port = guarded
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in await reader.readuntil(b"\r\n\r\n")
    assert await _closed_by_server(reader, 5)
    writer.close()


async def test_connections_held_beyond_the_limit_do_not_keep_healthz_from_answering(guarded):
    host, port = guarded
    held = [await asyncio.open_connection(host, port) for _ in range(5 * LIMIT)]
    try:
        await asyncio.sleep(0.1)
        assert await _healthz(host, port) < 1.0
        # The server holds at most LIMIT of them: the others were closed to make room.
        closed = await asyncio.gather(*(_closed_by_server(reader, 0.3) for reader, _ in held[:-LIMIT]))
        assert all(closed)
    finally:
        for _, writer in held:
            writer.close()
