"""The status page's memory: the event ring, the serving side's notices, and the metrics sampler."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from xds.debug.sampler import Sample, Sampler, interval_points, quantile, read_sample, record_notices
from xds.pipeline.history import MAX_TEXT_CHARS, EventKind, EventLog, Severity, plan_changes, source_change
from xds.pipeline.plan import BrokerStatus, ClusterPlan, PlannedBroker
from xds.pipeline.topology import Broker, SourceState, Topology
from xds.serving.notices import NackNotice, NoticeLog, RefusalNotice
from xds.serving.stream_metrics import StreamMetrics
from xds.shared.addresses import HostPort
from xds.shared.log import register_secret

NOW = 1_700_000_000.0


def test_the_event_ring_keeps_the_newest_and_is_bounded():
    events = EventLog(capacity=3, clock=lambda: NOW)
    for index in range(5):
        events.record(EventKind.BROKER_ADDED, f"broker {index} added", "kafka-a")
    assert len(events) == 3
    assert [recorded.text for recorded in events.recent()] == [
        "broker 4 added",
        "broker 3 added",
        "broker 2 added",
    ]
    assert [recorded.sequence for recorded in events.recent(2)] == [5, 4]
    assert events.recent(1)[0].to_json()["kind"] == "broker_added"


def test_an_event_never_holds_a_registered_secret_nor_a_novel():
    register_secret("hunter2-zk-password")
    events = EventLog()
    recorded = events.record(EventKind.SOURCE_LOST, "auth failed for user:hunter2-zk-password", "kafka-a")
    assert "hunter2" not in recorded.text
    assert "<redacted>" in recorded.text
    long = events.record(EventKind.NACK, "x" * 10_000)
    assert len(long.text) == MAX_TEXT_CHARS


def _broker(broker_id: int, upstream: str | None, status: BrokerStatus = BrokerStatus.LIVE) -> PlannedBroker:
    return PlannedBroker(
        "kafka-a",
        broker_id,
        HostPort("127.0.0.10", 9090 + broker_id),
        HostPort(upstream, 9094) if upstream else None,
        None,
        status,
        NOW + 60 if status is BrokerStatus.IN_GRACE else None,
    )


def _plan(*brokers: PlannedBroker) -> ClusterPlan:
    return ClusterPlan("kafka-a", "127.0.0.10", brokers, (), ())


def test_plan_changes_name_brokers_added_moved_leaving_back_and_removed():
    before = _plan(
        _broker(1, "10.0.0.1"),
        _broker(2, "10.0.0.2"),
        _broker(3, None, BrokerStatus.IN_GRACE),
        _broker(4, "10.0.0.4"),
    )
    after = _plan(
        _broker(1, "10.0.0.9"),
        _broker(2, None, BrokerStatus.IN_GRACE),
        _broker(3, "10.0.0.3"),
        _broker(5, "10.0.0.5"),
    )
    changes = {kind: text for kind, _, text in plan_changes(before, after)}
    assert changes == {
        EventKind.BROKER_MOVED: "broker 1 moved: 10.0.0.1:9094 → 10.0.0.9:9094 "
        "(clients keep 127.0.0.10:9091)",
        EventKind.BROKER_LEAVING: changes[EventKind.BROKER_LEAVING],
        EventKind.BROKER_RETURNED: "broker 3 back: clients use 127.0.0.10:9093, forwarded to 10.0.0.3:9094",
        EventKind.BROKER_REMOVED: "broker 4 removed",
        EventKind.BROKER_ADDED: "broker 5 added: clients use 127.0.0.10:9095, forwarded to 10.0.0.5:9094",
    }
    assert changes[EventKind.BROKER_LEAVING].startswith(
        "broker 2 deregistered: its address 127.0.0.10:9092 is kept until"
    )
    assert plan_changes(after, after) == []


def test_a_source_lost_and_recovered_is_told_once_each():
    brokers = [Broker.create(1, {"MESH": HostPort("10.0.0.1", 9094)})]
    synced = Topology.create("kafka-a", "zookeeper", SourceState.SYNCED, brokers)
    stale = synced.went_stale("session lost", NOW - 42)
    kind, severity, text = source_change(synced, stale, NOW) or (None, None, "")
    assert (kind, severity) == (EventKind.SOURCE_LOST, Severity.ERROR)
    assert text == "zookeeper source stale: session lost; its last known 1 broker kept"
    assert source_change(stale, stale, NOW) is None
    recovered = source_change(stale, synced, NOW)
    assert recovered == (
        EventKind.SOURCE_RECOVERED,
        Severity.INFO,
        "zookeeper source synced again after 42 s: 1 broker",
    )
    first = Topology.create("kafka-a", "zookeeper", SourceState.SYNCING)
    assert source_change(first, synced, NOW) == (
        EventKind.SOURCE_SYNCED,
        Severity.INFO,
        "zookeeper source completed its first sync: 1 broker",
    )


def test_notices_are_read_after_a_cursor_and_a_new_epoch_starts_over():
    notices = NoticeLog(capacity=3, clock=lambda: NOW)
    notices.nack("app-1", "clusters", "v2", "v1", "bad cluster")
    first = notices.after(None, 0)
    assert [type(notice) for notice in first.notices] == [NackNotice]
    assert (first.last, first.missed) == (1, 0)
    assert notices.after(first.epoch, first.last).notices == ()
    for index in range(5):
        notices.refusal("overloaded", None, f"ipv4:10.0.0.{index}:1")
    batch = notices.after(first.epoch, first.last)
    assert [notice.peer for notice in batch.notices if isinstance(notice, RefusalNotice)] == [
        "ipv4:10.0.0.2:1",
        "ipv4:10.0.0.3:1",
        "ipv4:10.0.0.4:1",
    ]
    assert batch.missed == 2  # the ring holds 3
    assert len(notices.after(first.epoch + 1, batch.last).notices) == 3  # another process's cursor


def test_notices_become_one_event_per_rejected_version_and_per_refusal_reason():
    events = EventLog(clock=lambda: NOW)
    nacks = [
        NackNotice(NOW, f"app-{index}", "clusters", "abcdef0123456789", "0011223344556677", "bad")
        for index in range(5)
    ]
    refusals = [RefusalNotice(NOW, "permission_denied", "spiffe://x/ns/a/sa/b", "ipv4:1.2.3.4:5")] * 2
    record_notices(events, [*nacks, *refusals], missed=0)
    texts = sorted(recorded.text for recorded in events.recent())
    assert texts == [
        "2 streams refused (permission_denied) — spiffe://x/ns/a/sa/b",
        "5 sidecars rejected clusters version abcdef01 (they keep 00112233): bad "
        "— app-0, app-1, app-2 and 2 more",
    ]
    record_notices(events, [], missed=7)
    assert events.recent(1)[0].text.startswith("7 more NACKs or refusals not shown")


def test_the_p99_interpolates_within_a_bucket_and_is_none_without_observations():
    assert quantile(0.99, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.5, [(0.1, 50.0), (1.0, 100.0), (float("inf"), 100.0)]) == 0.1
    assert quantile(0.99, [(0.1, 50.0), (1.0, 100.0), (float("inf"), 100.0)]) == 0.1 + 0.9 * 49 / 50
    assert quantile(0.99, [(0.1, 0.0), (float("inf"), 10.0)]) == 0.1  # beyond the last bound


def test_interval_points_are_rates_between_samples_and_survive_a_worker_restart():
    samples = [
        Sample(NOW, 3, 100, 1, 0, ((1.0, 4), (float("inf"), 4))),
        Sample(NOW + 10, 4, 160, 3, 2, ((1.0, 4), (float("inf"), 4))),
        Sample(NOW + 20, 4, 20, 3, 2, ((1.0, 6), (float("inf"), 6))),  # pushes restarted from 0
    ]
    first, second = interval_points(samples)
    assert (first.sidecars, first.pushes_per_minute, first.nacks, first.refusals) == (4, 360, 2, 2)
    assert first.convergence_p99 is None  # nothing converged in it
    assert second.pushes_per_minute == 120
    assert second.convergence_p99 == 0.99


def test_a_sample_reads_the_stream_metrics_summed_over_labels():
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    metrics.streams.set(7)
    metrics.pushes.labels("clusters").inc(3)
    metrics.pushes.labels("endpoints").inc(2)
    metrics.nacks.labels("clusters").inc()
    metrics.streams_refused.labels("overloaded").inc(4)
    metrics.convergence_seconds.observe(0.2)
    sample = read_sample(registry.collect(), NOW)
    assert (sample.sidecars, sample.pushes, sample.nacks, sample.refusals) == (7, 5, 1, 4)
    assert dict(sample.convergence)[0.25] == 1 and dict(sample.convergence)[0.1] == 0


class _Fleet:
    """The parts of a Fleet the sampler uses."""

    def __init__(self, notices: NoticeLog) -> None:
        self._notices = notices
        self.cursor = 0
        self.refreshed = 0

    async def refresh_metrics(self) -> None:
        self.refreshed += 1

    def collect(self) -> list[Any]:
        return []

    async def notices(self) -> tuple[list[Any], int]:
        batch = self._notices.after(self._notices.epoch, self.cursor)
        self.cursor = batch.last
        return list(batch.notices), batch.missed


async def test_the_sampler_fills_a_bounded_ring_and_moves_notices_into_the_history():
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    notices = NoticeLog()
    events = EventLog()
    clock = iter(float(second) for second in range(1000))
    sampler = Sampler(registry, _Fleet(notices), events, interval=10, window=30, clock=lambda: next(clock))  # type: ignore[arg-type]
    metrics.streams.set(2)
    notices.nack("app-1", "listeners", "v9", None, "port in use")
    for _ in range(6):
        await sampler.sample_once()
    assert len(sampler.samples) == 4  # 30 s at 10 s: 4 samples
    assert [sample.at for sample in sampler.samples] == [2.0, 3.0, 4.0, 5.0]
    assert sampler.samples[-1].sidecars == 2
    (nacked,) = events.recent()
    assert nacked.text == "1 sidecar rejected listeners version v9 (they have none yet): port in use — app-1"


async def test_the_sampler_is_an_owned_task_stopped_and_awaited():
    sampler = Sampler(CollectorRegistry(), _Fleet(NoticeLog()), EventLog(), interval=0.01)  # type: ignore[arg-type]
    sampler.start()
    await asyncio.sleep(0.05)
    assert len(sampler.samples) >= 2
    await sampler.stop()
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "debug-sampler"]
    count = len(sampler.samples)
    await asyncio.sleep(0.03)
    assert len(sampler.samples) == count
