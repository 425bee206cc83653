"""`kafka-xds placement`'s answer for a terminal of 100 columns: per cluster the brokers as a
matrix of the first two dimensions (replicas/leaders and broker ids per cell), unplaced brokers,
the violations per topic and rule with a few partitions named, the worst partitions with what each
breaks, and the plan with the commands that apply it."""

from __future__ import annotations

import shlex
import textwrap
from collections import defaultdict
from collections.abc import Sequence

from xds.health.dimensions import Placement
from xds.health.placement import Matrix, Report, Rule, Violation
from xds.health.placement_command.answer import (
    CLIENT_PROPERTIES,
    EXAMPLES,
    RULE_ORDER,
    ClusterAnswer,
    PlanFiles,
    Unreachable,
    cell_brokers,
    id_ranges,
    leader_changes,
    violation_groups,
)
from xds.health.planner import Unfixable
from xds.health.state import ClusterState, PartitionId

__all__ = ["WIDTH", "text"]

WIDTH = 100
_TABLE_ROWS = 40  # rows of the violations table before "... more"
_NAMED_TOPICS = 10  # topics of a --topics selection named in the plan


def text(answers: Sequence[ClusterAnswer]) -> str:
    """Every cluster's report (and plan), for a terminal of `WIDTH` columns."""
    return "\n".join(_cluster_text(answer) for answer in answers)


def _cluster_text(answer: ClusterAnswer) -> str:
    if isinstance(answer, Unreachable):
        why = "; ".join(f"{server}: {problem}" for server, problem in answer.problems) or "no server"
        return _wrap(f"{answer.cluster}: cluster unreachable ({why})", "", "  ") + "\n"
    state, placement, found = answer.state, answer.placement, answer.report
    selection = "" if answer.topics is None else " (selected by --topics)"
    counts = f"{_n(len(state.brokers), 'broker')}, {_n(len(state.topics), 'topic')}{selection}"
    asked = f"asked {answer.answered_by} ({answer.elapsed_seconds:.2f} s)"
    lines = [
        _wrap(f"{answer.cluster}: {counts}, {_n(len(state.partitions), 'partition')}; {asked}", "", "  ")
    ]
    lines += [_wrap(f"warning: {warning}", "  ", "    ") for warning in answer.warnings]
    lines += ["", *_matrix_lines(found.matrix, placement)]
    lines += _unplaced_lines(found, placement, state)
    lines += ["", *_violation_lines(found)]
    lines += _worst_lines(found, placement, state)
    if answer.plan is not None:
        lines += ["", *_plan_lines(answer.plan, state, answer.topics)]
    return "\n".join(lines) + "\n"


def _matrix_lines(matrix: Matrix, placement: Placement) -> list[str]:
    ids = cell_brokers(placement, matrix.columns is not None)
    two = matrix.columns is not None
    corner = f"{matrix.rows} \\ {matrix.columns}" if two else matrix.rows
    columns = list(matrix.column_values) + (["all"] if two else [])
    body: list[list[str]] = []
    totals = {column: [0, 0] for column in columns}
    for row in matrix.row_values:
        cells, replicas, leaders = [], 0, 0
        for column in matrix.column_values:
            count = matrix.cells.get((row, column))
            if count is None:
                cells.append("-")
                continue
            cells.append(f"{count.replicas}/{count.leaders} [{id_ranges(ids[(row, column)])}]")
            replicas, leaders = replicas + count.replicas, leaders + count.leaders
            totals[column][0] += count.replicas
            totals[column][1] += count.leaders
        if two:
            cells.append(f"{replicas}/{leaders}")
            totals["all"][0] += replicas
            totals["all"][1] += leaders
        body.append([row, *cells])
    if len(matrix.row_values) > 1:
        body.append(["all", *(f"{totals[c][0]}/{totals[c][1]}" for c in columns)])
    table = _table([[corner, *columns], *body])
    return ["brokers: replicas/leaders [broker ids] per cell", *table]


def _unplaced_lines(found: Report, placement: Placement, state: ClusterState) -> list[str]:
    described = []
    for broker in sorted(set(placement.unplaced) | set(found.unplaced_hosting)):
        known = state.brokers.get(broker)
        where = "not registered" if known is None else f"rack {known.rack!r}" if known.rack else "no rack"
        described.append(
            f"broker {broker} ({where}) holds {_n(found.unplaced_hosting.get(broker, 0), 'replica')}"
        )
    if not described:
        return []
    return [_wrap("unplaced: " + "; ".join(described), "", "  ")]


def _violation_lines(found: Report) -> list[str]:
    if not found.violations:
        return ["no violations"]
    partitions = len({v.partition for v in found.violations})
    by_rule = ", ".join(f"{rule} {count}" for rule, count in found.by_rule.items())
    lines = [
        _wrap(
            f"{_n(len(found.violations), 'violation')} in {_n(partitions, 'partition')}: {by_rule}", "", "  "
        )
    ]
    groups = violation_groups(found.violations)
    # The topics with the most violations first (the ones to look at), each topic's rows together.
    weight = {topic: sum(rules.values()) for topic, rules in found.by_topic.items()}
    ordered = sorted(groups.items(), key=lambda item: -weight[item[0][0]])  # stable: keeps the rest
    rows = [["topic", "rule", "dimension", "partitions", "e.g. partition"]]
    for (topic, rule, dimension), pids in ordered[:_TABLE_ROWS]:
        examples = ", ".join(str(p.partition) for p in pids[:EXAMPLES])
        rows.append([topic, str(rule), dimension or "-", str(len(pids)), examples])
    lines += _table(rows, indent="  ")
    if len(groups) > _TABLE_ROWS:
        lines.append(f"  ... {len(groups) - _TABLE_ROWS} more rows (--json lists every violation)")
    return lines


def _worst_lines(found: Report, placement: Placement, state: ClusterState) -> list[str]:
    if not found.worst:
        return []
    by_partition: dict[PartitionId, list[Violation]] = defaultdict(list)
    for v in found.violations:
        by_partition[v.partition].append(v)
    replicas = {p.id: p.replicas for p in state.partitions}
    lines = ["worst partitions:"]
    for pid, count in found.worst:
        where = ", ".join(f"{b} {_location(placement, b)}" for b in replicas.get(pid, ()))
        lines.append(_wrap(f"{pid}: {_n(count, 'violation')}; replicas {where}", "  ", "      "))
        for v in by_partition[pid]:
            lines.append(_wrap(f"{_rule_name(v.rule, v.dimension)}: {v.detail}", "    ", "      "))
    return lines


def _location(placement: Placement, broker: int) -> str:
    location = placement.located.get(broker)
    return "/".join(location) if location is not None else "(unplaced)"


def _rule_name(rule: Rule, dimension: str | None) -> str:
    return str(rule) if dimension is None else f"{rule} ({dimension})"


def _plan_lines(files: PlanFiles, state: ClusterState, topics: Sequence[str] | None) -> list[str]:
    plan = files.plan
    changes = leader_changes(plan, state)
    lines = [
        _wrap(
            f"plan: {_n(len(plan.moves), 'partition')} to reassign, "
            f"{_n(plan.replica_moves, 'replica move')}; "
            f"the current leader stays preferred leader of {len(plan.moves) - changes}, "
            f"{changes} change leader",
            "",
            "  ",
        )
    ]
    if plan.drained:
        lines.append(f"  drained brokers: {id_ranges(plan.drained)}")
    if topics is not None:
        named = ", ".join(topics[:_NAMED_TOPICS]) + (", ..." if len(topics) > _NAMED_TOPICS else "")
        lines.append(_wrap(f"{_n(len(topics), 'topic')}: {named}", "  ", "    "))
    if not plan.moves:
        lines.append("  nothing to reassign: no file written")
    elif files.batch_size is None:
        written = f"wrote {files.files[0]} (kafka-reassign-partitions JSON); nothing was executed"
        lines.append(_wrap(written, "  ", "    "))
    else:
        lines.append(
            f"  wrote {len(files.files)} batches of at most {files.batch_size} partitions; "
            "nothing was executed:"
        )
        for path, batch in zip(files.files, files.batches, strict=True):
            moves = sum(move.replica_moves for move in batch)
            lines.append(f"    {path}: {_n(len(batch), 'partition')}, {_n(moves, 'replica move')}")
    for stale in files.stale_files:
        lines.append(f"  note: {stale} is from an earlier plan, not part of this one")
    lines += _unfixable_lines(plan.unfixable)
    if files.outside_topics:
        named = ", ".join(str(p) for p in files.outside_topics[:EXAMPLES])
        more = ", ..." if len(files.outside_topics) > EXAMPLES else ""
        lines.append(
            _wrap(
                f"not drained: {_n(len(files.outside_topics), 'partition')} outside --topics keep "
                f"replicas on drained brokers ({named}{more})",
                "  ",
                "    ",
            )
        )
    if files.commands:
        lines.append(
            _wrap(
                "to apply, one file at a time, in order (kafka-xds executes nothing): --execute, then "
                "--verify until every partition is complete (which also removes the throttle); "
                "watch clients before the next file",
                "  ",
                "    ",
            )
        )
        for execute, verify in files.commands:
            lines += [_command(execute), _command(verify)]
        if any(CLIENT_PROPERTIES in execute for execute, _ in files.commands):
            lines.append(
                _wrap(
                    f"{CLIENT_PROPERTIES}: a Kafka client properties file with the cluster's "
                    "security.protocol and its TLS/SASL settings (kafka-xds writes no secret)",
                    "  ",
                    "    ",
                )
            )
    return lines


def _unfixable_lines(unfixable: Sequence[Unfixable]) -> list[str]:
    if not unfixable:
        return ["  every violation of the selected partitions is fixed by the plan"]
    groups: dict[tuple[str, Rule, str | None, str], list[int]] = defaultdict(list)
    for left in unfixable:
        v = left.violation
        groups[(v.partition.topic, v.rule, v.dimension, left.reason)].append(v.partition.partition)
    lines = [f"  cannot be fixed: {_n(len(unfixable), 'violation')}"]
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], RULE_ORDER[item[0][1]], item[0][2] or ""))
    for (topic, rule, dimension, reason), numbers in ordered:
        which = f"partition{'s' if len(numbers) > 1 else ''} {id_ranges(numbers)}"
        lines.append(_wrap(f"{topic} {which}, {_rule_name(rule, dimension)}: {reason}", "    ", "      "))
    if any(left.violation.rule is Rule.DIMENSION_LOSS for left in unfixable):
        lines.append(
            _wrap(
                "isr-at-risk stays with each dimension-loss of these: with every replica in sync, losing "
                "that value leaves as few in-sync replicas",
                "    ",
                "      ",
            )
        )
    return lines


def _command(argv: Sequence[str]) -> str:
    """One shell command, broken with backslashes between arguments to fit `WIDTH`."""
    indent, words = "    ", [shlex.quote(word) for word in argv]
    lines, line = [], indent + words[0]
    for word in words[1:]:
        if len(line) + 1 + len(word) + 2 > WIDTH:
            lines.append(line + " \\")
            line = indent + "    " + word
        else:
            line += " " + word
    return "\n".join([*lines, line])


def _table(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns two spaces apart; cells cut with '…' to keep the rows within WIDTH."""
    count = len(rows[0])
    widths = [max(len(row[i]) for row in rows) for i in range(count)]
    while len(indent) + sum(widths) + 2 * (count - 1) > WIDTH and max(widths) > 8:
        widest = widths.index(max(widths))
        widths[widest] -= 1
    return [
        (indent + "  ".join(_cut(cell, widths[i]).ljust(widths[i]) for i, cell in enumerate(row))).rstrip()
        for row in rows
    ]


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + "…"


def _wrap(line: str, indent: str, subsequent: str | None = None) -> str:
    return textwrap.fill(
        line,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=subsequent if subsequent is not None else indent + "  ",
        break_on_hyphens=False,
        break_long_words=False,
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
