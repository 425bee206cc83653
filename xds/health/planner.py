"""A reassignment plan that makes a cluster's placement follow the rules, in Kafka's own format.

Each partition is planned on its own, against broker loads the plan keeps up to date. A partition
breaking no rule the plan can fix is left alone. For the others the planner works per *cell* (one
combination of dimension values, e.g. `k8s-1`/`az-a`): it enumerates the replica counts per cell
that spread every dimension evenly within the brokers each cell has (cached per RF and capacity),
keeps the count vector that keeps the most current replicas (then the one keeping the leader and
the preferred leader, then the one adding to the least loaded cells), keeps the leader and the
least loaded brokers inside each cell, and fills each gap with the least loaded eligible broker of
the cell. Fewest moves first, balance second: it never moves a replica only to even out load.

What no move can fix is returned with the reason (a zone without enough brokers, an RF too small
to survive losing a Kubernetes cluster, in-sync replicas lagging now).

Migration: `Drain` names brokers to empty (ids, a rack regex, dimension values); their replicas
move, nothing moves onto them, and the dimension values only they carry leave the rules' domain.
`Plan.batches` cuts the moves into reassignments of at most a given number of replica moves (or of
partitions). Each partition moves straight from its current replicas to its planned ones, which
keep the rules and its replica count, so a batch never leaves a partition worse than it was or
below its RF (Kafka adds the new replicas before it removes the old).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from xds.health.dimensions import Location, Placement
from xds.health.placement import Rule, Rules, Violation
from xds.health.state import ClusterState, PartitionId, PartitionState

REASSIGNMENT_VERSION = 1  # the version of kafka-reassign-partitions' JSON
ANY_LOG_DIR = "any"
# Above this many cells (distinct combinations of dimension values) the exhaustive search over
# replica counts per cell grows too large; the planner then improves the current counts one swap
# at a time instead, which may leave a fixable spread unfixed (reported as unfixable).
MAX_ENUMERATED_CELLS = 16


@dataclass(frozen=True, slots=True)
class Drain:
    """Brokers to empty: the union of `broker_ids`, brokers whose rack fully matches `rack_pattern`
    and brokers located at all of `dimension_values` (e.g. {"cluster": "ec2"})."""

    broker_ids: frozenset[int] = frozenset()
    rack_pattern: str | None = None
    dimension_values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.broker_ids and self.rack_pattern is None and not self.dimension_values:
            raise ValueError("a drain needs broker ids, a rack pattern or dimension values")
        if self.rack_pattern is not None:
            try:
                re.compile(self.rack_pattern)
            except re.error as error:
                raise ValueError(
                    f"drain rack pattern {self.rack_pattern!r} does not compile: {error}"
                ) from None
        object.__setattr__(self, "broker_ids", frozenset(self.broker_ids))
        object.__setattr__(self, "dimension_values", MappingProxyType(dict(self.dimension_values)))

    def select(self, state: ClusterState, placement: Placement) -> frozenset[int]:
        unknown = sorted(set(self.dimension_values) - set(placement.dimensions))
        if unknown:
            raise ValueError(
                f"drain names dimensions {unknown}; the cluster has {list(placement.dimensions)}"
            )
        chosen = set(self.broker_ids)
        if self.rack_pattern is not None:
            pattern = re.compile(self.rack_pattern)
            chosen.update(
                b.broker_id
                for b in state.brokers.values()
                if b.rack is not None and pattern.fullmatch(b.rack)
            )
        if self.dimension_values:
            wanted = [(placement.dimensions.index(d), v) for d, v in self.dimension_values.items()]
            chosen.update(b for b, loc in placement.located.items() if all(loc[i] == v for i, v in wanted))
        return frozenset(chosen)


@dataclass(frozen=True, slots=True)
class Move:
    """One partition's reassignment. `after` keeps `before`'s length (its RF)."""

    partition: PartitionId
    before: tuple[int, ...]
    after: tuple[int, ...]

    @property
    def replica_moves(self) -> int:
        """Replicas created on brokers that did not hold one: the data the move copies."""
        return len(set(self.after) - set(self.before))


@dataclass(frozen=True, slots=True)
class Unfixable:
    violation: Violation
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The moves that fix a cluster's placement, and what they cannot fix."""

    cluster: str
    moves: tuple[Move, ...]
    unfixable: tuple[Unfixable, ...]
    drained: frozenset[int] = frozenset()

    @property
    def replica_moves(self) -> int:
        return sum(move.replica_moves for move in self.moves)

    def reassignment(self, *, log_dirs: bool = True) -> dict[str, Any]:
        """All moves as one kafka-reassign-partitions `--reassignment-json-file` document."""
        return reassignment(self.moves, log_dirs=log_dirs)

    def batches(self, size: int, *, partitions: bool = False) -> tuple[tuple[Move, ...], ...]:
        """The moves in order, cut into batches of at most `size` replica moves (`partitions`: of
        at most `size` partitions); a partition is never split, so one needing more than `size`
        replica moves is a batch of its own."""
        if size < 1:
            raise ValueError(f"batch size must be at least 1, not {size}")
        batches: list[tuple[Move, ...]] = []
        current: list[Move] = []
        weight = 0
        for move in self.moves:
            cost = 1 if partitions else move.replica_moves
            if current and weight + cost > size:
                batches.append(tuple(current))
                current, weight = [], 0
            current.append(move)
            weight += cost
        if current:
            batches.append(tuple(current))
        return tuple(batches)


def reassignment(moves: Collection[Move], *, log_dirs: bool = True) -> dict[str, Any]:
    """Kafka's reassignment JSON: {"version":1,"partitions":[{"topic","partition","replicas",
    "log_dirs"}]}; `log_dirs` (optional for Kafka) is "any" per replica."""
    partitions = []
    for move in moves:
        entry: dict[str, Any] = {
            "topic": move.partition.topic,
            "partition": move.partition.partition,
            "replicas": list(move.after),
        }
        if log_dirs:
            entry["log_dirs"] = [ANY_LOG_DIR] * len(move.after)
        partitions.append(entry)
    return {"version": REASSIGNMENT_VERSION, "partitions": partitions}


def parse_reassignment(document: str | Mapping[str, Any]) -> dict[PartitionId, tuple[int, ...]]:
    """Read Kafka's reassignment JSON back: partition → replicas (checks version and log_dirs)."""
    data = json.loads(document) if isinstance(document, str) else document
    if data.get("version") != REASSIGNMENT_VERSION:
        raise ValueError(f"reassignment version {data.get('version')!r}; expected {REASSIGNMENT_VERSION}")
    found: dict[PartitionId, tuple[int, ...]] = {}
    for entry in data["partitions"]:
        replicas = tuple(int(b) for b in entry["replicas"])
        dirs = entry.get("log_dirs")
        if dirs is not None and len(dirs) != len(replicas):
            raise ValueError(f"{entry['topic']}-{entry['partition']}: log_dirs and replicas differ in length")
        found[PartitionId(str(entry["topic"]), int(entry["partition"]))] = replicas
    return found


def apply(state: ClusterState, moves: Collection[Move]) -> ClusterState:
    """`state` once the moves completed: new replicas, all in sync, the leader kept when it stays."""
    after = {move.partition: move.after for move in moves}
    partitions = []
    for partition in state.partitions:
        replicas = after.get(partition.id)
        if replicas is None:
            partitions.append(partition)
            continue
        leader = partition.leader if partition.leader in replicas else replicas[0]
        partitions.append(
            replace(partition, leader=leader, replicas=replicas, isr=replicas, offline_replicas=())
        )
    return replace(state, partitions=tuple(partitions))


def plan(
    state: ClusterState,
    placement: Placement,
    *,
    drain: Drain | None = None,
    topics: Collection[str] | None = None,
) -> Plan:
    """Plan the fewest replica moves that fix every fixable violation of the partitions of `topics`
    (all when None), draining `drain`'s brokers; partitions of other topics stay as they are."""
    drained = drain.select(state, placement) if drain is not None else frozenset()
    planner = _Planner(state, placement, drained)
    wanted = None if topics is None else frozenset(topics)
    moves: list[Move] = []
    unfixable: list[Unfixable] = []
    for partition in state.partitions:
        if wanted is not None and partition.id.topic not in wanted:
            continue
        move, left = planner.partition(partition)
        if move is not None:
            moves.append(move)
        unfixable.extend(left)
    return Plan(state.cluster, tuple(moves), tuple(unfixable), drained)


Vector = tuple[int, ...]  # replicas per cell


class _Planner:
    """The per-cluster context of one plan: cells, eligible brokers per cell, loads, caches."""

    def __init__(self, state: ClusterState, placement: Placement, drained: frozenset[int]) -> None:
        self.state = state
        self.rules = Rules.create(placement, drained)
        self.keepable = {b: loc for b, loc in placement.located.items() if b not in drained}
        self.cells: tuple[Location, ...] = tuple(sorted(set(self.keepable.values())))
        index = {cell: i for i, cell in enumerate(self.cells)}
        self.cell_of = {b: index[loc] for b, loc in self.keepable.items()}
        fenced = {b for b, broker in state.brokers.items() if broker.fenced}
        self.fenced = frozenset(fenced)
        self.targets: list[list[int]] = [[] for _ in self.cells]
        for b in sorted(self.keepable):
            if b in state.brokers and b not in fenced:
                self.targets[self.cell_of[b]].append(b)
        # per cell, per dimension: the index of the cell's value in that dimension's domain
        self.value_index = tuple(
            tuple(self.rules.domain[d].index(cell[d]) for d in range(len(cell))) for cell in self.cells
        )
        self.load: Counter[int] = Counter()
        for partition in state.partitions:
            self.load.update(set(partition.replicas))
        self._feasible: dict[tuple[int, Vector], tuple[Vector, ...]] = {}
        self._best: dict[tuple[int, Vector, Vector, int, int], tuple[Vector, ...]] = {}

    def partition(self, partition: PartitionState) -> tuple[Move | None, list[Unfixable]]:
        min_isr = self.state.min_isr(partition.id.topic)
        now = self.rules.check(partition, min_isr)
        behind = set(partition.isr) != set(partition.replicas)  # else the placement is the cause
        lagging = [Unfixable(v, _LAGGING) for v in now if v.rule is Rule.ISR_AT_RISK and behind]
        if all(v.rule is Rule.ISR_AT_RISK for v in now):
            return None, lagging
        after = self._assign(partition)
        move = None
        if after is not None and after != partition.replicas:
            move = Move(partition.id, partition.replicas, after)
            for b in set(partition.replicas) - set(after):
                self.load[b] -= 1
            for b in set(after) - set(partition.replicas):
                self.load[b] += 1
        planned = replace(partition, replicas=after or partition.replicas)
        left = self.rules.check(planned, min_isr, isr=False)
        return move, lagging + [Unfixable(v, self._reason(v, planned, min_isr)) for v in left]

    def _assign(self, partition: PartitionState) -> tuple[int, ...] | None:
        replicas = partition.replicas
        rf = len(replicas)
        if not rf:
            return None
        keep_order = list(dict.fromkeys(b for b in replicas if b in self.keepable))
        caps = [len(t) for t in self.targets]
        for b in keep_order:
            if b in self.fenced or b not in self.state.brokers:
                caps[self.cell_of[b]] += 1
        if sum(caps) < rf:
            return None
        current = [0] * len(self.cells)
        for b in keep_order:
            current[self.cell_of[b]] += 1
        leader = partition.leader if partition.has_leader and partition.leader in replicas else replicas[0]
        leader_cell = self.cell_of.get(leader, -1)
        preferred_cell = self.cell_of.get(replicas[0], -1)
        cap_vector, cur_vector = tuple(caps), tuple(current)
        key = (rf, cap_vector, cur_vector, leader_cell, preferred_cell)
        ties = self._best.get(key)
        if ties is None:
            ties = self._best[key] = self._choose(rf, cap_vector, cur_vector, leader_cell, preferred_cell)
        target = min(ties, key=lambda vector: (self._added_load(vector, cur_vector), vector))
        return self._fill(partition, keep_order, leader, target)

    def _choose(
        self, rf: int, caps: Vector, current: Vector, leader_cell: int, preferred_cell: int
    ) -> tuple[Vector, ...]:
        feasible = self._feasible.get((rf, caps))
        if feasible is None:
            enumerable = len(self.cells) <= MAX_ENUMERATED_CELLS
            feasible = self._feasible[(rf, caps)] = tuple(self._enumerate(rf, caps)) if enumerable else ()
        if not feasible:
            return (self._fallback(rf, caps, current),)

        def score(vector: Vector) -> tuple[int, int, int, int]:
            kept = sum(min(c, t) for c, t in zip(current, vector, strict=True))
            keeps_leader = leader_cell >= 0 and vector[leader_cell] > 0 and current[leader_cell] > 0
            keeps_preferred = (
                preferred_cell >= 0 and vector[preferred_cell] > 0 and current[preferred_cell] > 0
            )
            return (-kept, -keeps_leader, -keeps_preferred, max(vector))

        best = min(score(vector) for vector in feasible)
        return tuple(vector for vector in feasible if score(vector) == best)

    def _enumerate(self, rf: int, caps: Vector) -> Iterator[Vector]:
        """Every replica-count vector over cells, within capacity, spreading each dimension evenly."""
        domain = self.rules.domain
        sizes = [len(values) for values in domain]
        low = [rf // k for k in sizes]
        high = [-(-rf // k) for k in sizes]
        at_high_max = [rf % k if rf % k else k for k in sizes]
        counts = [[0] * k for k in sizes]
        at_high = [0] * len(sizes)
        vector = [0] * len(self.cells)

        def walk(cell: int, left: int) -> Iterator[Vector]:
            if cell == len(self.cells):
                if left == 0 and all(min(c) >= lo for c, lo in zip(counts, low, strict=True)):
                    yield tuple(vector)
                return
            for take in range(min(caps[cell], left), -1, -1):
                ok = True
                for d, v in enumerate(self.value_index[cell]):
                    count = counts[d][v] + take
                    if count > high[d] or (
                        take and count == high[d] and counts[d][v] < high[d] and at_high[d] >= at_high_max[d]
                    ):
                        ok = False
                        break
                if not ok:
                    continue
                for d, v in enumerate(self.value_index[cell]):
                    if take and counts[d][v] < high[d] <= counts[d][v] + take:
                        at_high[d] += 1
                    counts[d][v] += take
                vector[cell] = take
                yield from walk(cell + 1, left - take)
                vector[cell] = 0
                for d, v in enumerate(self.value_index[cell]):
                    counts[d][v] -= take
                    if take and counts[d][v] < high[d] <= counts[d][v] + take:
                        at_high[d] -= 1

        return walk(0, rf)

    def _fallback(self, rf: int, caps: Vector, current: Vector) -> Vector:
        """No even spread fits the cells' capacity: from the current counts, fill up and then swap
        one replica at a time while that lowers the total unevenness."""
        vector = list(current)
        while sum(vector) < rf:
            room = [c for c in range(len(vector)) if vector[c] < caps[c]]
            vector[min(room, key=lambda c: self._unevenness(vector, c, +1))] += 1
        best = self._unevenness(vector)
        for _ in range(rf * len(vector)):
            options = [
                (self._unevenness(vector, add, +1, remove), remove, add)
                for remove in range(len(vector))
                if vector[remove]
                for add in range(len(vector))
                if add != remove and vector[add] < caps[add]
            ]
            if not options:
                break
            score, remove, add = min(options)
            if score >= best:
                break
            vector[remove] -= 1
            vector[add] += 1
            best = score
        return tuple(vector)

    def _unevenness(self, vector: list[int], add: int = -1, step: int = 0, remove: int = -1) -> int:
        trial = list(vector)
        if add >= 0:
            trial[add] += step
        if remove >= 0:
            trial[remove] -= 1
        total = 0
        for d, values in enumerate(self.rules.domain):
            counts = [0] * len(values)
            for cell, n in enumerate(trial):
                counts[self.value_index[cell][d]] += n
            total += max(counts) - min(counts)
        return total

    def _added_load(self, vector: Vector, current: Vector) -> float:
        total = 0.0
        for cell, (target, now) in enumerate(zip(vector, current, strict=True)):
            if target > now and self.targets[cell]:
                total += (
                    (target - now) * sum(self.load[b] for b in self.targets[cell]) / len(self.targets[cell])
                )
        return total

    def _fill(
        self, partition: PartitionState, keep_order: list[int], leader: int, target: Vector
    ) -> tuple[int, ...]:
        """Keep per cell the leader, the preferred leader, then the least loaded; fill the gaps."""
        replicas = partition.replicas
        by_cell: dict[int, list[int]] = {}
        for b in keep_order:
            by_cell.setdefault(self.cell_of[b], []).append(b)
        kept: set[int] = set()
        for cell, members in by_cell.items():
            members.sort(key=lambda b: (b != leader, b != replicas[0], self.load[b], b))
            kept.update(members[: target[cell]])
        adding: list[int] = []
        for cell, want in enumerate(target):
            missing = want - len(by_cell.get(cell, ())) if want > len(by_cell.get(cell, ())) else 0
            if missing:
                free = [b for b in self.targets[cell] if b not in kept and b not in replicas]
                free.sort(key=lambda b: (self.load[b], b))
                adding.extend(free[:missing])
        fresh = iter(adding)
        after: list[int] = []
        seen: set[int] = set()
        for b in replicas:
            if b in kept and b not in seen:
                after.append(b)
                seen.add(b)
            else:
                after.append(next(fresh))
        if after[0] != leader and leader in kept and replicas[0] not in kept:
            after.remove(leader)
            after.insert(0, leader)
        return tuple(after)

    def _reason(self, violation: Violation, planned: PartitionState, min_isr: int) -> str:
        rf = len(planned.replicas)
        eligible = sum(len(t) for t in self.targets)
        if violation.rule in (Rule.DUPLICATE_BROKER, Rule.UNPLACED_REPLICA, Rule.DRAINED_REPLICA):
            if eligible < rf:
                return f"RF {rf} needs {rf} brokers; only {eligible} are placed, not drained and not fenced"
            return "no assignment within the eligible brokers fixes it"
        assert violation.dimension is not None
        d = self.rules.dimensions.index(violation.dimension)
        values = self.rules.domain[d]
        high = -(-rf // len(values))
        if violation.rule is Rule.DIMENSION_LOSS and rf - high < min_isr:
            return (
                f"RF {rf} over {len(values)} values of {violation.dimension} puts {high} replicas on one "
                f"at best; losing it leaves {rf - high} < min.insync.replicas {min_isr}: "
                "raise RF or add values"
            )
        per_value = Counter({value: 0 for value in values})
        for cell, targets in zip(self.cells, self.targets, strict=True):
            per_value[cell[d]] += len(targets)
        shown = ", ".join(f"{v}={n}" for v, n in sorted(per_value.items()))
        return (
            f"no assignment of RF {rf} spreads {violation.dimension} evenly over the brokers there "
            f"(eligible brokers per {violation.dimension}: {shown}; combined with the other dimensions)"
        )


_LAGGING = "in-sync replicas lag now; no reassignment brings them in sync: wait for them to catch up"
