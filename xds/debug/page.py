"""The status page at `/`: one server-rendered HTML page an on-call engineer can read on a phone.

No build step and no JavaScript needed (a meta refresh reloads it); it is made from the same
JSON views the debug endpoints serve, so the page and the API never disagree.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from xds.debug.health_page import render_health
from xds.serving.reports import LAGGING_SECONDS

_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:12px;color:#1d2330;background:#f6f7f9}
h1{font-size:20px;margin:0 0 8px}h2{font-size:17px;margin:20px 0 8px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 12px;margin:0 0 12px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;font-weight:600}
.ok{background:#dff5e3;color:#17612b}.warn{background:#fff1cc;color:#7a5300}.bad{background:#fde0e0;color:#8a1c1c}
.stale{border-color:#e0a800;box-shadow:0 0 0 2px #ffe08a inset}
table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:4px 6px;
border-bottom:1px solid #eef0f3;vertical-align:top}th{color:#5b6474;font-weight:600}
code{font-size:13px}.muted{color:#6b7383}ul{margin:4px 0 0 18px;padding:0}
.wrap{overflow-x:auto}
"""


def render_page(
    topology: dict[str, Any],
    streams: dict[str, Any],
    waiting: dict[str, str],
    versions: dict[str, str],
    health: list[dict[str, Any]] | None = None,
) -> str:
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        '<meta http-equiv=refresh content="5">',
        f"<title>kafka-xds status</title><style>{_STYLE}</style></head><body>",
        "<h1>kafka-xds</h1>",
        _readiness(waiting, versions),
        "<h2>Kafka clusters</h2>",
        *(_cluster(name, cluster) for name, cluster in topology["clusters"].items()),
        render_health(health or []),
        "<h2>Sidecars</h2>",
        _sidecars(streams),
        f"<p class=muted>Rendered {escape(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}; refreshes every 5 s. "
        "JSON: <a href=/debug/topology>topology</a> · <a href=/debug/streams>streams</a> · "
        "<a href=/debug/snapshot>snapshot</a> · <a href=/debug/plan>plan</a> · "
        "<a href=/metrics>metrics</a></p>",
        "</body></html>",
    ]
    return "".join(parts)


def _readiness(waiting: dict[str, str], versions: dict[str, str]) -> str:
    if waiting:
        reasons = "".join(
            f"<li><b>{escape(name)}</b>: {escape(reason)}</li>" for name, reason in waiting.items()
        )
        return (
            "<div class=card><span class='badge warn'>not ready</span> nothing is pushed yet"
            f"<ul>{reasons}</ul></div>"
        )
    shown = " ".join(
        f"{escape(_short(type_url))} <code>{escape(version)}</code>" for type_url, version in versions.items()
    )
    badge = "<span class='badge ok'>ready</span>"
    return f"<div class=card>{badge} <span class=muted>snapshot: {shown}</span></div>"


def _short(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]


def _cluster(name: str, cluster: dict[str, Any]) -> str:
    source = cluster["source"]
    state = source["state"]
    badge = {"synced": "ok", "syncing": "warn", "stale": "bad", "unavailable": "bad"}.get(state, "warn")
    detail = ""
    if state == "stale":
        detail = f" for {source['stale_seconds']} s"
    if source.get("error"):
        detail += f": {escape(str(source['error']))}"
    rows = []
    for broker in cluster["brokers"]:
        rows.append(_broker_row(broker, broker.get("status", "skipped")))
    for broker in cluster["in_removal_grace"]:
        until = (
            time.strftime("%H:%M:%S", time.localtime(broker["remove_at"])) if broker.get("remove_at") else "?"
        )
        rows.append(_broker_row(broker, f"in grace until {until}"))
    notes = [f"<li class=bad>{escape(text)}</li>" for text in cluster["plan_mismatches"]]
    notes += [
        f"<li>skipped <code>{escape(skip['where'])}</code>: {escape(skip['reason'])}</li>"
        for skip in cluster["skipped"]
    ]
    stale_class = " stale" if state in ("stale", "unavailable") else ""
    return (
        f"<div class='card{stale_class}'><b>{escape(name)}</b> "
        f"<span class='badge {badge}'>{escape(state)}</span> "
        f"<span class=muted>{escape(source['kind'])} source{detail} · loopback "
        f"{escape(str(cluster.get('loopback_ip') or '-'))} · cluster id "
        f"<code>{escape(str(source.get('cluster_id') or 'unknown'))}</code></span>"
        "<div class=wrap><table><tr><th>broker</th><th>status</th><th>clients use</th><th>forwarded to</th>"
        f"<th>rack</th></tr>{''.join(rows)}</table></div>"
        + (f"<ul>{''.join(notes)}</ul>" if notes else "")
        + "</div>"
    )


def _broker_row(broker: dict[str, Any], status: str) -> str:
    return (
        f"<tr><td>{escape(str(broker['id']))}</td><td>{escape(status)}</td>"
        f"<td><code>{escape(str(broker.get('planned') or '-'))}</code></td>"
        f"<td><code>{escape(str(broker.get('upstream') or '-'))}</code></td>"
        f"<td>{escape(str(broker.get('rack') or '-'))}</td></tr>"
    )


_GROUPS = {
    "nacked": ("rejecting config (NACK)", "bad"),
    "lagging": (f"lagging (a response unanswered for over {LAGGING_SECONDS:g} s)", "bad"),
    "pending": ("catching up", "warn"),
    "idle": ("connected, nothing requested", "warn"),
    "in_sync": ("in sync", "ok"),
}


def _sidecars(report: dict[str, Any]) -> str:
    """Counts first (by state, by version), then the first page of sidecars, problems first."""
    if not report["total"]:
        return "<div class='card muted'>No sidecar is connected.</div>"
    badges = " ".join(
        f"<a href='/debug/streams?state={state}'><span class='badge {_GROUPS[state][1]}'>"
        f"{escape(_GROUPS[state][0])}: {count}</span></a>"
        for state, count in report["by_state"].items()
        if count
    )
    versions = "".join(
        f"<tr><td>{escape(type_name)}</td><td>"
        + "<br>".join(f"<code>{escape(version)}</code>: {count}" for version, count in counts.items())
        + "</td></tr>"
        for type_name, counts in report["by_version"].items()
    )
    rows = "".join(_sidecar_row(stream) for stream in report["streams"])
    shown = len(report["streams"])
    more = (
        f"<p class=muted>{shown} of {report['total']} shown, problems first; all of them, paged and "
        "filtered: <a href='/debug/streams'>/debug/streams</a> (?state=, ?node=, ?identity=, ?offset=, "
        "?limit=)</p>"
        if shown < report["total"]
        else ""
    )
    return (
        f"<div class=card>{report['total']} connected · {badges}"
        f"<div class=wrap><table><tr><th>type</th><th>ACKed versions (sidecars)</th></tr>{versions}"
        "</table></div></div>"
        "<div class=card><div class=wrap><table><tr><th>state</th><th>node</th><th>identity</th>"
        "<th>Kafka clusters</th><th>acked versions</th>"
        f"<th>Envoy</th><th>from</th><th>connected</th></tr>{rows}</table></div>{more}</div>"
    )


def _sidecar_row(stream: dict[str, Any]) -> str:
    title, badge = _GROUPS[stream["sync"]]
    acked = []
    for type_name, state in stream["types"].items():
        text = f"{escape(type_name)} <code>{escape(str(state['acked_version'] or '-'))}</code>"
        if state["rejected"] and state["last_nack"]:
            text += f" <span class=bad>rejected: {escape(state['last_nack']['error'])}</span>"
        acked.append(text)
    since = time.strftime("%H:%M:%S", time.localtime(stream["connected_at"]))
    node = escape(stream["node_id"] or "?") + (
        f" <span class=muted>({escape(stream['node_cluster'])})</span>" if stream["node_cluster"] else ""
    )
    return (
        f"<tr><td><span class='badge {badge}'>{escape(title.split(' (')[0])}</span></td>"
        f"<td>{node}</td><td>{_identity(stream)}</td><td>{_allowed(stream)}</td>"
        f"<td>{'<br>'.join(acked)}</td><td>{escape(stream['envoy_version'] or '?')}</td>"
        f"<td>{escape(stream['peer'])}</td><td>{since}</td></tr>"
    )


def _identity(stream: dict[str, Any]) -> str:
    """The verified certificate identity (the node id is only what the sidecar claims)."""
    identity = stream.get("identity")
    return f"<code>{escape(identity)}</code>" if identity else "<span class=muted>not verified</span>"


def _allowed(stream: dict[str, Any]) -> str:
    allowed = stream.get("allowed_clusters")
    if allowed is None:
        return "<span class=muted>all</span>"
    return escape(", ".join(allowed)) or "<span class=bad>none</span>"
