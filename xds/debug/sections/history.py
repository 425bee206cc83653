"""What happened: charts of the last hour from the sampled metrics (xds.debug.sampler) and the
recent events (xds.pipeline.history), newest first, with times."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from xds.debug.sampler import Sample, interval_points
from xds.debug.sections.format import clock, duration
from xds.debug.sections.svg import RED, line_chart
from xds.pipeline.history import Event, Severity

__all__ = ["EVENTS_SHOWN", "render_charts", "render_events"]

EVENTS_SHOWN = 30
_WINDOW_SECONDS = 3600.0
_MIN_SPAN_SECONDS = 300.0
_SEVERITY = {Severity.ERROR: "bad", Severity.WARNING: "warn", Severity.INFO: "ok"}


def render_charts(samples: Sequence[Sample], now: float, interval: float) -> str:
    """Connected sidecars, pushes, convergence p99, NACKs and refusals since the oldest sample of
    the last hour (at least the last five minutes)."""
    recent = [sample for sample in samples if sample.at >= now - _WINDOW_SECONDS]
    start = min(now - _MIN_SPAN_SECONDS, recent[0].at if recent else now)
    points = interval_points(recent)
    every = f"per {interval:g} s"
    charts = [
        line_chart("Connected sidecars", [(sample.at, sample.sidecars) for sample in recent], start, now),
        line_chart("Pushes per minute", [(p.at, p.pushes_per_minute) for p in points], start, now),
        line_chart("Convergence p99", [(p.at, p.convergence_p99) for p in points], start, now, " s"),
        line_chart(f"NACKs {every}", [(p.at, p.nacks) for p in points], start, now, colour=RED),
        line_chart(f"Refused streams {every}", [(p.at, p.refusals) for p in points], start, now, colour=RED),
    ]
    note = (
        f"sampled every {interval:g} s since {clock(recent[0].at)}; a point is one interval"
        if recent
        else "no sample yet"
    )
    return (
        f"<div class=card id=charts><div class=charts>{''.join(charts)}</div>"
        f"<p class=muted>Last {duration(now - start)}, {escape(note)} (from /metrics: "
        "kafka_xds_connected_streams, _pushes_total, _convergence_seconds, _nacks_total, "
        "_streams_refused_total); convergence: change seen by a source → a sidecar's ACK.</p></div>"
    )


def render_events(events: Sequence[Event], capacity: int) -> str:
    """The newest EVENTS_SHOWN events, newest first; all of them at /debug/events."""
    if not events:
        return (
            "<div class='card muted' id=events>No events yet. Brokers added, moved or removed, sources "
            "lost and recovered, plan mismatches, NACKs, refused streams and published snapshots are "
            "listed here as they happen.</div>"
        )
    rows = "".join(_event_row(recorded) for recorded in events[:EVENTS_SHOWN])
    more = (
        f"{EVENTS_SHOWN} newest of {len(events)} shown; " if len(events) > EVENTS_SHOWN else ""
    ) + f"the last {capacity} are kept, as JSON at <a href=/debug/events>/debug/events</a>"
    return (
        "<div class=card id=events><div class=wrap><table><tr><th>time</th><th>what</th>"
        f"<th>cluster</th><th>detail</th></tr>{rows}</table></div><p class=muted>{more}</p></div>"
    )


def _event_row(recorded: Event) -> str:
    kind = _SEVERITY[recorded.severity]
    return (
        f"<tr><td>{clock(recorded.at)}</td>"
        f"<td><span class='badge {kind}'>{escape(recorded.kind.value.replace('_', ' '))}</span></td>"
        f"<td>{escape(recorded.cluster or '-')}</td><td>{escape(recorded.text)}</td></tr>"
    )
