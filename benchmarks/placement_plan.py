"""Placement planning cost on a stretched cluster: 2 Kubernetes clusters x 3 zones.

Builds a cluster of `--brokers` brokers (racks `k8s-<c>.az-<z>`, spread round-robin over the six
cells) and `--partitions` partitions of RF `--rf`: most placed one replica per cell, a `--skewed`
share crowded into three cells (as a rack-unaware assignment leaves them). Prints the violations
found, the plan's size (partitions moved, replica moves) and the time to check and to plan, then the
same for a migration draining one zone of one Kubernetes cluster in batches. Figures only; nothing
here asserts a timing.

    .venv/bin/python -m benchmarks.placement_plan [--brokers 24] [--partitions 10000] [--rf 6]
        [--skewed 0.2] [--batch 500]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from xds.health.dimensions import DimensionSettings, place
from xds.health.placement import check
from xds.health.planner import Drain, Plan, apply, plan
from xds.health.state import BrokerState, ClusterState, PartitionId, PartitionState

PATTERN = r"(?P<cluster>[^.]+)\.(?P<zone>.+)"
CELLS = [(c, z) for c in ("k8s-1", "k8s-2") for z in ("az-a", "az-b", "az-c")]


def make_state(brokers: int, partitions: int, rf: int, skewed: float, seed: int = 7) -> ClusterState:
    rng = random.Random(seed)
    members = [
        BrokerState(b, f"{CELLS[b % len(CELLS)][0]}.{CELLS[b % len(CELLS)][1]}") for b in range(brokers)
    ]
    by_cell = [[b.broker_id for b in members if b.broker_id % len(CELLS) == i] for i in range(len(CELLS))]
    found = []
    for index in range(partitions):
        if rng.random() < skewed:
            pool = [b for cell in rng.sample(by_cell, 3) for b in cell]
            replicas = tuple(rng.sample(pool, rf))
        else:
            cells = rng.sample(range(len(CELLS)), len(CELLS))
            replicas = tuple(rng.choice(by_cell[cells[i % len(CELLS)]]) for i in range(rf))
            if len(set(replicas)) < rf:
                replicas = tuple(rng.sample([b.broker_id for b in members], rf))
        found.append(
            PartitionState(PartitionId(f"topic-{index % 50}", index // 50), replicas[0], replicas, replicas)
        )
    return ClusterState.create("bench", members, found, default_min_isr=3)


def spread(state: ClusterState, result: Plan | None = None) -> str:
    """Replicas per broker (min-max over brokers that may hold any), before or after `result`."""
    if result is not None:
        state = apply(state, result.moves)
    counts = Counter(b for p in state.partitions for b in p.replicas)
    held = [counts[b] for b in state.brokers if b not in (result.drained if result else ())]
    return f"replicas per broker {min(held)}-{max(held)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--brokers", type=int, default=24)
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--rf", type=int, default=6)
    parser.add_argument("--skewed", type=float, default=0.2)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    state = make_state(args.brokers, args.partitions, args.rf, args.skewed)
    placement = place(DimensionSettings(PATTERN), state.brokers.values())
    print(f"{args.brokers} brokers, {args.partitions} partitions, RF {args.rf}, {args.skewed:.0%} skewed")

    start = time.perf_counter()
    violations = check(state, placement)
    checked = time.perf_counter() - start
    print(f"before                 {spread(state)}")
    print(f"check     {checked * 1000:8.1f} ms   {len(violations)} violations")

    start = time.perf_counter()
    fix = plan(state, placement)
    planned = time.perf_counter() - start
    print(
        f"plan      {planned * 1000:8.1f} ms   {len(fix.moves)} partitions move, "
        f"{fix.replica_moves} replica moves, {len(fix.unfixable)} unfixable, {spread(state, fix)}"
    )

    start = time.perf_counter()
    drain = plan(state, placement, drain=Drain(dimension_values={"cluster": "k8s-2", "zone": "az-c"}))
    drained = time.perf_counter() - start
    batches = drain.batches(args.batch)
    print(
        f"migration {drained * 1000:8.1f} ms   drain {len(drain.drained)} brokers: {len(drain.moves)} "
        f"partitions move, {drain.replica_moves} replica moves in {len(batches)} batches of <= {args.batch}, "
        f"{len(drain.unfixable)} unfixable, {spread(state, drain)}"
    )


if __name__ == "__main__":
    main()
