"""JSON views of what the health followers know (xds.health.follower), for the /health endpoints and
the status page: the same dicts feed both, so they never disagree.

A view never says more than the follower knows: while a cluster is unreachable (or not polled yet)
every broker is not ready, no broker is restartable, and the last known state is shown as such
(`state`, `problem`, `age_seconds`). Partition names appear only in `detailed` views: the readiness
route answers probes without the debug token, and says then only kinds and counts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from xds.health.assessment import Anomaly, Assessment
from xds.health.follower import BrokerAnswer, ClusterHealth
from xds.health.metrics import partition_state_label
from xds.health.readiness import BrokerRestart, Reason

__all__ = [
    "DEFAULT_EXAMPLES",
    "anomaly_view",
    "broker_view",
    "cluster_summary",
    "page_view",
    "placement_view",
    "restart_view",
    "status_view",
]

DEFAULT_EXAMPLES = 100  # blockers per broker, partitions per anomaly
_PROBLEM_KINDS = {"unreachable": "cluster-unreachable", "unknown": "state-unknown", "stale": "state-stale"}


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def status_view(status: ClusterHealth, detailed: bool = True) -> dict[str, Any]:
    """Whether the cluster answers, since when not, and how old the state shown is."""
    failure = status.failure
    polled = status.last_good
    view: dict[str, Any] = {
        "cluster": status.cluster,
        "state": status.state,
        "problem": status.problem,
        "polled_at": polled.at if polled else None,
        "age_seconds": _round(status.age_seconds),
        "poll_interval_seconds": status.settings.poll_interval_seconds,
        "unreachable": None,
    }
    if failure is not None:
        view["unreachable"] = {
            "since": failure.since,
            "for_seconds": _round(status.now - failure.since),
            "failures": failure.failures,
            "last_error_at": failure.at,
            **({"last_error": failure.error} if detailed else {}),
        }
    if detailed and polled is not None:
        view.update(
            server=polled.server,
            cluster_id=polled.cluster_id,
            warnings=list(polled.warnings),
            fetch_seconds=round(polled.fetch_seconds, 3),
        )
    return view


def _reason(reason: Reason, detailed: bool) -> dict[str, Any]:
    view: dict[str, Any] = {"kind": str(reason.kind), "count": reason.count, "text": reason.describe()}
    if detailed:
        view["partitions"] = [str(p) for p in reason.examples]
    else:
        view["text"] = Reason(reason.kind, reason.count).describe()  # names no partition
    return view


def broker_view(answer: BrokerAnswer, status: ClusterHealth, detailed: bool) -> dict[str, Any]:
    """One broker's readiness, as the probe route answers it (200 when `ready`, else 503)."""
    view: dict[str, Any] = {
        "cluster": answer.cluster,
        "broker": answer.broker_id,
        "ready": answer.ready,
        "summary": answer.summary(with_error=detailed),
        "state": status.state,
        "age_seconds": _round(status.age_seconds),
    }
    readiness = answer.readiness
    if answer.problem is not None:
        kind = _PROBLEM_KINDS.get(status.state, "state-too-old")  # reachable: older than asked
        view["reasons"] = [{"kind": kind, "count": 0, "text": answer.problem}]
        if detailed and answer.error:
            view["last_error"] = answer.error
        return view
    assert readiness is not None
    if not detailed:
        view["summary"] = _undetailed_summary(answer)
    view["reasons"] = [_reason(r, detailed) for r in readiness.reasons]
    view["tolerated"] = [_reason(r, detailed) for r in readiness.tolerated]
    view["hosted"] = readiness.hosted
    return view


def _undetailed_summary(answer: BrokerAnswer) -> str:
    assert answer.readiness is not None
    readiness = answer.readiness
    bare = replace(
        readiness,
        reasons=tuple(Reason(r.kind, r.count) for r in readiness.reasons),
        tolerated=tuple(Reason(r.kind, r.count) for r in readiness.tolerated),
    )
    return bare.summary()


def _restart(restart: BrokerRestart, examples: int) -> dict[str, Any]:
    return {
        "broker": restart.broker_id,
        "restartable": restart.restartable,
        "blocked_by": len(restart.blockers),
        "summary": restart.summary(),
        "blockers": [
            {"partition": str(b.partition), "kind": str(b.kind), "in_sync": b.in_sync, "min_isr": b.min_isr}
            for b in restart.blockers[:examples]
        ],
    }


def restart_view(status: ClusterHealth, examples: int = DEFAULT_EXAMPLES) -> dict[str, Any]:
    """Which brokers a roll may restart now; none while the state cannot be trusted (`problem`)."""
    view = status_view(status)
    assessment = status.assessment
    plan = assessment.plan if assessment is not None else None
    trusted = status.problem is None and plan is not None
    view["restartable"] = list(plan.restartable) if trusted and plan is not None else []
    view["blocked"] = list(plan.blocked) if plan is not None else []
    view["brokers"] = [_restart(b, examples) for b in plan.brokers] if plan is not None else []
    if not trusted:
        view["note"] = "no broker is known restartable: " + (status.problem or "no state")
    return view


def anomaly_view(anomaly: Anomaly, examples: int = DEFAULT_EXAMPLES) -> dict[str, Any]:
    return {
        "topic": anomaly.topic,
        "rules": {str(rule): count for rule, count in anomaly.rules.items()},
        "partition_count": len(anomaly.partitions),
        "partitions": [str(p) for p in anomaly.partitions[:examples]],
        "example": anomaly.example,
        "detected_at": anomaly.detected_at,
        "text": anomaly.describe(),
    }


def _matrix(assessment: Assessment) -> dict[str, Any] | None:
    found = assessment.report
    if found is None:
        return None
    matrix = found.matrix
    return {
        "rows": matrix.rows,
        "columns": matrix.columns,
        "row_values": list(matrix.row_values),
        "column_values": list(matrix.column_values),
        "cells": [
            {
                "row": row,
                "column": column,
                "brokers": cell.brokers,
                "replicas": cell.replicas,
                "leaders": cell.leaders,
                "violations": assessment.cell_violations.get((row, column), 0),
            }
            for (row, column), cell in matrix.cells.items()
        ],
    }


def placement_view(
    status: ClusterHealth, limit: int = 1000, topics: int | None = None
) -> dict[str, Any] | None:
    """The placement report: counts by rule and topic (the `topics` with most, all by default),
    the worst partitions, the matrix with each cell's violating partitions, the first `limit`
    violations, and the recent new-topic anomalies. None without placement settings."""
    if status.settings.placement is None:
        return None
    view = status_view(status)
    assessment = status.assessment
    view["anomalies"] = [anomaly_view(a) for a in status.anomalies]
    view["anomaly_count"] = status.anomaly_count
    if assessment is None or assessment.report is None or assessment.placement is None:
        view["report"] = None
        return view
    found = assessment.report
    by_topic = sorted(found.by_topic.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    view["report"] = {
        "dimensions": list(found.dimensions),
        "violations_total": len(found.violations),
        "by_rule": {str(rule): count for rule, count in found.by_rule.items()},
        "topics_total": len(found.by_topic),
        "by_topic": {
            topic: {str(rule): count for rule, count in rules.items()}
            for topic, rules in (by_topic if topics is None else by_topic[:topics])
        },
        "worst": [{"partition": str(p), "violations": n} for p, n in found.worst],
        "unplaced_brokers": sorted(assessment.placement.unplaced),
        "unplaced_hosting": {str(b): n for b, n in found.unplaced_hosting.items()},
        "matrix": _matrix(assessment),
        "violations": [
            {"partition": str(v.partition), "rule": str(v.rule), "dimension": v.dimension, "detail": v.detail}
            for v in found.violations[:limit]
        ],
    }
    return view


def cluster_summary(status: ClusterHealth, detailed: bool = True) -> dict[str, Any]:
    """One cluster at a glance, as `GET /health` lists it."""
    view = status_view(status, detailed)
    assessment = status.assessment
    trusted = status.problem is None
    if assessment is None:
        view.update(partitions=None, brokers=None, restartable=[], placement=None)
    else:
        ready = [b for b, r in assessment.readiness.items() if trusted and r.ready]
        view["partitions"] = {
            "total": len(assessment.state.partitions),
            "in_sync": assessment.in_sync,
            **{partition_state_label(k): n for k, n in assessment.partitions.items()},
        }
        view["brokers"] = {
            "known": len(assessment.readiness),
            "ready": ready,
            "not_ready": [b for b in assessment.readiness if b not in ready],
        }
        view["restartable"] = list(assessment.plan.restartable) if trusted else []
        found = assessment.report
        view["placement"] = (
            None
            if found is None
            else {
                "violations": len(found.violations),
                "by_rule": {str(rule): count for rule, count in found.by_rule.items()},
            }
        )
    view["anomaly_count"] = status.anomaly_count
    view["anomalies"] = [anomaly_view(a, 10) for a in status.anomalies[:10]] if detailed else []
    return view


def page_view(status: ClusterHealth) -> dict[str, Any]:
    """What the status page shows of one cluster: the summary, every broker's readiness, the
    restart plan and (with placement) the report with the 20 topics breaking the most."""
    assessment = status.assessment
    brokers = (
        [broker_view(status.broker(b), status, True) for b in assessment.readiness]
        if assessment is not None
        else []
    )
    return {
        "summary": cluster_summary(status),
        "brokers": brokers,
        "restart": restart_view(status, examples=3),
        "placement": placement_view(status, limit=0, topics=20),
    }
