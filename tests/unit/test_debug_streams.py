"""/debug/streams at scale: counts first, problems first, bounded pages, merged over workers."""

from __future__ import annotations

import time

from envoy_data_plane.envoy.config.core.v3 import Node

from tests.support.protocol_world import CDS, NOW, World, ack, nack, only, sotw_stream
from tests.support.xds_wire import sotw_request
from xds.serving.protocol import StreamProtocol, Views
from xds.serving.reports import LAGGING_SECONDS, StreamQuery, merge, report
from xds.serving.transport import StreamInfo


def _stream(index: int, protocol: StreamProtocol, pending_since: float | None = None) -> StreamInfo:
    return StreamInfo(
        f"1-{index}", "ipv4:127.0.0.1:1", "sotw", NOW, 0.0, protocol, pending_since=pending_since
    )


def _in_sync(views: Views, node: str) -> StreamProtocol:
    stream = sotw_stream()
    first = only(stream.receive(sotw_request(CDS, node=Node(id=node)), views, NOW))
    stream.receive(ack(first), views, NOW)
    return stream


def _nacked(views: Views, node: str) -> StreamProtocol:
    stream = sotw_stream()
    first = only(stream.receive(sotw_request(CDS, node=Node(id=node)), views, NOW))
    stream.receive(nack(first, last_good=""), views, NOW)
    return stream


def _pending(views: Views, node: str) -> StreamProtocol:
    stream = sotw_stream()
    stream.receive(sotw_request(CDS, node=Node(id=node)), views, NOW)  # not ACKed yet
    return stream


def _fleet(views: Views) -> list[StreamInfo]:
    now = time.monotonic()
    streams = [_stream(index, _in_sync(views, f"healthy-{index}")) for index in range(1000)]
    streams += [_stream(1000 + index, _nacked(views, f"broken-{index}")) for index in range(3)]
    streams += [_stream(2000, _pending(views, "slow"), pending_since=now - LAGGING_SECONDS - 5)]
    streams += [_stream(3000, _pending(views, "busy"), pending_since=now - 1)]
    streams += [_stream(4000, sotw_stream())]  # connected, requested nothing
    return streams


def test_counts_come_first_and_problem_sidecars_lead_the_page():
    views = World().views({1: "10.0.0.1"})
    streams = _fleet(views)
    query = StreamQuery(limit=10)
    body = merge([report(streams, views, query)], query)

    assert body["total"] == 1006
    assert body["by_state"] == {"nacked": 3, "lagging": 1, "pending": 1, "idle": 1, "in_sync": 1000}
    assert body["by_version"]["clusters"][views.snapshot.versions[CDS]] == 1000
    states = [row["sync"] for row in body["streams"]]
    assert states[:6] == ["nacked", "nacked", "nacked", "lagging", "pending", "idle"]
    assert len(body["streams"]) == 10 and body["next_offset"] == 10


def test_pages_are_bounded_filtered_and_merge_over_workers():
    views = World().views({1: "10.0.0.1"})
    streams = _fleet(views)
    half = len(streams) // 2
    query = StreamQuery(state="in_sync", offset=990, limit=100)
    body = merge([report(streams[:half], views, query), report(streams[half:], views, query)], query)

    assert body["matched"] == 1000
    assert len(body["streams"]) == 10  # the last page
    assert body["next_offset"] is None
    assert {row["sync"] for row in body["streams"]} == {"in_sync"}
    one = StreamQuery(node="slow")
    found = merge([report(streams, views, one)], one)
    assert [row["node_id"] for row in found["streams"]] == ["slow"]
