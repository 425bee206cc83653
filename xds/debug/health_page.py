"""The status page's Kafka health sections: per cluster followed, partition health, which brokers a
roll may restart now, every broker's readiness with its reasons, and the replica placement as a
picture (an inline SVG heat map of replicas per Kubernetes cluster x zone cell, leaders in each cell,
cells to blame for violations outlined in red), the violations per rule and topic, the worst
partitions and the recent new-topic anomalies. An unreachable cluster is shown in red with its last
error and since when, and its last known state marked as such.

Server-rendered from the views of xds.debug.health_views (the /health endpoints' JSON), no script.
Uses the page's own classes (card, badge ok/warn/bad, muted, wrap).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["render_health", "render_matrix"]

_STATES = ("offline", "under_min_isr", "at_min_isr", "under_replicated")
_STATE_BADGES = {"offline": "bad", "under_min_isr": "bad", "at_min_isr": "warn", "under_replicated": "warn"}
_RED = "#c62828"
# The heat map's geometry (SVG user units) and its two ends of colour (no replica, the most).
_CELL_W, _CELL_H, _LEFT, _TOP = 150, 66, 96, 26
_LOW, _HIGH = (238, 243, 250), (31, 95, 191)


def render_health(clusters: Sequence[Mapping[str, Any]]) -> str:
    """The health part of the page: nothing when no cluster has `health:` settings."""
    if not clusters:
        return ""
    return "<h2>Kafka health</h2>" + "".join(_cluster(view) for view in clusters)


def _clock(moment: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment)) if moment else "?"


def _badge(kind: str, text: str) -> str:
    return f"<span class='badge {kind}'>{escape(text)}</span>"


def _overall(summary: Mapping[str, Any]) -> tuple[str, str]:
    state = summary["state"]
    if state == "unreachable":
        return "bad", "unreachable"
    if state == "stale":
        return "bad", "state stale"
    if state == "unknown":
        return "warn", "not polled yet"
    counts = summary.get("partitions") or {}
    if counts.get("offline") or counts.get("under_min_isr"):
        return "bad", "degraded"
    if counts.get("at_min_isr") or counts.get("under_replicated"):
        return "warn", "degraded"
    return "ok", "in sync"


def _cluster(view: Mapping[str, Any]) -> str:
    summary = view["summary"]
    kind, text = _overall(summary)
    trusted = summary["problem"] is None
    where = []
    if summary.get("polled_at"):
        where.append(f"polled {summary['age_seconds']:g} s ago ({_clock(summary['polled_at'])})")
    if summary.get("server"):
        where.append(f"from <code>{escape(summary['server'])}</code>")
    where.append(f"every {summary['poll_interval_seconds']:g} s")
    if summary.get("cluster_id"):
        where.append(f"cluster id <code>{escape(summary['cluster_id'])}</code>")
    parts = [
        f"<div class='card{'' if trusted else ' stale'}' id='health-{escape(summary['cluster'])}'>",
        f"<b>{escape(summary['cluster'])}</b> {_badge(kind, text)} ",
        f"<span class=muted>{' · '.join(where)}</span>",
        _problem(summary),
        *(f"<p class=muted>warning: {escape(warning)}</p>" for warning in summary.get("warnings", [])),
    ]
    if summary.get("partitions") is not None:
        parts += [
            _partitions(summary["partitions"], trusted),
            _restartable(view["restart"], trusted),
            _brokers(view["brokers"]),
        ]
    if view.get("placement") is not None:
        parts.append(_placement(view["placement"]))
    parts.append("</div>")
    return "".join(parts)


def _problem(summary: Mapping[str, Any]) -> str:
    if summary["problem"] is None:
        return ""
    unreachable = summary.get("unreachable")
    detail = ""
    if unreachable:
        detail = (
            f" (since {_clock(unreachable['since'])}, {unreachable['failures']} failed polls); "
            f"last error at {_clock(unreachable['last_error_at'])}: "
            f"<code>{escape(str(unreachable.get('last_error', '')))}</code>"
        )
    shown = (
        f" The last state known, from {_clock(summary['polled_at'])}, is shown below; every broker "
        "answers not ready and none is restartable until a poll answers."
        if summary.get("polled_at")
        else " Every broker answers not ready until a poll answers."
    )
    return f"<p style='color:{_RED}'><b>{escape(summary['problem'])}</b>{detail}.{escape(shown)}</p>"


def _partitions(counts: Mapping[str, Any], trusted: bool) -> str:
    badges = " ".join(
        _badge(
            _STATE_BADGES[state] if counts.get(state) else "ok",
            f"{state.replace('_', ' ')}: {counts.get(state, 0)}",
        )
        for state in _STATES
    )
    known = "" if trusted else " <span class=muted>(last known)</span>"
    return f"<p>Partitions: {counts['total']} · in sync {counts['in_sync']} · {badges}{known}</p>"


def _restartable(restart: Mapping[str, Any], trusted: bool) -> str:
    restartable = restart["restartable"]
    if not trusted:
        safe = (
            f"<b style='color:{_RED}'>none</b> <span class=muted>({escape(restart.get('note', ''))})</span>"
        )
    elif restartable:
        safe = _badge("ok", ", ".join(str(b) for b in restartable))
    else:
        safe = f"<b style='color:{_RED}'>none</b>"
    blocked = [
        f"<li>broker {b['broker']}: blocked by {b['blocked_by']} partition"
        f"{'' if b['blocked_by'] == 1 else 's'}: "
        + escape(
            ", ".join(f"{x['partition']} {x['kind']} ({x['in_sync']}/{x['min_isr']})" for x in b["blockers"])
        )
        + (", ..." if b["blocked_by"] > len(b["blockers"]) else "")
        + "</li>"
        for b in restart["brokers"]
        if not b["restartable"]
    ]
    return f"<p><b>Safe to restart now:</b> {safe}</p>" + (f"<ul>{''.join(blocked)}</ul>" if blocked else "")


def _brokers(brokers: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{b['broker']}</td><td style='white-space:nowrap'>"
        f"{_badge('ok', 'ready') if b['ready'] else _badge('bad', 'not ready')}</td>"
        f"<td>{escape(b['summary'])}</td></tr>"
        for b in brokers
    )
    return (
        "<div class=wrap><table><tr><th>broker</th><th>readiness</th><th>reasons</th></tr>"
        f"{rows}</table></div>"
    )


def _placement(view: Mapping[str, Any]) -> str:
    found = view.get("report")
    parts = ["<h3 style='font-size:15px;margin:14px 0 6px'>Replica placement</h3>"]
    if found is None:
        parts.append("<p class=muted>No state polled yet.</p>")
    else:
        by_rule = found["by_rule"]
        if by_rule:
            parts.append(
                f"<p>{found['violations_total']} violations: "
                + " ".join(_badge("bad", f"{rule}: {count}") for rule, count in by_rule.items())
                + "</p>"
            )
        else:
            parts.append(f"<p>{_badge('ok', 'no violation')}</p>")
        parts.append(render_matrix(found["matrix"]))
        if found["unplaced_hosting"]:
            hosting = ", ".join(f"broker {b} ({n} replicas)" for b, n in found["unplaced_hosting"].items())
            parts.append(f"<p style='color:{_RED}'>Replicas on brokers nothing places: {escape(hosting)}</p>")
        if found["unplaced_brokers"]:
            parts.append(
                "<p class=muted>Brokers whose rack the pattern does not match: "
                + escape(", ".join(str(b) for b in found["unplaced_brokers"]))
                + "</p>"
            )
        parts.append(_topics(found))
        parts.append(_worst(found["worst"]))
    parts.append(_anomalies(view["anomalies"], view["anomaly_count"]))
    return "".join(parts)


def _colour(share: float) -> str:
    rgb = (round(low + (high - low) * share) for low, high in zip(_LOW, _HIGH, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def render_matrix(matrix: Mapping[str, Any] | None) -> str:
    """The cluster x zone matrix as an inline SVG heat map: fill by replicas, leaders and brokers
    written in each cell, cells to blame for violations outlined in red with their count."""
    if not matrix or not matrix["cells"]:
        return "<p class=muted>No broker is placed: nothing to draw.</p>"
    rows, columns = matrix["row_values"], matrix["column_values"]
    cells = {(cell["row"], cell["column"]): cell for cell in matrix["cells"]}
    most = max((cell["replicas"] for cell in matrix["cells"]), default=0) or 1
    width, height = _LEFT + _CELL_W * len(columns) + 4, _TOP + _CELL_H * len(rows) + 4
    title = f"replicas per {matrix['rows']}" + (f" x {matrix['columns']}" if matrix["columns"] else "")
    out = [
        f"<div class=wrap><svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title)}' "
        "font-family='system-ui,sans-serif' font-size='12'>",
        f"<title>{escape(title)}</title>",
    ]
    for j, column in enumerate(columns):
        x = _LEFT + _CELL_W * j + _CELL_W / 2
        out.append(
            f"<text x='{x:g}' y='16' text-anchor='middle' fill='#5b6474'>{escape(column or '-')}</text>"
        )
    for i, row in enumerate(rows):
        y = _TOP + _CELL_H * i
        out.append(
            f"<text x='{_LEFT - 8}' y='{y + _CELL_H / 2 + 4:g}' text-anchor='end' "
            f"fill='#5b6474'>{escape(row)}</text>"
        )
        for j, column in enumerate(columns):
            out.append(_cell(cells.get((row, column)), row, column, _LEFT + _CELL_W * j, y, most))
    out.append("</svg></div>")
    return "".join(out)


def _cell(cell: Mapping[str, Any] | None, row: str, column: str, x: int, y: float, most: int) -> str:
    if cell is None:
        return (
            f"<rect x='{x + 2}' y='{y + 2:g}' width='{_CELL_W - 4}' height='{_CELL_H - 4}' rx='4' "
            "fill='#ffffff' stroke='#dde1e7' stroke-dasharray='4 3'/>"
        )
    share = cell["replicas"] / most
    ink = "#ffffff" if share > 0.55 else "#1d2330"
    violations = cell["violations"]
    stroke = f"stroke='{_RED}' stroke-width='3'" if violations else "stroke='#dde1e7' stroke-width='1'"
    where = f"{row} / {column}" if column else row
    tip = f"{where}: {cell['replicas']} replicas, {cell['leaders']} leaders, {cell['brokers']} brokers" + (
        f", {violations} violating partitions" if violations else ""
    )
    cx = x + _CELL_W / 2
    parts = [
        f"<g class='cell{' violation' if violations else ''}'><title>{escape(tip)}</title>",
        f"<rect x='{x + 2}' y='{y + 2:g}' width='{_CELL_W - 4}' height='{_CELL_H - 4}' rx='4' "
        f"fill='{_colour(share)}' {stroke}/>",
        f"<text x='{cx:g}' y='{y + 24:g}' text-anchor='middle' fill='{ink}' font-size='15' "
        f"font-weight='600'>{cell['replicas']} replicas</text>",
        f"<text x='{cx:g}' y='{y + 42:g}' text-anchor='middle' fill='{ink}'>"
        f"{cell['leaders']} leaders · {cell['brokers']} brokers</text>",
    ]
    if violations:
        parts.append(
            f"<text x='{cx:g}' y='{y + 57:g}' text-anchor='middle' fill='{ink if share > 0.55 else _RED}' "
            f"font-weight='600'>{violations} violating</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _topics(found: Mapping[str, Any]) -> str:
    by_topic = found["by_topic"]
    if not by_topic:
        return ""
    rules = sorted({rule for counts in by_topic.values() for rule in counts})
    head = "".join(f"<th>{escape(rule)}</th>" for rule in rules)
    rows = "".join(
        f"<tr><td>{escape(topic)}</td>"
        + "".join(f"<td>{counts.get(rule, '') or ''}</td>" for rule in rules)
        + "</tr>"
        for topic, counts in by_topic.items()
    )
    more = (
        f"<p class=muted>{len(by_topic)} of {found['topics_total']} topics shown, most violations first: "
        "all in the placement JSON.</p>"
        if found["topics_total"] > len(by_topic)
        else ""
    )
    return (
        "<p><b>Violations per rule and topic</b> (partitions)</p><div class=wrap><table>"
        f"<tr><th>topic</th>{head}</tr>{rows}</table></div>{more}"
    )


def _worst(worst: Sequence[Mapping[str, Any]]) -> str:
    if not worst:
        return ""
    shown = ", ".join(f"<code>{escape(w['partition'])}</code> ({w['violations']})" for w in worst)
    return f"<p><b>Worst partitions</b> (violations): {shown}</p>"


def _anomalies(anomalies: Sequence[Mapping[str, Any]], count: int) -> str:
    if not anomalies:
        return "<p class=muted>No new topic has broken placement since kafka-xds started.</p>"
    items = "".join(
        f"<li><span class='badge bad'>new topic</span> {_clock(a['detected_at'])} "
        f"<b>{escape(a['topic'])}</b>: {escape(a['text'])}</li>"
        for a in anomalies[:20]
    )
    return f"<p><b>Recent new-topic anomalies</b> ({count} since start)</p><ul>{items}</ul>"
