"""The health follower (xds.health.follower): what it answers from each poll, that an unreachable
cluster is never healthy, when it polls again, what it logs (once) and what it exports.

Polls are answered by `ScriptedReader` (tests/support/health.py) where a test needs a sequence of
answers on cue; a cluster that refuses connections is a real one (an address nobody listens on).
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from tests.support.addresses import LoopbackAddresses
from tests.support.health import Clock, ScriptedReader, cluster, orders, settings, stopped, topic
from xds.config.model import KraftSettings, parse_config
from xds.health.fetch import ClusterUnreachable
from xds.health.follower import HealthFollower, HealthFollowers
from xds.health.metrics import HealthMetrics

CONNECTION = KraftSettings(bootstrap_servers=["10.0.0.1:9092"])
UNREACHABLE = ClusterUnreachable("kafka-a", (("10.0.0.1:9092", "connection refused"),), False)


def follower(reader: ScriptedReader, clock: Clock | None = None, registry=None, draw=lambda: 0.5, **fields):
    metrics = HealthMetrics(registry) if registry is not None else None
    found = HealthFollower(
        "kafka-a",
        CONNECTION,
        settings(**fields),
        reader=reader,
        clock=clock or Clock(),
        draw=draw,
        metrics=metrics,
    )
    if metrics is not None:
        metrics.follow(lambda: [found.status()])
    return found


# -- answers ---------------------------------------------------------------------------------------


async def test_before_the_first_poll_answers_every_broker_is_not_ready():
    status = follower(ScriptedReader(cluster(orders()))).status()
    assert status.state == "unknown"
    answer = status.broker(1)
    assert not answer.ready
    assert answer.summary() == "not ready: cluster state not known yet (the first poll has not answered)"


async def test_a_polled_cluster_answers_each_brokers_readiness_from_its_state():
    following = follower(ScriptedReader(stopped(cluster(orders()), 4)))
    await following.poll()
    status = following.status()
    assert status.state == "reachable" and status.problem is None
    assert not status.broker(1).ready
    assert status.broker(1).summary() == (
        "not ready: broker 1 in sync; cluster: 3 at-min-ISR partitions (orders-1, orders-2, orders-3)"
    )
    assert status.last_good is not None and status.last_good.server == "10.0.0.1:9092"


async def test_an_unreachable_cluster_is_not_ready_however_good_its_last_state():
    clock = Clock()
    reader = ScriptedReader(cluster(orders()))
    following = follower(reader, clock)
    await following.poll()
    assert following.status().broker(1).ready
    reader.then(UNREACHABLE)
    await following.poll()
    clock.advance(42)
    await following.poll()
    status = following.status()
    assert status.state == "unreachable"
    answer = status.broker(1)
    assert not answer.ready
    assert answer.summary() == "not ready: cluster unreachable for 42 s: 10.0.0.1:9092: connection refused"
    assert answer.summary(with_error=False) == "not ready: cluster unreachable for 42 s"
    assert status.failure is not None and status.failure.failures == 2
    assert status.assessment is not None  # the last good state is still shown, as such


async def test_a_cluster_nobody_answers_for_is_unreachable_from_the_start(addresses: LoopbackAddresses):
    nobody = KraftSettings(bootstrap_servers=[f"{addresses.take()}:9092"])  # a real refused connection
    following = HealthFollower("kafka-a", nobody, settings(timeout_seconds=2))
    try:
        await following.poll()
    finally:
        await following._reader.close()
    status = following.status()
    assert status.state == "unreachable"
    assert status.failure is not None and "connection refused" in status.failure.error
    assert status.broker(1).summary().startswith("not ready: cluster unreachable for 0 s: ")


async def test_a_cluster_answering_again_is_reachable_and_ready_again():
    reader = ScriptedReader(UNREACHABLE, cluster(orders()))
    following = follower(reader)
    await following.poll()
    await following.poll()
    status = following.status()
    assert status.state == "reachable" and status.failure is None
    assert status.broker(1).ready


async def test_a_poll_that_fails_in_an_unexpected_way_is_a_failure_not_the_end_of_the_follower():
    following = follower(ScriptedReader(RuntimeError("a bug")))
    await following.poll()
    status = following.status()
    assert status.state == "unreachable"
    assert status.failure is not None and status.failure.error == "poll failed: RuntimeError('a bug')"


async def test_a_state_older_than_two_intervals_is_stale_and_not_ready():
    clock = Clock()
    following = follower(ScriptedReader(cluster(orders())), clock)
    await following.poll()
    clock.advance(2 * 30 + 5 + 1)  # the follower has not polled since: stuck
    status = following.status()
    assert status.state == "stale"
    assert status.broker(1).summary() == "not ready: cluster state is 66 s old (polls have stopped)"


# -- when it polls ---------------------------------------------------------------------------------


async def test_polls_come_every_interval_within_ten_percent():
    reader = ScriptedReader(cluster(orders()))
    for draw, low, high in ((0.0, 26.9, 27.0), (0.5, 29.9, 30.0), (1.0, 32.9, 33.0)):
        following = follower(reader, draw=lambda value=draw: value)
        await following.poll()
        assert low <= following.next_delay() <= high  # less the poll's own time


async def test_after_failures_polls_back_off_from_one_second_up_to_the_interval():
    following = follower(ScriptedReader(UNREACHABLE), poll_interval_seconds=10)
    delays = []
    for _ in range(6):
        await following.poll()
        delays.append(following.next_delay())
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_run_polls_until_cancelled_then_closes_the_reader():
    reader = ScriptedReader(cluster(orders()))
    task = asyncio.create_task(follower(reader).run())
    await reader.fetched.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reader.closed


# -- what it logs ----------------------------------------------------------------------------------


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def test_a_new_topic_breaking_placement_is_logged_once_counted_and_listed(caplog):
    registry = CollectorRegistry()
    reader = ScriptedReader(cluster(orders(), min_isr=1))
    following = follower(reader, registry=registry)
    await following.poll()
    reader.then(cluster([*orders(), *topic("skewed", (1, 2), (2, 1))], min_isr=1))
    with caplog.at_level(logging.WARNING, logger="kafka_xds.health"):
        for _ in range(3):
            await following.poll()
    (line,) = _lines(caplog, "new topic breaks replica placement")
    assert line.levelno == logging.WARNING
    fields = line.__dict__["fields"]
    assert fields["topic"] == "skewed"
    assert fields["rules"] == "spread=2,dimension-loss=2"  # not isr-at-risk: a moment's state
    assert fields["partitions"] == "skewed-0,skewed-1"
    status = following.status()
    assert status.anomaly_count == 1
    assert [a.topic for a in status.anomalies] == ["skewed"]
    counted = registry.get_sample_value("kafka_xds_health_new_topic_anomalies_total", {"cluster": "kafka-a"})
    assert counted == 1


async def test_topics_found_at_the_first_poll_are_said_once_and_are_no_anomaly(caplog):
    reader = ScriptedReader(cluster(topic("skewed", (1, 2)), min_isr=1))
    following = follower(reader)
    with caplog.at_level(logging.WARNING, logger="kafka_xds.health"):
        await following.poll()
        await following.poll()
    (line,) = _lines(caplog, "existing topics break replica placement")
    assert line.__dict__["fields"]["violations"] == 3
    assert following.status().anomaly_count == 0


async def test_repeated_failures_are_logged_once_and_the_recovery_once(caplog):
    reader = ScriptedReader(UNREACHABLE)
    following = follower(reader)
    with caplog.at_level(logging.INFO, logger="kafka_xds.health"):
        for _ in range(5):
            await following.poll()
        reader.then(cluster(orders()))
        await following.poll()
    (failure,) = _lines(caplog, "cluster unreachable")
    assert failure.levelno == logging.WARNING
    assert failure.__dict__["fields"]["error"] == "10.0.0.1:9092: connection refused"
    (recovery,) = _lines(caplog, "cluster reachable again")
    assert recovery.__dict__["fields"]["failures"] == 5


# -- what it exports -------------------------------------------------------------------------------


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"cluster": "kafka-a", **labels})


async def test_metrics_show_partitions_by_state_and_each_brokers_readiness():
    registry = CollectorRegistry()
    following = follower(ScriptedReader(stopped(cluster(orders()), 4)), registry=registry)
    await following.poll()
    assert _sample(registry, "kafka_xds_health_reachable") == 1
    assert _sample(registry, "kafka_xds_health_partitions", state="at_min_isr") == 3
    assert _sample(registry, "kafka_xds_health_partitions", state="in_sync") == 1
    assert _sample(registry, "kafka_xds_health_partitions", state="offline") == 0
    assert _sample(registry, "kafka_xds_health_broker_ready", broker="1") == 0
    assert _sample(registry, "kafka_xds_health_restartable_brokers") == 1
    assert _sample(registry, "kafka_xds_health_placement_violations", rule="dimension-loss") == 8
    assert _sample(registry, "kafka_xds_health_last_success_timestamp_seconds") == Clock().now
    assert _sample(registry, "kafka_xds_health_poll_seconds_count") == 1


async def test_metrics_of_an_unreachable_cluster_say_no_broker_ready_and_none_restartable():
    registry = CollectorRegistry()
    reader = ScriptedReader(cluster(orders()))
    following = follower(reader, registry=registry)
    await following.poll()
    assert _sample(registry, "kafka_xds_health_broker_ready", broker="2") == 1
    reader.then(UNREACHABLE)
    await following.poll()
    assert _sample(registry, "kafka_xds_health_reachable") == 0
    assert _sample(registry, "kafka_xds_health_broker_ready", broker="2") == 0
    assert _sample(registry, "kafka_xds_health_restartable_brokers") == 0
    assert _sample(registry, "kafka_xds_health_poll_failures_total") == 1


def test_followers_are_made_for_the_clusters_with_health_settings_only(tmp_path):
    config = parse_config(
        {
            "xds": {"listen": "127.0.0.1:0", "tls": None},
            "debug": {"listen": "127.0.0.1:0"},
            "upstream_tls": None,
            "kafka_clusters": [
                {
                    "name": name,
                    "loopback_ip": f"127.0.0.{10 + n}",
                    "port_base": 9090,
                    "upstream_listener": "INTERNAL",
                    "kraft": {"bootstrap_servers": ["10.0.0.1:9092"]},
                    **({"health": {}} if name == "kafka-a" else {}),
                }
                for n, name in enumerate(("kafka-a", "kafka-b"))
            ],
        }
    )
    followers = HealthFollowers.from_config(config, CollectorRegistry())
    assert [f.cluster for f in followers] == ["kafka-a"]
    assert followers.without_health == ("kafka-b",)
    assert followers.names == ("kafka-a", "kafka-b")


async def test_a_broker_that_stopped_keeps_its_place_in_the_placement_report():
    reader = ScriptedReader(cluster(orders()))
    following = follower(reader)
    await following.poll()
    reader.then(stopped(cluster(orders()), 4))
    await following.poll()
    assessment = following.status().assessment
    assert assessment is not None and assessment.placement is not None
    assert 4 in assessment.placement.located
