"""The static source applies only a complete, regular, bounded file: never a torn read, never a FIFO
or a device, never a file of any size."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import write_static_brokers
from tests.unit.test_static_source import Published, _source
from xds.config.model import MAX_STATIC_FILE_BYTES, ConfigError, load_static_brokers, parse_config
from xds.pipeline.topology import SourceState, Topology

BROKER = [{"id": 1, "host": "10.0.0.1", "port": 9094}]


@contextlib.asynccontextmanager
async def _following(file: Path) -> AsyncIterator[Published]:
    published = Published()
    task = asyncio.create_task(_source(file).run(published))
    try:
        yield published
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until_error(published: Published) -> Topology:
    while True:
        topology = await published.next()
        if topology.error is not None:
            return topology


def _release(fifo: Path) -> None:
    """Let a reader stuck opening the FIFO go (it sees an empty file), so the test run can end."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


async def test_a_fifo_is_refused_without_blocking_and_a_regular_file_then_loads(tmp_path):
    fifo = tmp_path / "brokers.yaml"
    os.mkfifo(fifo)
    try:
        async with _following(fifo) as published:
            refused = await _until_error(published)
            assert refused.state is SourceState.SYNCING
            assert "not a regular file (a FIFO)" in (refused.error or "")
            fifo.unlink()
            write_static_brokers(fifo, BROKER)  # the source kept polling: no thread was blocked
            loaded = await published.next()
            assert loaded.state is SourceState.SYNCED and [b.broker_id for b in loaded.brokers] == [1]
    finally:
        _release(fifo)


async def test_a_device_is_refused_without_reading_it(tmp_path):
    link = tmp_path / "brokers.yaml"
    link.symlink_to("/dev/zero")
    async with _following(link) as published:
        refused = await _until_error(published)
    assert "not a regular file (a character device)" in (refused.error or "")


async def test_a_file_above_the_size_cap_is_refused_and_the_last_brokers_kept(tmp_path):
    file = write_static_brokers(tmp_path / "brokers.yaml", BROKER)
    async with _following(file) as published:
        await published.next()
        huge = tmp_path / "huge.yaml"
        huge.write_text(
            f"# {'x' * MAX_STATIC_FILE_BYTES}\nbrokers: [{{id: 2, host: 10.0.0.2, port: 9094}}]\n"
        )
        huge.replace(file)
        refused = await published.next()
    assert refused.state is SourceState.STALE and [b.broker_id for b in refused.brokers] == [1]
    assert f"more than the {MAX_STATIC_FILE_BYTES} bytes" in (refused.error or "")


def test_check_config_refuses_a_fifo_and_a_huge_file_too(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    cluster = parse_config(
        {
            "xds": {"tls": None},
            "upstream_tls": None,
            "kafka_clusters": [
                {
                    "name": "kafka-a",
                    "loopback_ip": "127.0.0.10",
                    "port_base": 9090,
                    "upstream_listener": "MESH",
                    "static": {"file": str(fifo)},
                }
            ],
        }
    ).kafka_clusters[0]
    try:
        with pytest.raises(ConfigError, match="not a regular file"):
            load_static_brokers(fifo, cluster)
    finally:
        _release(fifo)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (MAX_STATIC_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="more than"):
        load_static_brokers(huge, cluster)


def _rewrite_in_place(file: Path, stop: threading.Event, rewrites: list[int]) -> None:
    """An editor that saves in place in two writes: between them the file says `port: 2909`, and
    right after the truncation it is empty."""
    port = 29093
    while not stop.is_set():
        text = f"brokers:\n- id: 1\n  host: 10.0.0.1\n  port: {port}\n"
        head, tail = text[:-2], text[-2:]  # the torn state ends in '2909'
        with file.open("w") as out:
            time.sleep(0.005)
            out.write(head)
            out.flush()
            time.sleep(0.02)
            out.write(tail)
        rewrites.append(port)
        port = 29094 if port == 29093 else 29093
        stop.wait(0.25)


async def test_a_file_rewritten_in_place_never_publishes_a_torn_value(tmp_path):
    file = write_static_brokers(tmp_path / "brokers.yaml", [{"id": 1, "host": "10.0.0.1", "port": 29093}])
    stop, rewrites = threading.Event(), list[int]()
    writer = threading.Thread(target=_rewrite_in_place, args=(file, stop, rewrites))
    async with _following(file) as published:
        await published.next()
        writer.start()
        try:
            await asyncio.sleep(2.0)
        finally:
            stop.set()
            await asyncio.to_thread(writer.join)
        await asyncio.sleep(0.4)  # the last rewrite is applied once the file holds still
    assert len(rewrites) >= 5
    ports = [b.endpoint("MESH").port for t in published.topologies for b in t.brokers]  # type: ignore[union-attr]
    assert set(ports) == {29093, 29094}  # both values applied, nothing torn
    assert all(t.state is SourceState.SYNCED for t in published.topologies)  # no empty or torn edit reported
    assert ports[-1] == rewrites[-1]
