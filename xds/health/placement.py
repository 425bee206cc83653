"""Replica placement rules over a cluster's dimensions, and a report of where they fail.

Per partition, for every dimension (e.g. Kubernetes cluster, zone):

- `spread`: replicas spread evenly over the dimension's values present in the cluster (counts
  differ by at most one, so every value holds a replica once RF reaches the number of values);
- `dimension-loss`: losing any one value still leaves `min.insync.replicas` replicas;
- `isr-at-risk`: the same question for the in-sync replicas right now (a moment's state, which
  no reassignment changes);

and once per partition: `duplicate-broker` (two replicas on one broker), `unplaced-replica` (a
replica on a broker nothing places, or one the cluster does not know) and `drained-replica` (a
replica on a broker being drained, when a migration names some). Replicas whose place is unknown
never count as survivors. The rules are pure functions of `ClusterState` and `Placement`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from xds.health.dimensions import Location, Placement
from xds.health.state import ClusterState, PartitionId, PartitionState


class Rule(StrEnum):
    SPREAD = "spread"
    DIMENSION_LOSS = "dimension-loss"
    ISR_AT_RISK = "isr-at-risk"
    DUPLICATE_BROKER = "duplicate-broker"
    UNPLACED_REPLICA = "unplaced-replica"
    DRAINED_REPLICA = "drained-replica"


@dataclass(frozen=True, slots=True, order=True)
class Violation:
    """One rule one partition breaks; `dimension` is None for the per-partition rules."""

    partition: PartitionId
    rule: Rule
    dimension: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Rules:
    """The rules bound to one cluster's placement: who is where, and each dimension's values.

    `drained` brokers are treated as gone: their values leave the domain (unless other brokers
    share them) and replicas on them break `drained-replica`. `isr=False` skips `isr-at-risk`,
    for checking an assignment that does not exist yet.
    """

    dimensions: tuple[str, ...]
    located: Mapping[int, Location]
    domain: tuple[tuple[str, ...], ...]
    drained: frozenset[int]

    @classmethod
    def create(cls, placement: Placement, drained: Collection[int] = ()) -> Rules:
        gone = frozenset(drained)
        domain = tuple(placement.values(name, gone) for name in placement.dimensions)
        return cls(placement.dimensions, placement.located, domain, gone)

    def check(self, partition: PartitionState, min_isr: int, *, isr: bool = True) -> list[Violation]:
        found: list[Violation] = []
        pid = partition.id

        def add(rule: Rule, dimension: str | None, detail: str) -> None:
            found.append(Violation(pid, rule, dimension, detail))

        distinct = tuple(dict.fromkeys(partition.replicas))
        if len(distinct) < len(partition.replicas):
            twice = sorted(b for b, n in Counter(partition.replicas).items() if n > 1)
            add(Rule.DUPLICATE_BROKER, None, f"brokers {twice} hold more than one replica")
        unplaced = [b for b in distinct if b not in self.located]
        if unplaced:
            add(Rule.UNPLACED_REPLICA, None, f"replicas on brokers without a placement: {unplaced}")
        drained = [b for b in distinct if b in self.drained and b in self.located]
        if drained:
            add(Rule.DRAINED_REPLICA, None, f"replicas on drained brokers: {drained}")
        placed = [self.located[b] for b in distinct if b in self.located and b not in self.drained]
        in_sync = [self.located[b] for b in dict.fromkeys(partition.isr) if b in self.located]
        for index, name in enumerate(self.dimensions):
            values = self.domain[index]
            if not values:
                continue
            counts = Counter(location[index] for location in placed)
            per_value = [counts.get(value, 0) for value in values]
            if max(per_value) - min(per_value) > 1:
                shown = ", ".join(f"{v}={c}" for v, c in zip(values, per_value, strict=True))
                add(Rule.SPREAD, name, f"replicas per {name}: {shown}")
            heaviest = max(values, key=lambda value: counts.get(value, 0))
            survivors = len(placed) - counts.get(heaviest, 0)
            if survivors < min_isr:
                add(
                    Rule.DIMENSION_LOSS,
                    name,
                    f"losing {name}={heaviest} leaves {survivors} replicas < min.insync.replicas {min_isr}",
                )
            if isr:
                sync_counts = Counter(location[index] for location in in_sync)
                lost = max([*sync_counts.values(), 0])
                if len(in_sync) - lost < min_isr:
                    where = max(sync_counts, key=sync_counts.__getitem__) if sync_counts else values[0]
                    add(
                        Rule.ISR_AT_RISK,
                        name,
                        f"losing {name}={where} leaves {len(in_sync) - lost} in-sync replicas "
                        f"< min.insync.replicas {min_isr} (ISR {list(partition.isr)})",
                    )
        return found


def check(state: ClusterState, placement: Placement, drained: Collection[int] = ()) -> tuple[Violation, ...]:
    """Every rule every partition of `state` breaks, sorted by partition then rule."""
    rules = Rules.create(placement, drained)
    found: list[Violation] = []
    for partition in state.partitions:
        found.extend(rules.check(partition, state.min_isr(partition.id.topic)))
    return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class CellCount:
    """One cell of the matrix: brokers placed there, replicas they hold and leaders among them."""

    brokers: int
    replicas: int
    leaders: int


@dataclass(frozen=True, slots=True)
class Matrix:
    """Replicas and leaders per cell of the first two dimensions (one column when there is one)."""

    rows: str
    columns: str | None
    row_values: tuple[str, ...]
    column_values: tuple[str, ...]
    cells: Mapping[tuple[str, str], CellCount]


@dataclass(frozen=True, slots=True)
class Report:
    """A cluster's placement at a glance: what breaks, where, and how the load sits per cell.

    `unplaced_hosting` maps each broker without a placement that holds replicas (including brokers
    the cluster does not know) to how many; `worst` lists the partitions with the most violations.
    """

    cluster: str
    dimensions: tuple[str, ...]
    violations: tuple[Violation, ...]
    by_rule: Mapping[Rule, int]
    by_topic: Mapping[str, Mapping[Rule, int]]
    worst: tuple[tuple[PartitionId, int], ...]
    unplaced_hosting: Mapping[int, int]
    matrix: Matrix


def report(state: ClusterState, placement: Placement, *, worst: int = 10) -> Report:
    """Check `state` and summarise: counts by rule and topic, the `worst` partitions, the matrix."""
    violations = check(state, placement)
    by_rule = Counter(v.rule for v in violations)
    topics: dict[str, Counter[Rule]] = {}
    for v in violations:
        topics.setdefault(v.partition.topic, Counter())[v.rule] += 1
    per_partition = Counter(v.partition for v in violations)
    ranked = sorted(per_partition.items(), key=lambda item: (-item[1], item[0]))[:worst]
    hosting: Counter[int] = Counter()
    for partition in state.partitions:
        hosting.update(b for b in set(partition.replicas) if b not in placement.located)
    return Report(
        state.cluster,
        placement.dimensions,
        violations,
        MappingProxyType({rule: by_rule[rule] for rule in Rule if by_rule[rule]}),
        MappingProxyType({t: MappingProxyType(dict(c)) for t, c in sorted(topics.items())}),
        tuple(ranked),
        MappingProxyType(dict(sorted(hosting.items()))),
        _matrix(state.partitions, placement),
    )


def _matrix(partitions: Sequence[PartitionState], placement: Placement) -> Matrix:
    names = placement.dimensions
    rows = names[0]
    columns = names[1] if len(names) > 1 else None

    def cell(location: Location) -> tuple[str, str]:
        return (location[0], location[1] if columns is not None else "")

    brokers = Counter(cell(location) for location in placement.located.values())
    replicas: Counter[tuple[str, str]] = Counter()
    leaders: Counter[tuple[str, str]] = Counter()
    for partition in partitions:
        replicas.update(_cells(set(partition.replicas), placement.located, cell))
        if partition.has_leader and partition.leader in placement.located:
            leaders[cell(placement.located[partition.leader])] += 1
    keys = sorted(set(brokers) | set(replicas))
    return Matrix(
        rows,
        columns,
        tuple(sorted({row for row, _ in keys})),
        tuple(sorted({column for _, column in keys})),
        MappingProxyType({key: CellCount(brokers[key], replicas[key], leaders[key]) for key in keys}),
    )


def _cells(
    brokers: Iterable[int], located: Mapping[int, Location], cell: Callable[[Location], tuple[str, str]]
) -> Iterable[tuple[str, str]]:
    return (cell(located[b]) for b in brokers if b in located)
