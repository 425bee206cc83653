"""What `kafka-xds placement` found, as values the text and the JSON both render: per cluster a
report (and the plan written) or why it could not be asked, and the groupings both show."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from xds.health.dimensions import Placement
from xds.health.placement import Report, Rule, Violation
from xds.health.planner import Move, Plan
from xds.health.state import ClusterState, PartitionId

__all__ = [
    "CLIENT_PROPERTIES",
    "EXAMPLES",
    "RULE_ORDER",
    "ClusterAnswer",
    "ClusterReport",
    "PlanFiles",
    "Unreachable",
    "cell_brokers",
    "id_ranges",
    "leader_changes",
    "violation_groups",
]

CLIENT_PROPERTIES = "client.properties"  # the --command-config placeholder the operator fills in
EXAMPLES = 3  # partitions named per row of the violations table
RULE_ORDER = {rule: index for index, rule in enumerate(Rule)}


@dataclass(frozen=True, slots=True)
class PlanFiles:
    """A plan as written: one file per batch (one file without batches), the commands that apply
    each (argv lists, never run here), and what the plan leaves alone on drained brokers."""

    plan: Plan
    batches: tuple[tuple[Move, ...], ...]
    files: tuple[Path, ...]
    commands: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]  # per file: (execute, verify)
    batch_size: int | None
    outside_topics: tuple[PartitionId, ...]  # not selected, still holding a drained replica
    stale_files: tuple[Path, ...]  # batch files of an earlier, longer plan beside these


@dataclass(frozen=True, slots=True)
class ClusterReport:
    """One cluster asked: its partitions reported (the --topics selection), where its brokers are,
    the report, who answered, and the plan written (with --plan)."""

    cluster: str
    state: ClusterState
    placement: Placement
    report: Report
    answered_by: str
    elapsed_seconds: float
    warnings: tuple[str, ...] = ()
    topics: tuple[str, ...] | None = None  # the --topics selection, None for every topic
    plan: PlanFiles | None = None


@dataclass(frozen=True, slots=True)
class Unreachable:
    """One cluster no server of answered: (server, problem) for each, and whether time ran out."""

    cluster: str
    problems: tuple[tuple[str, str], ...]
    timed_out: bool


ClusterAnswer = ClusterReport | Unreachable


def id_ranges(ids: Iterable[int]) -> str:
    """`1-3,5`: sorted ids with runs shortened."""
    ordered = sorted(set(ids))
    parts: list[str] = []
    start = previous = None
    for value in [*ordered, None]:
        if value is not None and previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None and previous is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = value
    return ",".join(parts)


def leader_changes(plan: Plan, state: ClusterState) -> int:
    """Moves after which the partition's preferred leader is not its current leader (`state`
    holds at least the moved partitions)."""
    leaders = {p.id: p.leader for p in state.partitions}
    return sum(1 for move in plan.moves if move.after[0] != leaders.get(move.partition))


def violation_groups(
    violations: Iterable[Violation],
) -> dict[tuple[str, Rule, str | None], list[PartitionId]]:
    groups: dict[tuple[str, Rule, str | None], list[PartitionId]] = defaultdict(list)
    for v in violations:
        groups[(v.partition.topic, v.rule, v.dimension)].append(v.partition)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], RULE_ORDER[item[0][1]], item[0][2] or ""))
    return {key: sorted(set(pids)) for key, pids in ordered}


def cell_brokers(placement: Placement, two: bool) -> Mapping[tuple[str, str], list[int]]:
    cells: dict[tuple[str, str], list[int]] = defaultdict(list)
    for broker, location in placement.located.items():
        cells[(location[0], location[1] if two else "")].append(broker)
    return cells
