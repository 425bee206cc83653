"""One card per Kafka cluster: its source's state, and each broker where clients reach it, where the
sidecar forwards to, and whether it is served yet."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from xds.debug.sections.format import clock, duration
from xds.debug.sections.summary import anchor

__all__ = ["render_clusters"]

_SOURCE_BADGES = {"synced": "ok", "syncing": "warn", "stale": "bad", "unavailable": "bad"}
_STATUS_BADGES = {"live": "ok", "waiting": "warn", "in_grace": "warn", "skipped": "bad"}


def render_clusters(topology: Mapping[str, Any]) -> str:
    clusters = topology["clusters"]
    if not clusters:
        return "<div class='card muted' id=clusters>No Kafka cluster is configured.</div>"
    return (
        "<div id=clusters>"
        + "".join(_cluster(name, cluster) for name, cluster in clusters.items())
        + "</div>"
    )


def _cluster(name: str, cluster: Mapping[str, Any]) -> str:
    source = cluster["source"]
    state = source["state"]
    detail = ""
    if state == "stale":
        detail = f" for {duration(source['stale_seconds'] or 0)}"
    if source.get("error"):
        detail += f": {escape(str(source['error']))}"
    skipped_ids = {
        skip["broker_id"]: skip["reason"] for skip in cluster["skipped"] if skip.get("broker_id") is not None
    }
    rows = [_broker_row(broker, _status(broker, skipped_ids)) for broker in cluster["brokers"]]
    for broker in cluster["in_removal_grace"]:
        rows.append(_broker_row(broker, ("in_grace", f"in grace until {clock(broker.get('remove_at'))}")))
    notes = [f"<li class=bad>{escape(text)}</li>" for text in cluster["plan_mismatches"]]
    notes += [
        f"<li>skipped <code>{escape(skip['where'])}</code>: {escape(skip['reason'])}</li>"
        for skip in cluster["skipped"]
    ]
    if rows:
        table = (
            "<div class=wrap><table><tr><th>broker</th><th>status</th><th>clients use</th>"
            f"<th>forwarded to</th><th>rack</th></tr>{''.join(rows)}</table></div>"
        )
    elif state == "syncing":
        table = "<p class=muted>No broker known yet: the source has not completed its first sync.</p>"
    else:
        table = "<p class=muted>No broker registered.</p>"
    stale_class = " stale" if state in ("stale", "unavailable") else ""
    return (
        f"<div class='card{stale_class}' id='{anchor('cluster', name)}'><b>{escape(name)}</b> "
        f"<span class='badge {_SOURCE_BADGES.get(state, 'warn')}'>{escape(state)}</span> "
        f"<span class=muted>{escape(source['kind'])} source{detail} · loopback "
        f"{escape(str(cluster.get('loopback_ip') or '-'))} · cluster id "
        f"<code>{escape(str(source.get('cluster_id') or 'unknown'))}</code></span>"
        + table
        + (f"<ul>{''.join(notes)}</ul>" if notes else "")
        + "</div>"
    )


def _status(broker: Mapping[str, Any], skipped: Mapping[int, str]) -> tuple[str, str]:
    """(badge kind, text): a broker the plan has is live or waiting (nothing pushed yet); one it has
    not was skipped, with why."""
    status = broker.get("status")
    if status == "waiting":
        return "waiting", "waiting: not pushed until every source synced"
    if status is not None:
        return str(status), str(status).replace("_", " ")
    reason = skipped.get(broker["id"])
    return "skipped", f"skipped: {reason}" if reason else "skipped"


def _broker_row(broker: Mapping[str, Any], status: tuple[str, str]) -> str:
    kind, text = status
    return (
        f"<tr><td>{escape(str(broker['id']))}</td>"
        f"<td><span class='badge {_STATUS_BADGES.get(kind, 'warn')}'>{escape(text)}</span></td>"
        f"<td><code>{escape(str(broker.get('planned') or '-'))}</code></td>"
        f"<td><code>{escape(str(broker.get('upstream') or '-'))}</code></td>"
        f"<td>{escape(str(broker.get('rack') or '-'))}</td></tr>"
    )
