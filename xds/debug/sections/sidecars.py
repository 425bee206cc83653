"""The sidecars: counts by state, a bar per type of the versions they hold (how far a push has got),
then the first page of them, problems first. What every row would repeat is said once above the
table instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from xds.debug.sections.format import clock
from xds.debug.sections.svg import GREEN, GREY, YELLOW, Segment, stacked_bar
from xds.debug.sections.view import EMPTY_VERSION, ReplicaView, SnapshotView, version_label
from xds.serving.reports import LAGGING_SECONDS

__all__ = ["render_sidecars"]

_GROUPS = {
    "nacked": ("rejecting config (NACK)", "bad"),
    "lagging": (f"lagging (a response unanswered for over {LAGGING_SECONDS:g} s)", "bad"),
    "pending": ("catching up", "warn"),
    "idle": ("connected, nothing requested", "warn"),
    "in_sync": ("in sync", "ok"),
}
# Columns whose value is said once above the table when every row has the same one.
_COMMON = ("state", "identity", "Kafka clusters", "acked versions", "Envoy")


def render_sidecars(report: Mapping[str, Any], snapshot: SnapshotView | None, replica: ReplicaView) -> str:
    if not report["total"]:
        return (
            "<div class='card muted' id=sidecars>No sidecar is connected. Sidecars connect to xDS at "
            f"<code>{escape(replica.xds_listen)}</code> ({escape(replica.xds_security)}): check that "
            "their bootstrap points there (<code>kafka-xds bootstrap --xds HOST:PORT</code>), that they "
            "can reach it (a firewall, another host name), and Envoy's log (a TLS or "
            "certificate error there means the xDS TLS settings differ).</div>"
        )
    badges = " ".join(
        f"<a href='/debug/streams?state={state}'><span class='badge {_GROUPS[state][1]}'>"
        f"{escape(_GROUPS[state][0])}: {count}</span></a>"
        for state, count in report["by_state"].items()
        if count
    )
    rows = [_cells(stream, snapshot) for stream in report["streams"]]
    shown = len(rows)
    more = (
        f"<p class=muted>{shown} of {report['total']} shown, problems first; all of them, paged and "
        "filtered: <a href='/debug/streams'>/debug/streams</a> (?state=, ?node=, ?identity=, ?offset=, "
        "?limit=)</p>"
        if shown < report["total"]
        else ""
    )
    return (
        f"<div class=card id=sidecars>{report['total']} connected · {badges}"
        f"{_versions(report['by_version'], snapshot)}</div>"
        f"<div class=card>{_table(rows)}{more}</div>"
    )


def _versions(by_version: Mapping[str, Mapping[str, int]], snapshot: SnapshotView | None) -> str:
    """A stacked bar per type: how many sidecars hold the current version, an older one, none."""
    if not by_version:
        return "<p class=muted>No sidecar has requested a resource yet.</p>"
    rows = []
    lines = []
    for type_name, counts in by_version.items():
        current = snapshot.current(type_name) if snapshot is not None else None
        segments = []
        for version, count in counts.items():
            colour = GREEN if version == current else GREY if version in ("-", EMPTY_VERSION) else YELLOW
            label = version_label(snapshot, type_name, version)
            segments.append(Segment(label, count, colour))
        segments.sort(key=lambda segment: segment.colour != GREEN)
        rows.append((type_name, segments))
        total = sum(counts.values())
        at_current = counts.get(current, 0) if current is not None else 0
        held = ", ".join(
            f"<code>{escape(version[:8])}</code> ({escape(version_label(snapshot, type_name, version))}): "
            f"{count}"
            for version, count in counts.items()
        )
        lines.append(
            f"<li><b>{escape(type_name)}</b>: {at_current} of {total} at the current version · {held}</li>"
        )
    chart = stacked_bar(rows, "Sidecars by the version they hold, per type (green: current)")
    return (
        "<p class=muted>Sidecars by the version they have ACKed (green: the current snapshot's; "
        f"yellow: older; grey: none):</p>{chart}<ul>{''.join(lines)}</ul>"
    )


def _cells(stream: Mapping[str, Any], snapshot: SnapshotView | None) -> dict[str, str]:
    title, badge = _GROUPS[stream["sync"]]
    acked = []
    for type_name, state in stream["types"].items():
        version = state["acked_version"]
        label = escape(version_label(snapshot, type_name, version))
        text = f"{escape(type_name)} <span title='{escape(str(version or ''))}'>{label}</span>"
        if state["rejected"] and state["last_nack"]:
            text += f" <span class=bad>rejected: {escape(state['last_nack']['error'])}</span>"
        acked.append(text)
    node = escape(stream["node_id"] or "?") + (
        f" <span class=muted>({escape(stream['node_cluster'])})</span>" if stream["node_cluster"] else ""
    )
    return {
        "state": f"<span class='badge {badge}'>{escape(title.split(' (')[0])}</span>",
        "node": node,
        "identity": _identity(stream),
        "Kafka clusters": _allowed(stream),
        "acked versions": "<br>".join(acked) or "<span class=muted>nothing requested</span>",
        "Envoy": escape(stream["envoy_version"] or "?"),
        "from": escape(stream["peer"]),
        "connected": clock(stream["connected_at"]),
    }


def _table(rows: Sequence[dict[str, str]]) -> str:
    if not rows:
        return "<p class=muted>No sidecar on this page: see /debug/streams.</p>"
    columns = list(rows[0])
    common = [
        column for column in _COMMON if len(rows) > 1 and all(row[column] == rows[0][column] for row in rows)
    ]
    shown = [column for column in columns if column not in common]
    every = (
        "<p>Every sidecar below: "
        + " · ".join(
            f"<span class=muted>{escape(column)}</span> {rows[0][column].replace('<br>', ', ')}"
            for column in common
        )
        + "</p>"
        if common
        else ""
    )
    header = "".join(f"<th>{escape(column)}</th>" for column in shown)
    body = "".join("<tr>" + "".join(f"<td>{row[column]}</td>" for column in shown) + "</tr>" for row in rows)
    return f"{every}<div class=wrap><table><tr>{header}</tr>{body}</table></div>"


def _identity(stream: Mapping[str, Any]) -> str:
    """The verified certificate identity (the node id is only what the sidecar claims)."""
    identity = stream.get("identity")
    return f"<code>{escape(identity)}</code>" if identity else "<span class=muted>not verified</span>"


def _allowed(stream: Mapping[str, Any]) -> str:
    allowed = stream.get("allowed_clusters")
    if allowed is None:
        return "<span class=muted>all</span>"
    return escape(", ".join(allowed)) or "<span class=bad>none</span>"
