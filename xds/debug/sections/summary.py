"""The top of the page: which replica this is, whether it is ready, and every problem it knows of,
each linked to the section that shows it. The badge is green only when there is no problem: a
stale source, a NACKing sidecar or a recent refusal turn it yellow or red, whatever /readyz says."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from xds.debug.sampler import Sample
from xds.debug.sections.format import clock, duration
from xds.debug.sections.view import ReplicaView, SnapshotView, StatusView
from xds.serving.reports import LAGGING_SECONDS

__all__ = ["RECENT_SECONDS", "Problem", "find_problems", "render_replica", "render_summary"]

RECENT_SECONDS = 600.0  # refusals this recent are a problem of now


@dataclass(frozen=True, slots=True)
class Problem:
    severity: str  # "bad" or "warn": the page's badge classes
    text: str  # plain text; escaped when rendered
    anchor: str  # the section that shows it: an id on the page


def anchor(kind: str, name: str) -> str:
    """An id for a section about `name` (a cluster name): letters, digits, - and _ only."""
    safe = "".join(char if char.isalnum() or char in "-_" else "_" for char in name)
    return f"{kind}-{safe}"


def find_problems(view: StatusView) -> list[Problem]:
    """Everything wrong that the page shows, the worst first."""
    problems: list[Problem] = []
    for name, cluster in view.topology["clusters"].items():
        source = cluster["source"]
        where = anchor("cluster", name)
        if source["state"] == "stale":
            problems.append(
                Problem(
                    "bad",
                    f"{name}: {source['kind']} source stale for {duration(source['stale_seconds'] or 0)}, "
                    f"its last known brokers served: {source['error'] or 'no reason given'}",
                    where,
                )
            )
        elif source["state"] == "unavailable":
            problems.append(
                Problem(
                    "bad",
                    f"{name}: {source['kind']} source unavailable, no broker served: "
                    f"{source['error'] or 'no reason given'}",
                    where,
                )
            )
        if cluster["plan_mismatches"]:
            count = len(cluster["plan_mismatches"])
            problems.append(
                Problem(
                    "warn",
                    f"{name}: {_count(count, 'plan mismatch', 'es')}: clients bypass the sidecar",
                    where,
                )
            )
        if cluster["skipped"]:
            count = len(cluster["skipped"])
            problems.append(Problem("warn", f"{name}: {_count(count, 'broker registration')} skipped", where))
    if view.build_error:
        problems.append(
            Problem(
                "bad", f"the last build failed, the last good resources kept: {view.build_error}", "clusters"
            )
        )
    by_state = view.streams.get("by_state", {})
    if by_state.get("nacked"):
        problems.append(
            Problem("bad", f"{_count(by_state['nacked'], 'sidecar')} rejecting config (NACK)", "sidecars")
        )
    if by_state.get("lagging"):
        problems.append(
            Problem(
                "warn",
                f"{_count(by_state['lagging'], 'sidecar')} lagging (a response unanswered for over "
                f"{LAGGING_SECONDS:g} s)",
                "sidecars",
            )
        )
    silent = view.streams.get("workers_not_answering")
    if silent:
        problems.append(Problem("bad", f"{_count(len(silent), 'serving worker')} not answering", "sidecars"))
    refused = _recent_refusals(view.samples, view.now)
    if refused:
        problems.append(
            Problem(
                "warn",
                f"{_count(int(refused), 'stream')} refused in the last {duration(RECENT_SECONDS)}",
                "events",
            )
        )
    problems.sort(key=lambda problem: problem.severity != "bad")
    return problems


def _recent_refusals(samples: Sequence[Sample], now: float) -> float:
    recent = [sample for sample in samples if sample.at >= now - RECENT_SECONDS]
    if not recent:
        return 0.0
    earlier = [sample for sample in samples if sample.at < now - RECENT_SECONDS]
    first = earlier[-1] if earlier else recent[0]
    return max(0.0, recent[-1].refusals - first.refusals)


def _count(number: int, thing: str, plural: str = "s") -> str:
    return f"{number} {thing}{'' if number == 1 else plural}"


def badge(view: StatusView, problems: Iterable[Problem]) -> tuple[str, str]:
    """(class, text) of the badge: not ready, degraded (a bad problem), warnings, or ready."""
    severities = [problem.severity for problem in problems]
    if view.waiting:
        return ("bad" if "bad" in severities else "warn"), "not ready"
    if "bad" in severities:
        return "bad", "degraded"
    if severities:
        return "warn", f"ready, {_count(len(severities), 'warning')}"
    return "ok", "ready"


def render_replica(replica: ReplicaView, now: float) -> str:
    serving = (
        f"{replica.workers_serving} of {replica.workers} serving"
        if replica.workers_serving != replica.workers
        else "all serving"
    )
    return (
        "<p class=muted id=replica>"
        f"host <b>{escape(replica.host)}</b> · kafka-xds {escape(replica.version)} · pid {replica.pid} · "
        f"up {duration(now - replica.started_at)} (since {clock(replica.started_at)}) · "
        f"{_count(replica.workers, 'worker')} ({serving}) · "
        f"xDS ({escape(replica.xds_security)}) <code>{escape(replica.xds_listen)}</code> · "
        f"debug <code>{escape(replica.debug_listen)}</code></p>"
    )


def render_summary(view: StatusView) -> str:
    problems = find_problems(view)
    kind, text = badge(view, problems)
    parts = [
        f"<div class='card summary {kind}' id=summary><span class='badge big {kind}'>{escape(text)}</span> "
    ]
    if view.waiting:
        parts.append("nothing is pushed until every source has synced and every worker serves")
        parts.append(
            "<ul>"
            + "".join(
                f"<li><b>{escape(name)}</b>: {escape(reason)}</li>" for name, reason in view.waiting.items()
            )
            + "</ul>"
        )
    if problems:
        parts.append(
            "<ul class=problems>"
            + "".join(
                f"<li class={problem.severity}><a href='#{problem.anchor}'>{escape(problem.text)}</a></li>"
                for problem in problems
            )
            + "</ul>"
        )
    elif not view.waiting:
        parts.append(
            "<span class=muted>no problem known: every source synced, no sidecar rejecting config</span>"
        )
    parts.append(_snapshot(view.snapshot, view.now))
    parts.append("</div>")
    return "".join(parts)


def _snapshot(snapshot: SnapshotView | None, now: float) -> str:
    if snapshot is None:
        return "<p class=muted>No snapshot yet.</p>"
    when = (
        f", published {clock(snapshot.published_at)} ({duration(now - snapshot.published_at)} ago)"
        if snapshot.published_at
        else ""
    )
    types = []
    for typed in snapshot.types:
        if typed.resources:
            types.append(
                f"{escape(typed.type_name)} <code>{escape(typed.version)}</code> "
                f"<span class=muted>({typed.resources})</span>"
            )
        else:
            types.append(f"{escape(typed.type_name)} <span class=muted>none</span>")
    return f"<p class=muted>Snapshot generation <b>{snapshot.generation}</b>{when}: {' · '.join(types)}</p>"
