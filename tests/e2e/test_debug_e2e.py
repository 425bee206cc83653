"""The operator's view against a running server with a real Envoy connected."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack
from tests.e2e.test_envoy_e2e import _answers, _cluster, _stat_at_least
from tests.support.envoy import Envoy
from tests.support.wait import eventually, free_port
from tests.support.xds_process import XdsProcess

pytestmark = pytest.mark.envoy


async def _started(stack: Stack, **overrides: Any) -> tuple[dict[str, Any], XdsProcess, Envoy]:
    cluster = _cluster(stack.loopback, stack.brokers_file, client_listener="CLIENT")
    await stack.start([1], cluster, {"rack": "az1", "listeners": {"CLIENT": "10.9.9.9:9092"}}, **overrides)
    await eventually(lambda: _answers(stack.loopback, 9091, "broker-1"), what="traffic through the sidecar")
    return stack.config, stack.server, stack.envoy


def _metrics(text: str) -> dict[str, float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


async def test_streams_show_the_connected_envoy_in_sync(stack):
    _, server, _ = await _started(stack)

    async def in_sync() -> Any:
        _, body = await server.get("/debug/streams")
        streams = body["streams"]
        return streams if streams and streams[0]["sync"] == "in_sync" else None

    streams = await eventually(in_sync, what="the sidecar in sync")
    stream = streams[0]
    assert stream["node_id"] == "app-1"
    assert stream["node_cluster"] == "kafka-clients"
    assert stream["envoy_version"] == "1.40.0"
    family, peer_ip, _ = stream["peer"].split(":")
    assert family == "ipv4"
    assert ipaddress.ip_address(peer_ip).is_loopback  # the sidecar, on this host
    _, snapshot = await server.get("/debug/snapshot")
    assert stream["types"]["clusters"]["acked_version"] == snapshot["versions"]["clusters"]
    assert stream["types"]["listeners"]["acked_version"] == snapshot["versions"]["listeners"]
    assert stream["types"]["endpoints"]["subscribed"] == ["kafka-a/broker-1"]
    status, one = await server.get("/debug/streams?node=app-1")
    assert status == 200
    assert len(one["streams"]) == 1
    assert (await server.get("/debug/streams?node=nobody"))[0] == 404


async def test_topology_and_plan_show_brokers_and_mismatches(stack):
    _, server, _ = await _started(stack)
    _, topology = await server.get("/debug/topology")
    cluster = topology["clusters"]["kafka-a"]
    assert cluster["source"]["state"] == "synced"
    assert cluster["brokers"][0]["planned"] == f"{stack.loopback}:9091"
    assert "advertises 10.9.9.9:9092" in cluster["plan_mismatches"][0]
    _, plan = await server.get("/debug/plan")
    assert plan["rows"] == [
        {
            "cluster": "kafka-a",
            "broker_id": 1,
            "loopback_ip": stack.loopback,
            "port": 9091,
            "upstream": plan["rows"][0]["upstream"],
            "status": "live",
        }
    ]
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.debug_url + "/debug/plan", headers={"Accept": "text/plain"}) as response,
    ):
        text = await response.text()
    assert text.splitlines()[1].startswith(f"kafka-a\t1\t{stack.loopback}\t9091\t")


async def test_forced_nack_shows_in_streams_metrics_and_page(tmp_path, stack, xds_processes):
    config, first, envoy = await _started(stack)
    await first.terminate()
    broken = dict(config, upstream_tls=dict(config["upstream_tls"], ca_file=str(tmp_path / "missing-ca.pem")))
    server = await xds_processes(broken, name="broken")
    # The clusters only name the trusted CA's secret: Envoy rejects that secret's update.
    await eventually(
        lambda: _stat_at_least(envoy, "sds.kafka-a/trusted-ca.update_rejected", 1), what="a NACK"
    )

    async def nacked() -> Any:
        _, body = await server.get("/debug/streams?node=app-1")
        return body["streams"][0] if body["streams"][0]["sync"] == "nacked" else None

    stream = await eventually(nacked, what="the NACK in /debug/streams")
    secrets = stream["types"]["secrets"]
    assert secrets["rejected"]
    assert "missing-ca.pem" in secrets["last_nack"]["error"]
    assert secrets["acked_version"] != secrets["sent_version"]

    status, text = await server.get("/metrics")
    assert status == 200
    metrics = _metrics(text)
    assert metrics["kafka_xds_nacks_total{type=secrets}"] == 1
    assert metrics["kafka_xds_pushes_total{type=secrets}"] >= 1
    assert metrics["kafka_xds_connected_streams{}"] == 1
    assert metrics["kafka_xds_brokers{cluster=kafka-a,state=live}"] == 1
    assert metrics["kafka_xds_plan_mismatches{cluster=kafka-a}"] == 1
    assert metrics["kafka_xds_source_state{cluster=kafka-a,state=synced}"] == 1
    assert metrics["kafka_xds_snapshot_build_seconds_count{}"] >= 1

    _, page = await server.get("/")
    assert "rejecting config (NACK): 1" in page
    assert "missing-ca.pem" in page
    assert "<a href='#sidecars'>1 sidecar rejecting config (NACK)</a>" in page  # a problem at the top

    async def nack_event() -> Any:
        _, body = await server.get("/debug/events")
        return [recorded for recorded in body["events"] if recorded["kind"] == "nack"]

    # From the worker that serves the sidecar to the main process's history, sampled every 10 s.
    (recorded,) = await eventually(nack_event, timeout=30, what="the NACK in /debug/events")
    assert recorded["text"].startswith("1 sidecar rejected secrets version ")
    assert "missing-ca.pem" in recorded["text"]
    assert recorded["text"].endswith("— app-1")


async def test_metrics_time_first_syncs_apart_from_the_convergence_of_changes(stack):
    _, server, _ = await _started(stack)

    async def synced() -> Any:
        metrics = _metrics((await server.get("/metrics"))[1])
        return metrics if metrics.get("kafka_xds_initial_sync_seconds_count{}", 0) >= 1 else None

    metrics = await eventually(synced, what="the sidecar's first sync timed")
    assert metrics["kafka_xds_acks_total{type=clusters}"] >= 1
    assert metrics["kafka_xds_acks_total{type=endpoints}"] >= 1
    assert metrics["kafka_xds_acks_total{type=listeners}"] >= 1
    # A sidecar that connects after a change is not that change converging.
    assert metrics["kafka_xds_convergence_seconds_count{}"] == 0
    assert metrics["kafka_xds_nacks_total{type=clusters}"] == 0
    assert metrics["kafka_xds_streams_ended_total{reason=error}"] == 0

    await stack.move(1, {"rack": "az1", "listeners": {"CLIENT": "10.9.9.9:9092"}})

    async def converged() -> Any:
        metrics = _metrics((await server.get("/metrics"))[1])
        return metrics if metrics.get("kafka_xds_convergence_seconds_count{}", 0) >= 1 else None

    metrics = await eventually(converged, what="the move's convergence timed")
    assert metrics["kafka_xds_push_fanout_seconds_count{}"] >= 1
    assert metrics["kafka_xds_initial_sync_seconds_count{}"] == 1


async def test_token_protects_everything_but_health(tmp_path, stack):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    _, server, _ = await _started(
        stack,
        debug={"listen": f"{stack.host}:{free_port(stack.host)}", "token_file": str(token_file)},
    )
    assert (await server.get("/healthz"))[0] == 200
    assert (await server.get("/readyz"))[0] == 200
    assert (await server.get("/debug/topology"))[0] == 401
    assert (await server.get("/metrics"))[0] == 401
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            server.debug_url + "/debug/topology", headers={"Authorization": "Bearer s3cret"}
        ) as response,
    ):
        assert response.status == 200


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


async def test_status_page_renders_in_a_real_browser(tmp_path, stack):
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "Chromium is not installed (apt-get install chromium); the page is still tested as HTML above"
        )
    _, server, _ = await _started(stack)

    async def in_sync() -> bool:
        _, body = await server.get("/debug/streams")
        return bool(body["streams"]) and body["streams"][0]["sync"] == "in_sync"

    await eventually(in_sync, what="the sidecar in sync")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    screenshot = tmp_path / "status-page.png"
    _, shot_err = await _run(
        browser, *flags, f"--screenshot={screenshot}", "--window-size=430,1200", server.debug_url + "/"
    )
    assert screenshot.exists(), shot_err[-2000:]
    assert screenshot.stat().st_size > 5000
    dom, _ = await _run(browser, *flags, "--dump-dom", server.debug_url + "/")
    assert "kafka-a" in dom
    assert f"{stack.loopback}:9091" in dom
    assert "app-1" in dom
    assert "in sync: 1" in dom


async def _run(*command: str) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    return stdout.decode(errors="replace"), stderr.decode(errors="replace")
