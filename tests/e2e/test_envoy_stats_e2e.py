"""End to end: a real Envoy names each broker's cluster stats `<cluster>.broker-<id>`, dots for slashes."""

from __future__ import annotations

import pytest

from tests.conftest import Stack
from tests.support.envoy import Envoy
from tests.support.wait import eventually
from xds.demo.brokers import exchange

pytestmark = pytest.mark.envoy

LOOPBACK = "127.0.0.40"


async def _connections_counted(envoy: Envoy) -> dict[str, int]:
    stats = await envoy.stats()
    assert stats.get("cluster.kafka-a.broker-1.upstream_cx_total", 0) >= 1
    return stats


async def test_cluster_stats_use_the_dotted_name_once_traffic_flows(stack: Stack):
    await stack.start(
        {1: "127.0.0.41"},
        {"name": "kafka-a", "loopback_ip": LOOPBACK, "port_base": 9090, "upstream_listener": "MESH"},
    )
    answer = await eventually(lambda: exchange(LOOPBACK, 9091, "ping"), what=f"bytes through {LOOPBACK}:9091")
    assert answer.startswith("broker-1")

    stats = await eventually(lambda: _connections_counted(stack.envoy), what="the connection in the stats")

    assert [name for name in stats if "kafka-a/broker-1" in name] == []
