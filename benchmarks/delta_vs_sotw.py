"""Responses and bytes per sidecar for one change, state of the world vs incremental (Delta) ADS.

    .venv/bin/python -m benchmarks.delta_vs_sotw [--clusters 3] [--brokers 100]

Drives the server's protocol state machine (the code every stream runs) with sidecars that answer
like Envoy: CDS wildcard, EDS by name, LDS wildcard, every response ACKed. For each change it prints
how many responses and bytes one sidecar receives, and how many resources they carry. Exact
counts, not timings: the encoded bodies are the bytes the gRPC transport sends (plus 5 bytes of gRPC
framing per message and HTTP/2 frame headers).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tests.support.protocol_world import (
    DeltaSidecar,
    SotwSidecar,
    World,
    delta_stream,
    responses,
    sotw_stream,
)
from tests.support.xds_wire import Decoded, sotw_request
from xds.serving.protocol import Views
from xds.shared.resource_types import ENDPOINT_TYPE

Brokers = dict[str, dict[int, str | None]]


def _topology(clusters: int, brokers: int) -> Brokers:
    return {
        f"kafka-{index}": {
            broker: f"10.{index}.{broker // 250}.{broker % 250 + 1}" for broker in range(1, brokers + 1)
        }
        for index in range(clusters)
    }


def _views(world: World, topology: Brokers) -> Views:
    first, *rest = topology
    return world.views(topology[first], cluster=first, extra={name: topology[name] for name in rest})


def _measure(
    variant: str, topology: Brokers, change: Callable[[Brokers], Brokers]
) -> tuple[list[Decoded], int]:
    world = World()
    views = _views(world, topology)
    sidecar: SotwSidecar | DeltaSidecar
    sidecar = SotwSidecar(sotw_stream(), views) if variant == "sotw" else DeltaSidecar(delta_stream(), views)
    sidecar.connect()
    initial = sum(len(response.raw) for response in sidecar.log)
    return sidecar.publish(_views(world, change(topology))), initial


def _moved(topology: Brokers) -> Brokers:
    changed = {name: dict(brokers) for name, brokers in topology.items()}
    first = next(iter(changed))
    changed[first][1] = "10.250.0.1"
    return changed


def _added(topology: Brokers) -> Brokers:
    changed = {name: dict(brokers) for name, brokers in topology.items()}
    first = next(iter(changed))
    changed[first][max(changed[first]) + 1] = "10.250.0.2"
    return changed


def _unchanged(topology: Brokers) -> Brokers:
    return topology


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--brokers", type=int, default=100)
    args = parser.parse_args()
    topology = _topology(args.clusters, args.brokers)
    total = args.clusters * args.brokers
    print(f"{args.clusters} clusters x {args.brokers} brokers ({total} listeners, clusters, assignments)")
    print(f"{'change':<28}{'variant':<8}{'responses':>10}{'resources':>11}{'bytes':>11}   by type")
    for label, change in (("one broker moves", _moved), ("one broker added", _added)):
        for variant in ("sotw", "delta"):
            sent, _ = _measure(variant, topology, change)
            resources = sum(len(response.names) + len(response.removed) for response in sent)
            size = sum(len(response.raw) for response in sent)
            by_type = ", ".join(
                f"{response.type_url.rsplit('.', 1)[-1]}:{len(response.names)}+{len(response.removed)}"
                for response in sent
            )
            print(f"{label:<28}{variant:<8}{len(sent):>10}{resources:>11}{size:>11}   {by_type}")
    for variant in ("sotw", "delta"):
        _, initial = _measure(variant, topology, _unchanged)
        print(f"{'initial sync':<28}{variant:<8}{'':>10}{'':>11}{initial:>11}")
    # Before endpoint subsets, every SotW endpoint response carried the whole subscribed set.
    views = _views(World(), topology)
    names = sorted(views.snapshot.resources(ENDPOINT_TYPE))
    (whole,) = responses(sotw_stream().receive(sotw_request(ENDPOINT_TYPE, names), views, 0.0))
    print(f"{'one broker moves (whole set)':<28}{'sotw':<8}{1:>10}{len(whole.names):>11}{len(whole.raw):>11}")


if __name__ == "__main__":
    main()
