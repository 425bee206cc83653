"""The status page's renderers, from plain values: well-formed HTML, every outside string escaped, a
badge that is green only when nothing is wrong, readable versions, tables that say when empty."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from envoy_data_plane.envoy.config.core.v3 import Node

from tests.support.protocol_world import CDS, NOW, World, ack, nack, only, sotw_stream
from tests.support.xds_wire import sotw_request
from xds.debug.page import render_page
from xds.debug.sampler import Sample
from xds.debug.sections.view import EMPTY_VERSION, ReplicaView, SnapshotView, StatusView, TypeVersion
from xds.pipeline.history import EventKind, EventLog, Severity
from xds.pipeline.publisher import Publication
from xds.serving.protocol import Views
from xds.serving.reports import StreamQuery, merge, report
from xds.serving.transport import StreamInfo

EVIL = "<script>alert(1)</script>"
_VOID = {"meta", "br", "link", "img", "input", "hr"}


class _Checker(HTMLParser):
    """Every element closed, in order (the page closes even what HTML lets it leave open)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.scripts = 0
        self.ids: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        if values.get("href"):
            self.hrefs.append(str(values["href"]))
        if tag not in _VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <circle .../> in SVG

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-3:]}"
        self.open.pop()


def _checked(html: str) -> _Checker:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.open == [], f"never closed: {checker.open}"
    assert html.startswith("<!doctype html>")
    return checker


def _replica(**changes: Any) -> ReplicaView:
    values: dict[str, Any] = {
        "host": "xds-0",
        "version": "0.1.0",
        "pid": 42,
        "started_at": NOW - 3700,
        "workers": 2,
        "workers_serving": 2,
        "xds_listen": "0.0.0.0:18000",
        "xds_security": "mTLS",
        "debug_listen": "127.0.0.1:19000",
    }
    values.update(changes)
    return ReplicaView(**values)


def _cluster(state: str = "synced", **changes: Any) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "source": {
            "kind": "static",
            "state": state,
            "stale_since": NOW - 30 if state == "stale" else None,
            "stale_seconds": 30.0 if state == "stale" else None,
            "error": None,
            "cluster_id": None,
        },
        "loopback_ip": "127.0.0.10",
        "brokers": [
            {
                "id": 1,
                "rack": "az1",
                "planned": "127.0.0.10:9091",
                "upstream": "10.0.0.1:9094",
                "status": "live",
            }
        ],
        "in_removal_grace": [],
        "plan_mismatches": [],
        "skipped": [],
    }
    cluster.update(changes)
    return cluster


_NO_STREAMS = {"total": 0, "by_state": {}, "by_version": {}, "streams": []}


def _view(
    clusters: dict[str, Any] | None = None,
    streams: dict[str, Any] | None = None,
    **changes: Any,
) -> StatusView:
    values: dict[str, Any] = {
        "now": NOW,
        "replica": _replica(),
        "waiting": {},
        "topology": {"clusters": clusters if clusters is not None else {"kafka-a": _cluster()}},
        "streams": streams if streams is not None else _NO_STREAMS,
        "snapshot": None,
        "events": (),
        "samples": (),
        "sample_interval": 10.0,
        "event_capacity": 200,
    }
    values.update(changes)
    return StatusView(**values)


def _summary(html: str) -> str:
    match = re.search(r"<div class='card summary (\w+)' id=summary>", html)
    assert match is not None
    return match.group(1)


def _stream_report(views: Views, nodes: dict[str, str | None]) -> dict[str, Any]:
    """A real report (xds.serving.reports) of sidecars named `nodes`, each in sync or NACKing with
    the error given."""
    streams = []
    for index, (node, error) in enumerate(nodes.items()):
        protocol = sotw_stream()
        first = only(protocol.receive(sotw_request(CDS, node=Node(id=node, cluster=EVIL)), views, NOW))
        protocol.receive(ack(first) if error is None else nack(first, "", error), views, NOW)
        streams.append(StreamInfo(f"1-{index}", f"ipv4:{EVIL}", "sotw", NOW, 0.0, protocol, identity=EVIL))
    query = StreamQuery(limit=50)
    return merge([report(streams, views, query)], query)


def test_the_page_is_well_formed_html_without_any_script():
    views = World().views({1: "10.0.0.1"})
    html = render_page(_view(streams=_stream_report(views, {"app-1": None, "app-2": "bad"})))
    checker = _checked(html)
    assert checker.scripts == 0
    assert "<svg" in html
    for href in checker.hrefs:  # every link is this server's or this page's: it works offline
        assert href.startswith(("/", "#")), href
    for href in (href for href in checker.hrefs if href.startswith("#")):
        assert href[1:] in checker.ids, href


def test_every_outside_string_is_escaped():
    views = World().views({1: "10.0.0.1"})
    events = EventLog()
    events.record(EventKind.SOURCE_LOST, f"zookeeper {EVIL} lost", EVIL, Severity.ERROR)
    events.record(EventKind.NACK, f"1 sidecar rejected clusters: {EVIL} — {EVIL}", severity=Severity.ERROR)
    stale = _cluster(
        "stale",
        brokers=[
            {
                "id": 1,
                "rack": EVIL,
                "planned": "127.0.0.10:9091",
                "upstream": f"{EVIL}:9094",
                "status": "live",
            }
        ],
        plan_mismatches=[f"broker 1 advertises {EVIL}"],
        skipped=[{"where": EVIL, "broker_id": 2, "reason": EVIL}],
    )
    stale["source"].update(error=EVIL, cluster_id=EVIL, kind=EVIL)
    view = _view(
        clusters={EVIL: stale},
        streams=_stream_report(views, {EVIL: EVIL, "app-2": None}),
        replica=_replica(host=EVIL, xds_listen=EVIL),
        waiting={EVIL: EVIL},
        events=events.recent(),
        build_error=EVIL,
    )
    html = render_page(view)
    _checked(html)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("&lt;script&gt;") >= 15  # node id, identity, peer, errors, hosts, events, ...


def test_a_node_id_with_a_script_is_shown_as_text():
    views = World().views({1: "10.0.0.1"})
    html = render_page(_view(streams=_stream_report(views, {EVIL: None})))
    assert EVIL not in html
    assert f"<td>{EVIL.replace('<', '&lt;').replace('>', '&gt;')} " in html


def test_the_badge_is_green_only_without_problems():
    assert _summary(render_page(_view())) == "ok"
    stale = _view(clusters={"kafka-a": _cluster("stale")})
    html = render_page(stale)
    assert _summary(html) == "bad"
    assert ">degraded<" in html
    assert "<a href='#cluster-kafka-a'>kafka-a: static source stale for 30 s" in html
    assert "id='cluster-kafka-a'" in html


@pytest.mark.parametrize(
    ("change", "expected", "anchor"),
    [
        ({"clusters": {"kafka-a": _cluster("unavailable")}}, "bad", "#cluster-kafka-a"),
        (
            {"clusters": {"kafka-a": _cluster(plan_mismatches=["broker 1 advertises x"])}},
            "warn",
            "#cluster-kafka-a",
        ),
        ({"build_error": "boom"}, "bad", "#clusters"),
        (
            {"samples": (Sample(NOW - 60, 0, 0, 0, 0, ()), Sample(NOW, 0, 0, 0, 3, ()))},
            "warn",
            "#events",
        ),
        ({"waiting": {"kafka-b": "zookeeper source has not completed its first sync"}}, "warn", None),
    ],
)
def test_each_kind_of_problem_turns_the_badge_and_links_to_its_section(change, expected, anchor):
    html = render_page(_view(**change))
    assert _summary(html) == expected
    if anchor is not None:
        assert f"<a href='{anchor}'>" in html


def test_nacking_sidecars_are_a_problem_linked_to_the_sidecars():
    views = World().views({1: "10.0.0.1"})
    html = render_page(_view(streams=_stream_report(views, {"app-1": "no such secret"})))
    assert _summary(html) == "bad"
    assert "<a href='#sidecars'>1 sidecar rejecting config (NACK)</a>" in html
    assert "rejected: no such secret" in html


def test_the_replica_says_which_one_it_is():
    html = render_page(_view())
    assert "host <b>xds-0</b> · kafka-xds 0.1.0 · pid 42 · up 61 min" in html
    assert "2 workers (all serving)" in html
    assert "xDS (mTLS) <code>0.0.0.0:18000</code> · debug <code>127.0.0.1:19000</code>" in html
    assert "1 of 2 serving" in render_page(_view(replica=_replica(workers_serving=1)))


def _snapshot_view(secrets: int = 0) -> SnapshotView:
    return SnapshotView(
        7,
        NOW - 120,
        (
            TypeVersion("secrets", EMPTY_VERSION if not secrets else "5ec7e75ec7e75ec7", secrets),
            TypeVersion("clusters", "c1c1c1c1c1c1c1c1", 3),
        ),
        {
            ("clusters", "c0c0c0c0c0c0c0c0"): Publication(6, NOW - 600, {}),
            ("clusters", "c1c1c1c1c1c1c1c1"): Publication(7, NOW - 120, {}),
        },
    )


def test_versions_read_as_generations_and_an_empty_type_shows_none():
    html = render_page(_view(snapshot=_snapshot_view()))
    assert "Snapshot generation <b>7</b>, published" in html
    assert "(2 min ago)" in html
    assert "clusters <code>c1c1c1c1c1c1c1c1</code>" in html
    assert "secrets <span class=muted>none</span>" in html
    assert EMPTY_VERSION not in html  # the hash of nothing is never shown as a version


def test_sidecars_by_version_are_a_bar_per_type_with_generations():
    views = World().views({1: "10.0.0.1"})
    streams = _stream_report(views, {"app-1": None, "app-2": None})
    current = views.snapshot.versions[CDS]
    publications = (
        Publication(6, NOW - 600, {CDS: "0ld0ld0ld0ld0ld0"}),
        Publication(7, NOW - 60, {CDS: current}),
    )
    snapshot = SnapshotView.build(7, (TypeVersion("clusters", current, 1),), publications)
    streams["by_version"]["clusters"]["0ld0ld0ld0ld0ld0"] = 1  # a third sidecar, still on gen 6
    html = render_page(_view(streams=dict(streams, total=3), snapshot=snapshot))
    assert "aria-label='Sidecars by the version they hold" in html
    assert "fill='#2e7d32'><title>clusters: 2 at gen 7, current</title>" in html
    assert "<title>clusters: 1 at gen 6</title>" in html
    assert "2 of 3 at the current version" in html


def test_what_every_sidecar_shares_is_said_once_above_the_table():
    views = World().views({1: "10.0.0.1"})
    html = render_page(_view(streams=_stream_report(views, {"app-1": None, "app-2": None, "app-3": None})))
    assert "Every sidecar below: " in html
    header = re.search(r"<table><tr>((?:<th>[^<]*</th>)+)</tr><tr><td>app-", html)
    assert header is not None
    assert header.group(1) == "<th>node</th><th>from</th><th>connected</th>"  # identity, Envoy... once
    assert html.count("1.40.0") <= 1


def test_empty_tables_say_so_in_words():
    html = render_page(_view(clusters={"kafka-a": _cluster("syncing", brokers=[])}))
    assert "No broker known yet: the source has not completed its first sync." in html
    assert "No sidecar is connected. Sidecars connect to xDS at <code>0.0.0.0:18000</code> (mTLS)" in html
    assert "kafka-xds bootstrap --xds HOST:PORT" in html
    assert "No events yet." in html
    assert "No broker registered." in render_page(_view(clusters={"kafka-a": _cluster(brokers=[])}))
    assert "No Kafka cluster is configured." in render_page(_view(clusters={}))


def test_a_waiting_broker_shows_its_planned_address():
    waiting = _cluster(
        "synced",
        brokers=[
            {
                "id": 3,
                "rack": None,
                "planned": "127.0.0.10:9093",
                "upstream": "10.0.0.3:9094",
                "status": "waiting",
            }
        ],
    )
    html = render_page(_view(clusters={"kafka-a": waiting}, waiting={"kafka-b": "syncing"}))
    assert "waiting: not pushed until every source synced" in html
    assert "<code>127.0.0.10:9093</code>" in html
    assert ">skipped<" not in html


def test_a_skipped_broker_says_why():
    skipped = _cluster(
        brokers=[{"id": 2, "rack": None}],
        skipped=[{"where": "kafka-a/broker-2", "broker_id": 2, "reason": "no 'MESH' listener registered"}],
    )
    assert "skipped: no &#x27;MESH&#x27; listener registered" in render_page(
        _view(clusters={"kafka-a": skipped})
    )


def test_charts_are_inline_svg_from_the_samples():
    samples = tuple(
        Sample(
            NOW - 600 + 10 * index,
            5 + index % 3,
            100.0 * index,
            float(index // 30),
            0.0,
            ((0.1, index), (float("inf"), index)),
        )
        for index in range(61)
    )
    html = render_page(_view(samples=samples))
    assert html.count("<svg class=chart-svg") == 5
    assert "Connected sidecars <b>now 5</b>" in html
    assert "Pushes per minute <b>now 600</b>" in html
    assert "Convergence p99 <b>now 0.099 s</b>" in html
    assert "<polyline" in html
    assert "no data yet" in render_page(_view())
