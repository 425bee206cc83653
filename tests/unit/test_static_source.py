"""The static source follows its file; a bad edit is reported and the last good brokers are kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import write_static_brokers
from xds.config.model import parse_config
from xds.pipeline.sources.static import StaticSource
from xds.pipeline.topology import SourceState, Topology


def _source(file: Path) -> StaticSource:
    config = parse_config(
        {
            "xds": {"tls": None},
            "upstream_tls": None,
            "kafka_clusters": [
                {
                    "name": "kafka-a",
                    "loopback_ip": "127.0.0.10",
                    "port_base": 9090,
                    "upstream_listener": "MESH",
                    "static": {"file": str(file), "poll_interval_seconds": 0.05},
                }
            ],
        }
    )
    return StaticSource(config.kafka_clusters[0])


class Published:
    def __init__(self) -> None:
        self.topologies: list[Topology] = []
        self.changed = asyncio.Event()

    def __call__(self, topology: Topology) -> None:
        self.topologies.append(topology)
        self.changed.set()

    async def next(self) -> Topology:
        await asyncio.wait_for(self.changed.wait(), 10)
        self.changed.clear()
        return self.topologies[-1]


@pytest.fixture
async def following(tmp_path):
    file = write_static_brokers(tmp_path / "brokers.yaml", [{"id": 1, "host": "10.0.0.1", "port": 9094}])
    published = Published()
    task = asyncio.create_task(_source(file).run(published))
    yield file, published
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_file_is_read_and_followed(following):
    file, published = following
    first = await published.next()
    assert first.state is SourceState.SYNCED
    assert [str(b.endpoint("MESH")) for b in first.brokers] == ["10.0.0.1:9094"]
    write_static_brokers(file, [{"id": 1, "host": "10.0.0.7", "port": 9094, "rack": "az3"}])
    moved = await published.next()
    assert [str(b.endpoint("MESH")) for b in moved.brokers] == ["10.0.0.7:9094"]
    assert moved.brokers[0].rack == "az3"


async def test_bad_edit_keeps_the_last_good_brokers_and_says_why(following):
    file, published = following
    await published.next()
    file.write_text("brokers: [{id: 1, host: 10.0.0.1, port: not-a-port}]\n")
    stale = await published.next()
    assert stale.state is SourceState.STALE
    assert [b.broker_id for b in stale.brokers] == [1]
    assert "port" in (stale.error or "")
    write_static_brokers(file, [{"id": 2, "host": "10.0.0.2", "port": 9094}])
    fixed = await published.next()
    assert fixed.state is SourceState.SYNCED
    assert [b.broker_id for b in fixed.brokers] == [2]


async def test_deleted_file_keeps_the_last_good_brokers(following):
    file, published = following
    await published.next()
    file.unlink()
    stale = await published.next()
    assert stale.state is SourceState.STALE
    assert [b.broker_id for b in stale.brokers] == [1]
    assert "cannot read" in (stale.error or "")


@pytest.mark.parametrize(
    ("brokers", "problem"),
    [
        (
            [{"id": 1, "host": "10.0.0.1", "port": 9094}, {"id": 1, "host": "10.0.0.2", "port": 9094}],
            "expected unique broker ids, got id 1 at brokers[0] and brokers[1]",
        ),
        (
            [{"id": 2, "host": "10.0.0.2:9094", "port": 9094}],
            "expected an IP address or a DNS name for broker 2",
        ),
        ([{"id": 70000, "host": "10.0.0.2", "port": 9094}], "broker id 70000 has no port"),
    ],
)
async def test_an_edit_check_config_would_refuse_keeps_the_last_good_brokers(following, brokers, problem):
    file, published = following
    await published.next()
    write_static_brokers(file, brokers)
    stale = await published.next()
    assert stale.state is SourceState.STALE
    assert [str(b.endpoint("MESH")) for b in stale.brokers] == ["10.0.0.1:9094"]
    assert problem in (stale.error or "")


async def test_an_edit_that_is_not_utf8_keeps_the_last_good_brokers(following):
    file, published = following
    await published.next()
    file.write_bytes("brokers: [{id: 1, host: 10.0.0.1, port: 9094, rack: zürich}]\n".encode("latin-1"))
    stale = await published.next()
    assert stale.state is SourceState.STALE
    assert [b.broker_id for b in stale.brokers] == [1]
    assert "expected UTF-8 text" in (stale.error or "")
