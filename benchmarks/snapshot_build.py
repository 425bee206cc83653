"""Snapshot build cost through the real pipeline stages, typed path against the wire encoders.

For 3 and 10 Kafka clusters of 100 brokers (by default) and for each path (`typed`: every resource
built through envoy-data-plane's message classes and serialized with `bytes()`; `fast`: the wire
encoders production uses), prints: the full build from nothing, split into its stages (plan,
resources, snapshot), with resources per second; one broker's IP change applied to a warm builder,
split the same way (only that broker's ClusterLoadAssignment is built again; the plan and the
snapshot are per build, whatever changed); then, for the largest size, the bytes of each full SotW
response and the cost of encoding it once per version. Figures only; nothing here asserts a timing.

    .venv/bin/python benchmarks/snapshot_build.py [--clusters 3 10] [--brokers 100] [--repeat 5]
        [--typed-repeat 1]    (0: skip the typed path, which takes seconds per build)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse
from envoy_data_plane.google.protobuf import Any as AnyMessage

from xds.config.model import Config, UpstreamTls, parse_config
from xds.pipeline.grace import GraceState
from xds.pipeline.plan import PlannedBroker, plan_cluster
from xds.pipeline.resources.builder import ResourceBuilder
from xds.pipeline.resources.encode import ENCODERS
from xds.pipeline.resources.inputs import Encoders
from xds.pipeline.resources.typed import TYPED_ENCODERS
from xds.pipeline.snapshot import Snapshot
from xds.pipeline.topology import Broker, SourceState, Topology
from xds.shared.addresses import HostPort
from xds.shared.resource_types import SHORT_TYPE_NAMES, TYPE_ORDER

T = TypeVar("T")


def make_config(clusters: int) -> Config:
    return parse_config(
        {
            "xds": {"tls": None},
            "upstream_tls": {
                "ca_file": "/etc/kafka-xds/ca.pem",
                "cert_file": "/c.pem",
                "key_file": "/k.pem",
                "broker_names": {"uri": ["spiffe://example.org/ns/kafka/sa/{cluster}/broker-{broker_id}"]},
            },
            "kafka_clusters": [
                {
                    "name": f"kafka-{index}",
                    "loopback_ip": f"127.0.{index // 200}.{10 + index % 200}",
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


def plan(config: Config, topology: dict[str, Topology]) -> list[tuple[PlannedBroker, UpstreamTls | None]]:
    inputs: list[tuple[PlannedBroker, UpstreamTls | None]] = []
    for cluster in config.kafka_clusters:
        planned = plan_cluster(cluster, topology[cluster.name], GraceState(cluster.removal_grace_seconds))
        inputs.extend((broker, config.tls_for(cluster)) for broker in planned.brokers)
    return inputs


def timed(run: Callable[..., T], *args: Any) -> tuple[float, T]:
    started = time.perf_counter()
    result = run(*args)
    return time.perf_counter() - started, result


@dataclass(frozen=True)
class Figures:
    """Seconds per stage over the repeats of one path at one size (medians, and the fastest run)."""

    stages: dict[str, list[float]]
    counts: tuple[int, int]
    snapshot: Snapshot

    def median(self, stage: str) -> float:
        return statistics.median(self.stages[stage])

    @property
    def full(self) -> float:
        return self.median("full")


def measure(config: Config, brokers: int, encoders: Encoders, repeat: int) -> Figures:
    steady, moved = topologies(config, brokers), topologies(config, brokers, moved=7)
    stages: dict[str, list[float]] = defaultdict(list)
    counts, snapshot = (0, 0), None
    for _ in range(repeat):
        builder = ResourceBuilder(encoders)
        snapshot = run_stages(config, builder, steady, stages, "")
        for current in (moved, steady):  # one broker moves away, then back: each is one change
            run_stages(config, builder, current, stages, "change ")
        counts = builder.counts
    assert snapshot is not None
    return Figures(stages, counts, snapshot)


def run_stages(
    config: Config,
    builder: ResourceBuilder,
    topology: dict[str, Topology],
    stages: dict[str, list[float]],
    at: str,
) -> Snapshot:
    """Plan, resources, snapshot: each stage's seconds appended to `stages` under `at` + its name."""
    plan_seconds, inputs = timed(plan, config, topology)
    resources_seconds, built = timed(builder.build, inputs, config.sidecar)
    snapshot_seconds, snapshot = timed(Snapshot.from_brokers, built)
    stages[at + "plan"].append(plan_seconds)
    stages[at + "resources"].append(resources_seconds)
    stages[at + "snapshot"].append(snapshot_seconds)
    stages[at + "full"].append(plan_seconds + resources_seconds + snapshot_seconds)
    return snapshot


def report(label: str, figures: Figures, resources: int, repeat: int) -> None:
    built, reused = figures.counts
    ms = {stage: figures.median(stage) * 1000 for stage in figures.stages}
    fastest = min(figures.stages["full"]) * 1000
    print(
        f"  {label:<5} full build {ms['full']:8.1f} ms (fastest {fastest:7.1f}) = plan {ms['plan']:5.1f}"
        f" + resources {ms['resources']:7.1f} + snapshot {ms['snapshot']:5.1f};"
        f" {resources / figures.full:9,.0f} resources/s (median of {repeat})"
    )
    print(
        f"        one broker IP change {ms['change full']:7.1f} ms = plan {ms['change plan']:5.1f}"
        f" + resources {ms['change resources']:7.1f} + snapshot {ms['change snapshot']:5.1f}"
        f" ({ms['change full'] / ms['full']:.1%} of the full build); last builder built {built},"
        f" reused {reused}"
    )


def sotw_responses(snapshot: Snapshot) -> None:
    for type_url in TYPE_ORDER:
        resources = snapshot.resources(type_url).values()
        response = DiscoveryResponse(
            version_info=snapshot.version(type_url),
            resources=[
                AnyMessage(type_url=resource.type_url, value=resource.payload) for resource in resources
            ],
            type_url=type_url,
            nonce="1",
        )
        encode_seconds, encoded = timed(bytes, response)
        print(
            f"full SotW {SHORT_TYPE_NAMES[type_url]:>9} response: {len(encoded):8d} bytes, "
            f"encoded once per version in {encode_seconds * 1000:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clusters", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--brokers", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5, help="repeats of the fast path")
    parser.add_argument("--typed-repeat", type=int, default=1, help="repeats of the typed path (0: skip)")
    args = parser.parse_args()
    last: Snapshot | None = None
    for clusters in args.clusters:
        config = make_config(clusters)
        resources = clusters * args.brokers * 3
        print(f"{clusters} clusters x {args.brokers} brokers ({resources} resources)")
        fast = measure(config, args.brokers, ENCODERS, args.repeat)
        if args.typed_repeat > 0:
            typed = measure(config, args.brokers, TYPED_ENCODERS, args.typed_repeat)
            report("typed", typed, resources, args.typed_repeat)
        report("fast", fast, resources, args.repeat)
        if args.typed_repeat > 0:
            speedup = typed.median("resources") / fast.median("resources")
            print(
                f"        fast path: full build x{typed.full / fast.full:.0f}, resources stage x{speedup:.0f}"
            )
        last = fast.snapshot
    if last is not None:
        sotw_responses(last)


if __name__ == "__main__":
    main()
