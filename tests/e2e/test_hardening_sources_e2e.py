"""Hostile znodes against a real ZooKeeper: they cost only their own broker, and the source says so."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from xds.config.model import Config, parse_config
from xds.pipeline.controller import Controller
from xds.pipeline.metrics import Metrics
from xds.pipeline.publisher import Publisher
from xds.pipeline.sources import znode
from xds.pipeline.sources.zk_session import SessionRegistry
from xds.pipeline.sources.zookeeper import ZookeeperSource
from xds.pipeline.topology import SourceState, Topology

pytestmark = pytest.mark.zookeeper

HUGE_PORT = "9" * 5000  # beyond Python's 4300-digit int() limit
DEEP_JSON = b'{"version":5,"features":' + b"[" * 20_000 + b"]" * 20_000 + b"}"


def _config(hosts: str, chroot: str) -> Config:
    return parse_config(
        {
            "xds": {"tls": None},
            "upstream_tls": None,
            "kafka_clusters": [
                {
                    "name": "kafka-a",
                    "loopback_ip": "127.0.0.10",
                    "port_base": 9090,
                    "upstream_listener": "MESH",
                    "zookeeper": {"hosts": hosts, "chroot": chroot, "session_timeout_seconds": 4},
                }
            ],
        }
    )


def _mesh(topology: Topology) -> dict[int, str]:
    return {broker.broker_id: str(broker.endpoint("MESH")) for broker in topology.brokers}


class Followed:
    """What a source published (also handed to a controller, whose metrics count source errors)."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.topologies: list[Topology] = []
        self._changed = asyncio.Event()

    def __call__(self, topology: Topology) -> None:
        self.controller.submit(topology)
        self.topologies.append(topology)
        self._changed.set()

    async def until(self, predicate: Callable[[Topology], bool], what: str, timeout: float = 30) -> Topology:
        deadline = time.monotonic() + timeout
        while not (self.topologies and predicate(self.topologies[-1])):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; last: {self.topologies[-1:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.topologies[-1]


@pytest.fixture
async def follow(zookeeper, chroot) -> AsyncIterator[tuple[Followed, Metrics, asyncio.Task[None]]]:
    config = _config(zookeeper.hosts, chroot)
    metrics = Metrics()
    followed = Followed(Controller(config, Publisher(), metrics=metrics))
    task = asyncio.create_task(ZookeeperSource(config.kafka_clusters[0], SessionRegistry()).run(followed))
    yield followed, metrics, task
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _source_errors(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("kafka_xds_source_errors_total", {"cluster": "kafka-a"})
    return value or 0.0


async def test_huge_numbers_and_deep_json_skip_their_broker_and_a_move_is_still_followed(
    zookeeper, chroot, kafka_brokers, follow, caplog
):
    one = await kafka_brokers(zookeeper.hosts, chroot, 1, {"MESH": "10.0.0.1:9094"})
    huge_v1 = f'{{"version":1,"host":"h","port":{HUGE_PORT}}}'.encode()
    await kafka_brokers(zookeeper.hosts, chroot, 2, data=huge_v1)
    await kafka_brokers(zookeeper.hosts, chroot, 3, {"MESH": f"10.0.0.3:{HUGE_PORT}"})
    await kafka_brokers(zookeeper.hosts, chroot, 4, data=DEEP_JSON)
    await kafka_brokers(zookeeper.hosts, chroot, HUGE_PORT, {"MESH": "10.0.0.5:9094"})
    followed, metrics, task = follow

    topology = await followed.until(lambda t: len(t.skipped) == 4, "four skips")
    assert _mesh(topology) == {1: "10.0.0.1:9094"}
    assert topology.state is SourceState.SYNCED
    assert {skip.broker_id for skip in topology.skipped} == {2, 3, 4, None}
    assert all(len(skip.reason) < 300 for skip in topology.skipped)
    logged = [r for r in caplog.records if r.getMessage().startswith("broker registration skipped")]
    assert len(logged) == 4

    await one.update({"MESH": "10.0.0.7:9094"})  # the broker moves: still followed
    moved = await followed.until(lambda t: _mesh(t) == {1: "10.0.0.7:9094"}, "broker 1 moves")
    assert moved.state is SourceState.SYNCED and len(moved.skipped) == 4
    assert not task.done()
    assert _source_errors(metrics) == 0  # skipped registrations are not source failures
    await followed.controller.rebuild()
    skipped = metrics.registry.get_sample_value("kafka_xds_skipped_registrations", {"cluster": "kafka-a"})
    assert skipped == 4


async def test_an_unexpected_error_marks_the_source_stale_and_counts_until_it_passes(
    zookeeper, chroot, kafka_brokers, follow, monkeypatch
):
    real_parse = znode.parse_broker_registration
    failing = {"on": True}

    def parse(broker_id: int, data: bytes | None) -> Any:
        if failing["on"] and data is not None and b"10.0.0.9" in data:
            raise KeyError("a bug the parser did not foresee")
        return real_parse(broker_id, data)

    monkeypatch.setattr("xds.pipeline.sources.zookeeper.parse_broker_registration", parse)
    one = await kafka_brokers(zookeeper.hosts, chroot, 1, {"MESH": "10.0.0.1:9094"})
    followed, metrics, task = follow
    await followed.until(lambda t: _mesh(t) == {1: "10.0.0.1:9094"}, "broker 1")

    await kafka_brokers(zookeeper.hosts, chroot, 2, {"MESH": "10.0.0.9:9094"})
    stale = await followed.until(lambda t: t.state is SourceState.STALE, "the source stale")
    assert "KeyError" in (stale.error or "")
    assert _mesh(stale) == {1: "10.0.0.1:9094"}  # the last brokers kept
    assert _source_errors(metrics) == 1
    assert not task.done()  # no silent restart: the source itself reports and retries

    failing["on"] = False
    await one.update({"MESH": "10.0.0.7:9094"})
    recovered = await followed.until(
        lambda t: t.state is SourceState.SYNCED and _mesh(t) == {1: "10.0.0.7:9094", 2: "10.0.0.9:9094"},
        "recovery",
    )
    assert recovered.error is None
