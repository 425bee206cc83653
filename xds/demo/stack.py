"""What both demos run around their brokers: ZooKeeper, kafka-xds (its own process, ADS over mTLS)
and one Envoy sidecar whose certificate identity the demo configs' access policy allows. Started in
that order around the demo's own brokers, stopped in the reverse one, whatever state it is in."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import IO

from xds.bootstrap import XdsClientTls
from xds.demo.brokers import Certs
from xds.demo.layout import DemoAddresses
from xds.demo.processes import EnvoyProcess, spawn_kafka_xds, terminate, wait_ready
from xds.demo.zookeeper import ZooKeeperServer
from xds.shared.addresses import parse_listen

SIDECAR_IDENTITY = "spiffe://kafka-xds.demo/ns/demo/sa/demo-app"  # matched by the demo configs' access


class DemoStack:
    def __init__(self, workdir: Path, addresses: DemoAddresses) -> None:
        self.workdir = workdir
        self.addresses = addresses
        self.zookeeper = ZooKeeperServer(workdir / "zookeeper", host=addresses.services)
        self.server: asyncio.subprocess.Process | None = None
        self.envoy: EnvoyProcess | None = None
        self._server_log: IO[bytes] | None = None
        self._zookeeper_spawned: asyncio.Future[None] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "kafka-xds.log"

    async def start_zookeeper(self) -> None:
        # Shielded, and awaited again by stop(): a Ctrl-C now must not leave a server behind unseen.
        self._zookeeper_spawned = asyncio.ensure_future(asyncio.to_thread(self.zookeeper.spawn))
        await asyncio.shield(self._zookeeper_spawned)
        await asyncio.to_thread(self.zookeeper.wait_serving)

    async def start_control_plane(
        self, certs: Certs, config_path: Path, xds_listen: str, status_url: str, ready_timeout: float = 30.0
    ) -> None:
        """kafka-xds on `config_path` until ready, then the sidecar. `certs` gets kafka-xds's ADS
        certificate and the sidecar's (whose identity the access policy matches) first."""
        xds_host, xds_port = parse_listen(xds_listen)
        await asyncio.to_thread(certs.issue, "xds-server", hosts=[xds_host])
        sidecar_cert, sidecar_key = await asyncio.to_thread(
            certs.issue, "xds-client", uris=[SIDECAR_IDENTITY]
        )
        self._server_log = self.log_path.open("ab")
        self.server = await spawn_kafka_xds(config_path, self._server_log)
        await wait_ready(status_url, self.server, self.log_path, timeout=ready_timeout)
        self.envoy = EnvoyProcess(
            self.workdir,
            "demo-app",
            xds_port,
            self.addresses.admin_port,
            xds_host=xds_host,
            admin_host=self.addresses.services,
            xds_tls=XdsClientTls(str(certs.ca_file), str(sidecar_cert), str(sidecar_key)),
        )
        await self.envoy.start()

    async def stop_control_plane(self) -> None:
        """The sidecar, then kafka-xds (before the brokers: it must not see them all leave)."""
        if self.envoy is not None:
            await self.envoy.stop()
        if self.server is not None:
            await terminate(self.server)
        if self._server_log is not None:
            self._server_log.close()

    async def stop_zookeeper(self) -> None:
        if self._zookeeper_spawned is not None:
            with contextlib.suppress(Exception):
                await self._zookeeper_spawned
            await asyncio.to_thread(self.zookeeper.stop)
