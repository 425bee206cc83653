"""ZooKeeper fixtures (a pytest plugin, loaded by tests/conftest.py): servers, ensembles, brokers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.addresses import LoopbackAddresses
from tests.support.zookeeper import ZK_SERVER, KafkaBroker, ZooKeeperEnsemble, ZooKeeperServer


def _require_zookeeper() -> None:
    if not ZK_SERVER.exists():
        pytest.skip(f"{ZK_SERVER} missing: `make test` installs Debian's zookeeper package")


@pytest.fixture(scope="module")
def zookeeper(
    tmp_path_factory: pytest.TempPathFactory, addresses: LoopbackAddresses
) -> Iterator[ZooKeeperServer]:
    """One server shared by a module's tests; each test works under its own `chroot`."""
    _require_zookeeper()
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"), host=addresses.take()).start()
    yield server
    server.stop()


@pytest.fixture
def chroot(request: pytest.FixtureRequest) -> str:
    """A chroot no other test uses: the test's own name."""
    return "/" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:80]


@pytest.fixture
async def zookeeper_servers(
    tmp_path: Path, addresses: LoopbackAddresses
) -> AsyncIterator[Callable[..., Awaitable[ZooKeeperServer]]]:
    """Dedicated servers for tests that stop or kill them, or need TLS: `await zookeeper_servers(tls=ca)`."""
    _require_zookeeper()
    started: list[ZooKeeperServer] = []

    async def start(host: str | None = None, **options: Any) -> ZooKeeperServer:
        directory = tmp_path / f"zookeeper-{len(started) + 1}"
        server = ZooKeeperServer(directory, host=host or addresses.take(), **options)
        started.append(server)
        return await asyncio.to_thread(server.start)

    yield start
    for server in started:
        await asyncio.to_thread(server.kill)


@pytest.fixture
async def zookeeper_ensemble(
    tmp_path: Path, addresses: LoopbackAddresses
) -> AsyncIterator[ZooKeeperEnsemble]:
    """Three servers on loopback forming one quorum."""
    _require_zookeeper()
    ensemble = ZooKeeperEnsemble(tmp_path / "ensemble", addresses.take())
    try:
        await asyncio.to_thread(ensemble.start)
        yield ensemble
    finally:
        for server in ensemble.servers:
            await asyncio.to_thread(server.kill)


@pytest.fixture
async def kafka_brokers() -> AsyncIterator[Callable[..., Awaitable[KafkaBroker]]]:
    """Register brokers from their own sessions: `await kafka_brokers(hosts, chroot, 1, {"MESH": ...})`."""
    registered: list[KafkaBroker] = []

    async def register(
        hosts: str, chroot: str, broker_id: int | str, endpoints: Any = None, **znode: Any
    ) -> KafkaBroker:
        broker = KafkaBroker(hosts, chroot, broker_id)
        registered.append(broker)
        return await broker.register(endpoints, **znode)

    yield register
    await asyncio.gather(*(broker.stop() for broker in registered))
