"""The status page's health sections (xds.debug.health_page): well-formed HTML with an inline SVG
heat map, the values the views hold, unreachable clusters in red, and names escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from tests.support.health import Clock, ScriptedReader, cluster, orders, settings, stopped, topic
from xds.config.model import KraftSettings
from xds.debug.health_page import render_health
from xds.debug.health_views import page_view
from xds.health.fetch import ClusterUnreachable
from xds.health.follower import HealthFollower
from xds.health.state import ClusterState

CONNECTION = KraftSettings(bootstrap_servers=["10.0.0.1:9092"])
_VOID = {"meta", "br", "hr", "img", "input", "link", "rect"}  # rect: an SVG element written self-closed
SVG = "{http://www.w3.org/2000/svg}"


class _Balance(HTMLParser):
    """Fails on any element closed out of order or left open (what a browser would silently mend)."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in _VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: object) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()


def _well_formed(html: str) -> None:
    parser = _Balance()
    parser.feed(html)
    parser.close()
    assert parser.open == [], f"left open: {parser.open}"


async def _section(*answers: ClusterState | BaseException, clock: Clock | None = None) -> str:
    reader = ScriptedReader(answers[0])
    follower = HealthFollower("kafka-a", CONNECTION, settings(), reader=reader, clock=clock or Clock())
    for answer in answers:
        reader.then(answer)
        await follower.poll()
    return render_health([page_view(follower.status())])


def _svg(html: str) -> ET.Element:
    start, end = html.index("<svg"), html.index("</svg>") + len("</svg>")
    return ET.fromstring(html[start:end])  # SVG must be well-formed XML


async def test_nothing_is_shown_without_a_followed_cluster():
    assert render_health([]) == ""


async def test_a_healthy_cluster_shows_counts_restartable_brokers_and_the_heat_map():
    html = await _section(cluster(orders(), min_isr=1))
    _well_formed(html)
    assert "<span class='badge ok'>in sync</span>" in html
    assert "Partitions: 4 · in sync 4" in html
    assert "<b>Safe to restart now:</b> <span class='badge ok'>1, 2, 3, 4</span>" in html
    svg = _svg(html)
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert texts[:2] == ["az-a", "az-b"] and "k8s-1" in texts and "k8s-2" in texts
    assert "3 replicas" in texts  # each broker holds 3 of orders' 12 replicas
    assert "1 leaders · 1 brokers" in texts
    assert not any(g.get("class") == "cell violation" for g in svg.iter(f"{SVG}g"))
    assert "No new topic has broken placement" in html


async def test_violations_outline_the_cells_to_blame_and_list_rules_topics_worst_and_anomalies():
    html = await _section(
        cluster(orders(), min_isr=1), cluster([*orders(), *topic("skewed", (1, 2), (2, 1))], min_isr=1)
    )
    _well_formed(html)
    svg = _svg(html)
    blamed = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "cell violation"]
    titles = sorted(g.find(f"{SVG}title").text or "" for g in blamed)  # type: ignore[union-attr]
    assert titles == [
        "k8s-1 / az-a: 5 replicas, 2 leaders, 1 brokers, 2 violating partitions",
        "k8s-1 / az-b: 5 replicas, 2 leaders, 1 brokers, 2 violating partitions",
    ]
    assert all(g.find(f"{SVG}rect").get("stroke") == "#c62828" for g in blamed)  # type: ignore[union-attr]
    assert "<span class='badge bad'>spread: 2</span>" in html
    assert "<tr><td>skewed</td>" in html
    assert "<b>Worst partitions</b> (violations): <code>skewed-0</code> (3)" in html
    assert "<span class='badge bad'>new topic</span>" in html
    assert "topic skewed breaks spread (2), dimension-loss (2): skewed-0, skewed-1" in html


async def test_each_brokers_readiness_and_the_blocked_brokers_are_shown():
    html = await _section(stopped(cluster(orders()), 4))
    _well_formed(html)
    assert "<span class='badge warn'>degraded</span>" in html
    assert "<span class='badge warn'>at min isr: 3</span>" in html
    assert (
        "<tr><td>1</td><td style='white-space:nowrap'><span class='badge bad'>not ready</span></td>"
        "<td>not ready: broker 1 in sync; "
        "cluster: 3 at-min-ISR partitions (orders-1, orders-2, orders-3)</td></tr>"
    ) in html
    assert (
        "<li>broker 1: blocked by 2 partitions: orders-2 at-min-isr (2/2), orders-3 at-min-isr (2/2)</li>"
        in html
    )


async def test_an_unreachable_cluster_is_shown_in_red_with_its_last_error_and_since_when():
    clock = Clock()
    unreachable = ClusterUnreachable("kafka-a", (("10.0.0.1:9092", "connection refused"),), False)
    html = await _section(cluster(orders()), unreachable, clock=clock)
    _well_formed(html)
    assert "<span class='badge bad'>unreachable</span>" in html
    assert "<p style='color:#c62828'><b>cluster unreachable for 0 s</b> (since " in html
    assert "<code>10.0.0.1:9092: connection refused</code>" in html
    assert "<b>Safe to restart now:</b> <b style='color:#c62828'>none</b>" in html
    assert "(last known)" in html
    assert "badge ok'>ready" not in html


async def test_names_from_the_cluster_are_escaped():
    html = await _section(cluster(topic("<script>x</script>", (1, 2)), min_isr=1))
    assert "<script>" not in html and "&lt;script&gt;" in html
