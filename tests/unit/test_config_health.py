"""`kafka_clusters[].health`: where the partition state is asked, readiness thresholds, placement."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from xds.config.model import ConfigError, parse_config

_ZOOKEEPER_CLUSTER: dict[str, Any] = {
    "name": "kafka-a",
    "loopback_ip": "127.0.0.10",
    "port_base": 9090,
    "upstream_listener": "INTERNAL",
    "zookeeper": {"hosts": "127.0.0.1:2181", "chroot": "/kafka-a"},
}
_CONNECTION = {"bootstrap_servers": ["10.1.4.7:9092"]}
_PATTERN = r"(?P<cluster>[^.]+)\.(?P<zone>.+)"


def _config(health: dict[str, Any], cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    entry = copy.deepcopy(cluster or _ZOOKEEPER_CLUSTER)
    entry["health"] = health
    return {"xds": {"tls": None}, "upstream_tls": None, "kafka_clusters": [entry]}


def _refused(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


def test_defaults_keep_a_gated_roll_at_min_isr_and_poll_every_30_seconds():
    health = parse_config(_config({"connection": _CONNECTION})).kafka_clusters[0].health
    assert health is not None
    assert (health.poll_interval_seconds, health.timeout_seconds) == (30.0, 5.0)
    readiness = health.readiness
    assert (readiness.max_offline, readiness.max_under_min_isr, readiness.max_at_min_isr) == (0, 0, 0)
    assert readiness.max_under_replicated == 0
    assert health.placement is None


def test_a_zookeeper_cluster_needs_a_connection_and_the_error_says_what_to_set():
    error = _refused(_config({}))
    assert error.startswith("kafka_clusters[0].health.connection: missing")
    assert "bootstrap_servers" in error


def test_a_kraft_cluster_is_asked_through_its_source_settings_unless_told_otherwise():
    kraft = {**_ZOOKEEPER_CLUSTER, "kraft": {"bootstrap_servers": ["10.1.4.8:9092"]}}
    del kraft["zookeeper"]
    cluster = parse_config(_config({}, kraft)).kafka_clusters[0]
    assert cluster.health_connection is not None
    assert cluster.health_connection.bootstrap_servers == ["10.1.4.8:9092"]
    own = parse_config(_config({"connection": _CONNECTION}, kraft)).kafka_clusters[0]
    assert own.health_connection is not None
    assert own.health_connection.bootstrap_servers == ["10.1.4.7:9092"]


def test_placement_takes_a_pattern_with_named_groups_and_brokers_by_id():
    placement = {"rack_pattern": _PATTERN, "brokers": {101: {"cluster": "vm", "zone": "az-a"}}}
    health = (
        parse_config(_config({"connection": _CONNECTION, "placement": placement})).kafka_clusters[0].health
    )
    assert health is not None and health.placement is not None
    assert health.placement.brokers == {101: {"cluster": "vm", "zone": "az-a"}}


@pytest.mark.parametrize(
    ("placement", "problem"),
    [
        ({}, "needs rack_pattern, brokers, or both"),
        ({"rack_pattern": "k8s-.*"}, "has no named group"),
        ({"rack_pattern": "(?P<zone>"}, "does not compile"),
        ({"rack_pattern": _PATTERN, "brokers": {7: {"zone": "az-a"}}}, "brokers.7 names ['zone']"),
        ({"brokers": {1: {"zone": "a"}, 2: {"rack": "b"}}}, "brokers.2 names ['rack']"),
    ],
)
def test_a_placement_that_cannot_place_is_refused_naming_why(placement, problem):
    error = _refused(_config({"connection": _CONNECTION, "placement": placement}))
    assert error.startswith("kafka_clusters[0].health.placement")
    assert problem in error


def test_thresholds_cannot_be_negative():
    error = _refused(_config({"connection": _CONNECTION, "readiness": {"max_at_min_isr": -1}}))
    assert "kafka_clusters[0].health.readiness.max_at_min_isr" in error
