"""`kafka-xds placement --json`: the same answer as one stable document, with every violation and
every move (keys are only added within a version)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from xds.health.dimensions import Placement
from xds.health.placement import Matrix, Violation
from xds.health.placement_command.answer import (
    EXAMPLES,
    ClusterAnswer,
    PlanFiles,
    Unreachable,
    cell_brokers,
    leader_changes,
    violation_groups,
)
from xds.health.state import ClusterState

__all__ = ["DOCUMENT_VERSION", "document"]

DOCUMENT_VERSION = 1  # of the --json document; raised only when a key changes meaning or goes


def document(answers: Sequence[ClusterAnswer], exit_code: int) -> dict[str, Any]:
    """The same answer as plain data: stable keys, every violation, every move."""
    return {
        "version": DOCUMENT_VERSION,
        "exit_code": exit_code,
        "clusters": [_cluster_document(answer) for answer in answers],
    }


def _cluster_document(answer: ClusterAnswer) -> dict[str, Any]:
    if isinstance(answer, Unreachable):
        return {
            "cluster": answer.cluster,
            "reachable": False,
            "unreachable": [{"server": server, "problem": problem} for server, problem in answer.problems],
            "timed_out": answer.timed_out,
        }
    state, placement, found = answer.state, answer.placement, answer.report
    replicas: dict[int, int] = defaultdict(int)
    leaders: dict[int, int] = defaultdict(int)
    for partition in state.partitions:
        for broker in set(partition.replicas):
            replicas[broker] += 1
        if partition.has_leader:
            leaders[partition.leader] += 1
    brokers = sorted(set(state.brokers) | set(replicas))
    return {
        "cluster": answer.cluster,
        "reachable": True,
        "answered_by": answer.answered_by,
        "elapsed_seconds": round(answer.elapsed_seconds, 3),
        "warnings": list(answer.warnings),
        "dimensions": list(found.dimensions),
        "topics": list(state.topics),
        "selected_topics": list(answer.topics) if answer.topics is not None else None,
        "partitions": len(state.partitions),
        "brokers": [
            {
                "id": broker,
                "registered": broker in state.brokers,
                "rack": state.brokers[broker].rack if broker in state.brokers else None,
                "location": _location_document(placement, broker),
                "replicas": replicas[broker],
                "leaders": leaders[broker],
            }
            for broker in brokers
        ],
        "unplaced": sorted(set(placement.unplaced) | set(found.unplaced_hosting)),
        "matrix": _matrix_document(found.matrix, placement),
        "violations": {
            "total": len(found.violations),
            "partitions": len({v.partition for v in found.violations}),
            "by_rule": {str(rule): count for rule, count in found.by_rule.items()},
            "by_topic": [
                {
                    "topic": topic,
                    "rule": str(rule),
                    "dimension": dimension,
                    "partitions": len(pids),
                    "examples": [p.partition for p in pids[:EXAMPLES]],
                }
                for (topic, rule, dimension), pids in violation_groups(found.violations).items()
            ],
            "all": [_violation_document(v) for v in found.violations],
        },
        "worst": [{"topic": p.topic, "partition": p.partition, "violations": n} for p, n in found.worst],
        "plan": _plan_document(answer.plan, state, answer.topics) if answer.plan else None,
    }


def _location_document(placement: Placement, broker: int) -> dict[str, str] | None:
    location = placement.located.get(broker)
    return dict(zip(placement.dimensions, location, strict=True)) if location is not None else None


def _matrix_document(matrix: Matrix, placement: Placement) -> dict[str, Any]:
    ids = cell_brokers(placement, matrix.columns is not None)
    return {
        "rows": matrix.rows,
        "columns": matrix.columns,
        "row_values": list(matrix.row_values),
        "column_values": list(matrix.column_values),
        "cells": [
            {
                "row": row,
                "column": column if matrix.columns is not None else None,
                "brokers": sorted(ids[(row, column)]),
                "replicas": count.replicas,
                "leaders": count.leaders,
            }
            for (row, column), count in matrix.cells.items()
        ],
    }


def _violation_document(v: Violation) -> dict[str, Any]:
    return {
        "topic": v.partition.topic,
        "partition": v.partition.partition,
        "rule": str(v.rule),
        "dimension": v.dimension,
        "detail": v.detail,
    }


def _plan_document(files: PlanFiles, state: ClusterState, topics: Sequence[str] | None) -> dict[str, Any]:
    plan = files.plan
    changes = leader_changes(plan, state)
    return {
        "executed": False,
        "partitions": len(plan.moves),
        "replica_moves": plan.replica_moves,
        "leaders_kept": len(plan.moves) - changes,
        "leader_changes": changes,
        "drained": sorted(plan.drained),
        "topics": list(topics) if topics is not None else None,
        "batch_size": files.batch_size,
        "batches": [
            {
                "file": str(path),
                "partitions": len(batch),
                "replica_moves": sum(move.replica_moves for move in batch),
                "moves": [
                    {
                        "topic": move.partition.topic,
                        "partition": move.partition.partition,
                        "before": list(move.before),
                        "after": list(move.after),
                    }
                    for move in batch
                ],
                "execute": list(execute),
                "verify": list(verify),
            }
            for path, batch, (execute, verify) in zip(files.files, files.batches, files.commands, strict=True)
        ],
        "unfixable": [{**_violation_document(u.violation), "reason": u.reason} for u in plan.unfixable],
        "outside_topics_on_drained": [
            {"topic": p.topic, "partition": p.partition} for p in files.outside_topics
        ],
        "stale_files": [str(path) for path in files.stale_files],
    }
