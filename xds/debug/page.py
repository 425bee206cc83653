"""The status page at `/`: one server-rendered HTML page an on-call engineer can read on a phone.

No build step, no JavaScript, nothing loaded from elsewhere (a meta refresh reloads it; the charts
are inline SVG), so it works offline. From the top: which replica this is, a badge that is green
only when nothing is wrong, and the problems, each linked to its section; the last hour as charts;
the recent events; the Kafka clusters and their brokers; the sidecars. Made from one `StatusView`
(xds.debug.sections.view) by the section renderers of xds.debug.sections, in a thread: a large
fleet's page is not rendered on the event loop.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from xds.debug.health_page import render_health
from xds.debug.sections.clusters import render_clusters
from xds.debug.sections.history import render_charts, render_events
from xds.debug.sections.sidecars import render_sidecars
from xds.debug.sections.summary import render_replica, render_summary
from xds.debug.sections.view import StatusView

__all__ = ["render_page"]

_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:12px;color:#1d2330;background:#f6f7f9}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:20px 0 8px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 12px;margin:0 0 12px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;font-weight:600}
.ok{background:#dff5e3;color:#17612b}.warn{background:#fff1cc;color:#7a5300}.bad{background:#fde0e0;color:#8a1c1c}
.stale{border-color:#e0a800;box-shadow:0 0 0 2px #ffe08a inset}
.summary.ok{background:#eef9f0;border-color:#2e7d32}.summary.warn{background:#fff8e1;border-color:#e0a800}
.summary.bad{background:#fdecec;border-color:#c62828}.summary{border-width:2px;color:#1d2330}
.badge.big{font-size:16px;padding:3px 12px}.summary .badge.ok{background:#2e7d32;color:#fff}
.summary .badge.warn{background:#e0a800;color:#1d2330}.summary .badge.bad{background:#c62828;color:#fff}
ul.problems li.bad a{color:#8a1c1c}ul.problems li.warn a{color:#7a5300}
ul.problems li{background:none}
table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:4px 6px;
border-bottom:1px solid #eef0f3;vertical-align:top}th{color:#5b6474;font-weight:600}
code{font-size:13px}.muted{color:#6b7383}ul{margin:4px 0 0 18px;padding:0}
.wrap{overflow-x:auto}.charts{display:flex;flex-wrap:wrap;gap:8px 16px}
figure.chart{margin:0}figcaption{font-size:13px;color:#5b6474}svg.chart-svg{max-width:100%;height:auto}
"""


def render_page(view: StatusView, health: list[dict[str, Any]] | None = None) -> str:
    """The whole page; every string from outside (hosts, node ids, errors) is escaped by its section."""
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        '<meta http-equiv=refresh content="5">',
        f"<title>kafka-xds status</title><style>{_STYLE}</style></head><body>",
        "<h1>kafka-xds</h1>",
        render_replica(view.replica, view.now),
        render_summary(view),
        "<h2>Last hour</h2>",
        render_charts(view.samples, view.now, view.sample_interval),
        "<h2>Recent events</h2>",
        render_events(view.events, view.event_capacity),
        "<h2>Kafka clusters</h2>",
        render_clusters(view.topology),
        render_health(health or []),
        "<h2>Sidecars</h2>",
        render_sidecars(view.streams, view.snapshot, view.replica),
        f"<p class=muted>Rendered {escape(time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(view.now)))}; "
        "refreshes every 5 s. JSON: <a href=/debug/topology>topology</a> · "
        "<a href=/debug/streams>streams</a> · <a href=/debug/snapshot>snapshot</a> · "
        "<a href=/debug/plan>plan</a> · <a href=/debug/events>events</a> · <a href=/metrics>metrics</a></p>",
        "</body></html>",
    ]
    return "".join(parts)
