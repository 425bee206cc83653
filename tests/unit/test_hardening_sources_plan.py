"""The plan refuses upstreams that would make a sidecar connect to itself, and one cluster's
unbuildable input never holds back another cluster's snapshot."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from xds.config.model import Config, parse_config
from xds.pipeline.controller import Controller
from xds.pipeline.grace import GraceState
from xds.pipeline.metrics import Metrics
from xds.pipeline.plan import plan_cluster
from xds.pipeline.publisher import Publisher
from xds.pipeline.resolve import Resolution
from xds.pipeline.resources.builder import ResourceBuilder
from xds.pipeline.resources.encode import ENCODERS
from xds.pipeline.resources.inputs import EndpointInputs
from xds.pipeline.resources.typed import decoded
from xds.pipeline.topology import Broker, SourceState, Topology
from xds.shared.addresses import HostPort
from xds.shared.resource_types import ENDPOINT_TYPE, LISTENER_TYPE


def _config(**xds: Any) -> Config:
    return parse_config(
        {
            "upstream_tls": None,
            "xds": {"debounce_ms": 0, "tls": None, "listen": "127.0.0.1:18000", **xds},
            "debug": {"listen": "127.0.0.1:19000"},
            "kafka_clusters": [
                {
                    "name": name,
                    "loopback_ip": loopback_ip,
                    "port_base": 9090,
                    "upstream_listener": "MESH",
                    "static": {"brokers": []},
                }
                for name, loopback_ip in (("kafka-a", "127.0.0.10"), ("kafka-b", "127.0.0.11"))
            ],
        }
    )


def _broker(broker_id: int, host: str, port: int = 9094) -> Broker:
    return Broker.create(broker_id, {"MESH": HostPort(host, port)})


def _synced(cluster: str, *brokers: Broker) -> Topology:
    return Topology.create(cluster, "static", SourceState.SYNCED, brokers)


def _upstreams(controller: Controller, cluster: str) -> dict[int, str]:
    return {broker.broker_id: str(broker.upstream) for broker in controller.plans[cluster].brokers}


def _endpoint(snapshot: Any, name: str) -> str:
    assignment: Any = decoded(snapshot.resources(ENDPOINT_TYPE)[name])
    address = assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    return f"{address.address}:{address.port_value}"


# Item 8: an upstream on the plan's own addresses --------------------------------------------------


async def test_upstreams_on_the_plans_own_addresses_are_refused_per_broker(caplog):
    metrics = Metrics()
    controller = Controller(_config(), Publisher(), metrics=metrics)
    caplog.set_level(logging.ERROR, logger="kafka_xds")
    own_listener = _broker(1, "127.0.0.10", 9093)  # this cluster's loopback IP
    other_cluster = _broker(2, "127.0.0.11", 9091)  # another cluster's loopback IP, any port
    xds_server = _broker(3, "127.0.0.1", 18000)  # xds.listen
    debug_server = _broker(4, "127.0.0.1", 19000)  # debug.listen
    good = _broker(5, "127.0.0.1", 9094)  # a broker on this host is fine
    controller.submit(_synced("kafka-a", own_listener, other_cluster, xds_server, debug_server, good))
    controller.submit(_synced("kafka-b", _broker(1, "10.0.1.1")))
    report = await controller.rebuild()

    assert report is not None and report.published
    assert _upstreams(controller, "kafka-a") == {5: "127.0.0.1:9094"}
    assert _upstreams(controller, "kafka-b") == {1: "10.0.1.1:9094"}
    reasons = {skip.broker_id: skip.reason for skip in controller.plans["kafka-a"].skipped}
    assert set(reasons) == {1, 2, 3, 4}
    assert "127.0.0.10:9093" in reasons[1] and "connect to itself" in reasons[1]
    assert "kafka-b" in reasons[2]
    assert "xds.listen" in reasons[3] and "debug.listen" in reasons[4]
    skipped = metrics.registry.get_sample_value("kafka_xds_skipped_registrations", {"cluster": "kafka-a"})
    assert skipped == 4

    await controller.rebuild()  # logged once, not on every build
    logged = [r.__dict__["fields"] for r in caplog.records if "left out of the plan" in r.getMessage()]
    assert sorted(fields["broker"] for fields in logged) == [1, 2, 3, 4]


def test_a_dns_name_that_resolves_to_the_plans_loopback_ip_is_refused():
    cluster = _config().kafka_clusters[0]
    topology = _synced("kafka-a", _broker(1, "kafka-0.kafka"), _broker(2, "kafka-1.kafka"))
    resolved = {
        "kafka-0.kafka": Resolution("kafka-0.kafka", "127.0.0.10", 0.0),
        "kafka-1.kafka": Resolution("kafka-1.kafka", "10.0.0.2", 0.0),
    }
    plan = plan_cluster(cluster, topology, GraceState(300), resolved)
    assert [broker.broker_id for broker in plan.brokers] == [2]
    assert "kafka-0.kafka" in plan.skipped[0].reason and "127.0.0.10" in plan.skipped[0].reason


async def test_a_wildcard_xds_listen_refuses_that_port_on_loopback():
    controller = Controller(_config(listen="0.0.0.0:18000"), Publisher())
    for name in ("kafka-a", "kafka-b"):
        controller.submit(_synced(name, _broker(1, "127.0.0.1", 18000), _broker(2, "10.0.0.9", 18000)))
    await controller.rebuild()
    assert _upstreams(controller, "kafka-a") == {2: "10.0.0.9:18000"}


# Item 9: one cluster's bad input never stops another's snapshot ------------------------------------

UNBUILDABLE = "10.0.1.66"  # an upstream the encoder below fails on, as a bug nobody foresaw would


def _encode_endpoints(inputs: EndpointInputs) -> bytes:
    if inputs.upstream is not None and inputs.upstream.host == UNBUILDABLE:
        raise ValueError("field 3: uint32 out of range")
    return ENCODERS.endpoints(inputs)


def _controller(cache: Publisher, metrics: Metrics | None = None) -> Controller:
    controller = Controller(_config(), cache, metrics=metrics)
    controller._builder = ResourceBuilder(dataclasses.replace(ENCODERS, endpoints=_encode_endpoints))
    return controller


async def test_an_upstream_port_outside_1_to_65535_is_refused_by_the_plan():
    cache = Publisher()
    controller = Controller(_config(), cache)
    controller.submit(_synced("kafka-a", _broker(1, "10.0.0.1", -1), _broker(2, "10.0.0.2", 70000)))
    controller.submit(_synced("kafka-b", _broker(1, "10.0.1.1")))
    report = await controller.rebuild()
    assert report is not None and report.published and report.error is None
    assert _upstreams(controller, "kafka-a") == {}
    reasons = [skip.reason for skip in controller.plans["kafka-a"].skipped]
    assert ["-1" in reasons[0], "70000" in reasons[1]] == [True, True]
    assert _upstreams(controller, "kafka-b") == {1: "10.0.1.1:9094"}


async def test_an_unbuildable_cluster_keeps_its_last_resources_while_others_update(caplog):
    metrics = Metrics()
    cache = Publisher()
    controller = _controller(cache, metrics)
    controller.submit(_synced("kafka-a", _broker(1, "10.0.0.1")))
    controller.submit(_synced("kafka-b", _broker(1, "10.0.1.1")))
    await controller.rebuild()

    controller.submit(_synced("kafka-a", _broker(1, "10.0.0.7")))  # a move in kafka-a
    controller.submit(_synced("kafka-b", _broker(1, UNBUILDABLE), _broker(2, "10.0.1.3")))
    report = await controller.rebuild()

    assert report is not None and report.published
    assert cache.snapshot is not None
    assert _endpoint(cache.snapshot, "kafka-a/broker-1") == "10.0.0.7:9094"  # followed
    assert _endpoint(cache.snapshot, "kafka-b/broker-1") == "10.0.1.1:9094"  # its last good resources
    assert "kafka-b/broker-2" not in cache.snapshot.resources(LISTENER_TYPE)  # all of kafka-b is held
    assert "kafka-b" in (report.error or "")
    failures = metrics.registry.get_sample_value(
        "kafka_xds_cluster_build_failures_total", {"cluster": "kafka-b"}
    )
    assert failures == 1
    assert any(r.__dict__.get("fields", {}).get("cluster") == "kafka-b" for r in caplog.records)

    controller.submit(_synced("kafka-b", _broker(1, "10.0.1.2"), _broker(2, "10.0.1.3")))  # fixed
    report = await controller.rebuild()
    assert report is not None and report.error is None
    assert _endpoint(cache.snapshot, "kafka-b/broker-1") == "10.0.1.2:9094"
    assert "kafka-b/broker-2" in cache.snapshot.resources(LISTENER_TYPE)


async def test_a_cluster_that_never_built_is_left_out_while_others_publish():
    cache = Publisher()
    controller = _controller(cache)
    controller.submit(_synced("kafka-a", _broker(1, "10.0.0.1")))
    controller.submit(_synced("kafka-b", _broker(1, UNBUILDABLE)))
    report = await controller.rebuild()
    assert report is not None and report.published
    assert cache.snapshot is not None
    assert set(cache.snapshot.resources(LISTENER_TYPE)) == {"kafka-a/broker-1"}
