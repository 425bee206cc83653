"""The debug token: followed when its file changes, never left in the address bar, and required
for what `/readyz` would tell about the deployment (hosts, chroots, file paths)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.addresses import LoopbackAddresses
from tests.support.wait import eventually
from xds.app import Application
from xds.config.model import parse_config

TOKEN = "first-token-value"
ROTATED = "second-token-value"


def _write_atomically(path: Path, text: str) -> None:
    """As a rotated Kubernetes Secret changes: a new file renamed over the old one."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    fresh.chmod(0o600)
    os.replace(fresh, path)


@pytest.fixture
async def not_ready(tmp_path, addresses: LoopbackAddresses) -> AsyncIterator[tuple[Application, Path]]:
    """A replica with a debug token whose static source waits for a file that is not there."""
    host = addresses.take()
    token_file = tmp_path / "token"
    _write_atomically(token_file, TOKEN + "\n")
    config = {
        "xds": {"listen": f"{host}:0", "debounce_ms": 0, "tls": None},
        "debug": {"listen": f"{host}:0", "token_file": str(token_file)},
        "upstream_tls": None,
        "kafka_clusters": [
            {
                "name": "kafka-a",
                "loopback_ip": "127.0.0.10",
                "port_base": 9090,
                "upstream_listener": "MESH",
                "static": {"file": str(tmp_path / "secret-dir" / "brokers.yaml")},
            }
        ],
    }
    application = Application(parse_config(config))
    await application.start()
    yield application, token_file
    await application.stop()


def _base(application: Application) -> str:
    host = application.config.debug.listen.rsplit(":", 1)[0]
    return f"http://{host}:{application.debug.port}"


async def _get(
    url: str, token: str | None = None, redirects: bool = True
) -> tuple[int, str, aiohttp.ClientResponse]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, allow_redirects=redirects) as response,
    ):
        return response.status, await response.text(), response


async def test_readyz_without_the_token_gives_the_verdict_and_counts_only(not_ready):
    application, _ = not_ready
    status, text, _ = await _get(_base(application) + "/readyz")
    assert status == 503
    body: dict[str, Any] = json.loads(text)
    assert body["ready"] is False and body["waiting_count"] == 1
    assert "waiting" not in body
    assert "secret-dir" not in text and "kafka-a" not in text


async def test_readyz_with_the_token_names_what_it_waits_for(not_ready):
    application, _ = not_ready
    status, text, _ = await _get(_base(application) + "/readyz", TOKEN)
    assert status == 503
    assert "kafka-a" in text and "secret-dir" in text


async def test_a_rotated_token_is_used_without_a_restart(not_ready):
    application, token_file = not_ready
    url = _base(application) + "/debug/topology"
    assert (await _get(url, TOKEN))[0] == 200
    _write_atomically(token_file, ROTATED + "\n")

    async def rotated() -> bool:
        return (await _get(url, ROTATED))[0] == 200

    await eventually(rotated, timeout=10, what="the rotated token accepted")
    assert (await _get(url, TOKEN))[0] == 401


async def test_a_token_file_that_cannot_be_read_keeps_the_last_token(not_ready, caplog):
    application, token_file = not_ready
    url = _base(application) + "/debug/topology"
    _write_atomically(token_file, "")  # emptied mid-rotation

    async def warned() -> bool:
        assert (await _get(url, TOKEN))[0] == 200  # a request has the file checked
        return any("debug token" in record.getMessage() for record in caplog.records)

    await eventually(warned, timeout=10, what="a warning about the token file")
    assert (await _get(url, TOKEN))[0] == 200
    assert TOKEN not in caplog.text


async def test_a_token_in_the_address_is_exchanged_for_a_cookie_and_dropped_from_it(not_ready):
    application, _ = not_ready
    base = _base(application)
    status, _, response = await _get(f"{base}/debug/topology?token={TOKEN}&x=1", redirects=False)
    assert status == 303
    assert response.headers["Location"] == "/debug/topology?x=1"
    assert "HttpOnly" in response.headers["Set-Cookie"]
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,  # keeps cookies
        browser.get(f"{base}/?token={TOKEN}") as page,
    ):
        assert page.status == 200
        assert "token" not in str(page.url)
        assert TOKEN not in await page.text()
    assert (await _get(f"{base}/debug/topology?token=wrong", redirects=False))[0] == 401
