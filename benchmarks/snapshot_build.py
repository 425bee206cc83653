"""Snapshot build cost for 3 Kafka clusters x 100 brokers, through the real pipeline stages.

Prints: the full build (plan, resources, snapshot) from nothing; one broker's IP change applied to
a warm builder; the bytes of each full SotW response; and the per-stream encode cost. Target: the
one-broker change costs under 5% of the full build. Figures only; nothing here asserts a timing.

    .venv/bin/python benchmarks/snapshot_build.py [--clusters 3] [--brokers 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse
from envoy_data_plane.google.protobuf import Any as AnyMessage

from xds.config import Config, parse_config
from xds.grace import GraceState
from xds.plan import plan_cluster
from xds.resources import SHORT_TYPE_NAMES, TYPE_ORDER, ResourceBuilder
from xds.snapshot import Snapshot
from xds.topology import Broker, HostPort, SourceState, Topology


def make_config(clusters: int) -> Config:
    return parse_config(
        {
            "upstream_tls": {"ca_file": "/etc/kafka-xds/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem"},
            "kafka_clusters": [
                {
                    "name": f"kafka-{index}",
                    "loopback_ip": f"127.0.0.{10 + index}",
                    "port_base": 9090,
                    "upstream_listener": "MESH",
                    "static": {"brokers": []},
                }
                for index in range(clusters)
            ],
        }
    )


def topologies(config: Config, brokers: int, moved: int | None = None) -> dict[str, Topology]:
    found = {}
    for index, cluster in enumerate(config.kafka_clusters):
        members = []
        for broker_id in range(1, brokers + 1):
            last_octet = 200 if (index == 0 and broker_id == moved) else broker_id % 250
            host = f"10.{index}.{broker_id // 250}.{last_octet}"
            members.append(
                Broker.create(
                    broker_id,
                    {"MESH": HostPort(host, 9094), "CLIENT": HostPort("127.0.0.10", 9090)},
                    f"az{broker_id % 3}",
                )
            )
        found[cluster.name] = Topology.create(cluster.name, "static", SourceState.SYNCED, members)
    return found


def build(config: Config, builder: ResourceBuilder, topology: dict[str, Topology]) -> Snapshot:
    inputs: list[Any] = []
    for cluster in config.kafka_clusters:
        plan = plan_cluster(cluster, topology[cluster.name], GraceState(cluster.removal_grace_seconds))
        inputs.extend((planned, config.tls_for(cluster)) for planned in plan.brokers)
    return Snapshot.from_brokers(builder.build(inputs, config.sidecar))


def timed(run: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--brokers", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    config = make_config(args.clusters)
    steady = topologies(config, args.brokers)
    moved = topologies(config, args.brokers, moved=7)

    full_times, change_times = [], []
    snapshot = None
    for _ in range(args.repeat):
        builder = ResourceBuilder()
        seconds, snapshot = timed(lambda builder=builder: build(config, builder, steady))
        full_times.append(seconds)
        for current in (moved, steady):  # one broker moves away, then back: each is one change
            seconds, _ = timed(lambda builder=builder, current=current: build(config, builder, current))
            change_times.append(seconds)
        built, reused = builder.counts
    assert snapshot is not None
    full, change = statistics.median(full_times), statistics.median(change_times)
    total = args.clusters * args.brokers
    print(f"brokers: {args.clusters} clusters x {args.brokers} = {total} ({total * 3} resources)")
    print(f"full snapshot build:        median {full * 1000:8.1f} ms  (of {args.repeat})")
    print(
        f"one broker IP change:       median {change * 1000:8.1f} ms  = {100 * change / full:.2f}% of full"
        f"  (target < 5%)"
    )
    print(f"last builder: built {built} resources, reused {reused}")
    for type_url in TYPE_ORDER:
        resources = list(snapshot.resources(type_url).values())
        response = DiscoveryResponse(
            version_info=snapshot.version(type_url),
            resources=[
                AnyMessage(type_url=resource.type_url, value=resource.payload) for resource in resources
            ],
            type_url=type_url,
            nonce="1",
        )
        encode_seconds, encoded = timed(lambda response=response: bytes(response))
        print(
            f"full SotW {SHORT_TYPE_NAMES[type_url]:>9} response: {len(encoded):8d} bytes, "
            f"encoded per stream in {encode_seconds * 1000:.2f} ms"
        )


if __name__ == "__main__":
    main()
