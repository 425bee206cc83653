"""The status page in a real browser: headless Chromium, as a process, against a kafka-xds process
whose source went stale. The screenshot is read back (stdlib PNG decoding) to check that it drew a
page, and that the badge at the top is red, not green; the DOM Chromium built holds the charts."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import base_config, write_static_brokers
from tests.support.addresses import LoopbackAddresses
from tests.support.png import Image, read_png
from tests.support.wait import eventually
from tests.support.xds_process import XdsProcess

_BACKGROUND = (0xF6, 0xF7, 0xF9)
_RED, _YELLOW, _GREEN = (0xC6, 0x28, 0x28), (0xE0, 0xA8, 0x00), (0x2E, 0x7D, 0x32)
_WIDTH, _HEIGHT = 1280, 2000


def _chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium binary on PATH (make setup installs the apt package `chromium`)")
    return browser


def _static(name: str, loopback: str, brokers_file: Path) -> dict[str, Any]:
    return {
        "name": name,
        "loopback_ip": loopback,
        "port_base": 9090,
        "upstream_listener": "MESH",
        "static": {"file": str(brokers_file), "poll_interval_seconds": 0.1},
    }


async def _browser(tmp_path: Path, *arguments: str) -> tuple[str, str]:
    flags = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    process = await asyncio.create_subprocess_exec(
        _chromium(), *flags, *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    return stdout.decode(errors="replace"), stderr.decode(errors="replace")


async def _stale_replica(tmp_path: Path, addresses: LoopbackAddresses, xds_processes: Any) -> XdsProcess:
    """kafka-xds on two static clusters, kafka-a's brokers file then made unreadable: stale."""
    a = write_static_brokers(
        tmp_path / "a.yaml", [{"id": 1, "host": "10.0.0.1", "port": 9094, "rack": "az1"}]
    )
    b = write_static_brokers(tmp_path / "b.yaml", [{"id": 1, "host": "10.0.1.1", "port": 9094}])
    host = addresses.take()
    config = base_config(
        None, [_static("kafka-a", addresses.take(), a), _static("kafka-b", addresses.take(), b)], host
    )
    server: XdsProcess = await xds_processes(config)
    a.write_text("brokers:\n  - {id: 1, host: 10.0.0.1, port: [\n")

    async def stale() -> bool:
        _, topology = await server.get("/debug/topology")
        return bool(topology["clusters"]["kafka-a"]["source"]["state"] == "stale")

    await eventually(stale, what="kafka-a stale")
    return server


def _summary_top(image: Image) -> int:
    """The first row, down the left edge of the cards, in one of the summary card's border colours."""
    for y in range(image.height):
        pixel = image.pixel(40, y)
        if any(all(abs(pixel[i] - colour[i]) <= 8 for i in range(3)) for colour in (_RED, _YELLOW, _GREEN)):
            return y
    raise AssertionError("no summary card drawn")


async def test_a_stale_source_turns_the_top_of_the_page_red_in_a_real_browser(
    tmp_path, addresses, xds_processes
):
    _chromium()
    server = await _stale_replica(tmp_path, addresses, xds_processes)
    screenshot = tmp_path / "status.png"
    _, errors = await _browser(
        tmp_path, f"--screenshot={screenshot}", f"--window-size={_WIDTH},{_HEIGHT}", server.debug_url + "/"
    )
    assert screenshot.exists(), errors[-2000:]
    image = read_png(screenshot)
    assert (image.width, image.height) == (_WIDTH, _HEIGHT)
    drawn = sum(
        1
        for y in range(0, _HEIGHT, 4)
        for x in range(0, _WIDTH, 4)
        if any(abs(a - b) > 10 for a, b in zip(image.pixel(x, y), _BACKGROUND, strict=True))
    )
    assert drawn > 0.05 * (_WIDTH // 4) * (_HEIGHT // 4), f"only {drawn} sampled pixels drawn: blank page?"

    top = _summary_top(image)
    assert top < 200, "the summary is not at the top of the page"
    assert all(abs(image.pixel(40, top)[i] - _RED[i]) <= 8 for i in range(3)), image.pixel(40, top)
    badge = (12, top, 400, top + 45)  # the badge sits in the card's first line
    assert image.count(_RED, box=badge) > 400, "no red badge"
    assert image.count(_GREEN, tolerance=30, box=badge) == 0, "a green badge while a source is stale"


async def test_the_charts_are_svg_in_the_dom_chromium_built(tmp_path, addresses, xds_processes):
    _chromium()
    server = await _stale_replica(tmp_path, addresses, xds_processes)
    dom, errors = await _browser(tmp_path, "--dump-dom", server.debug_url + "/")
    assert "<body>" in dom, errors[-2000:]
    assert dom.count('<svg class="chart-svg"') >= 5
    for caption in (
        "Connected sidecars",
        "Pushes per minute",
        "Convergence p99",
        "NACKs per",
        "Refused streams",
    ):
        assert caption in dom
    assert '<span class="badge big bad">degraded</span>' in dom
    assert '<a href="#cluster-kafka-a">kafka-a: static source stale for' in dom
    assert 'id="cluster-kafka-a"' in dom
    assert "source lost" in dom  # the event, with its time
    assert "<script" not in dom
