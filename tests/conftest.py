"""Fixtures that start real components: certificates, TLS upstreams, Envoy, kafka-xds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.envoy import Envoy
from tests.support.wait import free_port
from tests.support.xds_process import XdsProcess
from xds.demo.brokers import Certs, TlsUpstream, make_certs

pytest_plugins = [
    "tests.conftest_zk",  # real ZooKeeper servers, ensembles and broker registrations
    "tests.conftest_kafka",  # a real Kafka-protocol broker (Tansu)
]


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


@pytest.fixture
async def upstreams(certs: Certs) -> AsyncIterator[Callable[[str, str], Awaitable[TlsUpstream]]]:
    """Start broker-like mTLS servers: `await upstreams("broker-1", "127.0.0.21")`."""
    started: list[TlsUpstream] = []

    async def start(name: str, host: str) -> TlsUpstream:
        upstream = await TlsUpstream(name, host, certs.server_context(host)).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        await upstream.stop()


@pytest.fixture
async def envoys(tmp_path: Path) -> AsyncIterator[Callable[[str, int], Awaitable[Envoy]]]:
    started: list[Envoy] = []

    async def start(node_id: str, xds_port: int) -> Envoy:
        envoy = await Envoy(tmp_path, node_id, xds_port).start()
        started.append(envoy)
        return envoy

    yield start
    for envoy in started:
        await envoy.stop()


@pytest.fixture
async def xds_processes(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[XdsProcess]]]:
    started: list[XdsProcess] = []

    async def start(config: dict[str, Any], name: str = "kafka-xds", wait_ready: bool = True) -> XdsProcess:
        process = await XdsProcess(tmp_path, config, name).start(wait_ready)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.kill()


def base_config(certs: Certs | None, clusters: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """A config on free ports; `certs=None` means plain TCP upstreams."""
    config: dict[str, Any] = {
        "xds": {"listen": f"127.0.0.1:{free_port()}", "debounce_ms": 50},
        "debug": {"listen": f"127.0.0.1:{free_port()}"},
        "upstream_tls": None
        if certs is None
        else {
            "ca_file": str(certs.ca_file),
            "cert_file": str(certs.client_cert),
            "key_file": str(certs.client_key),
        },
        "kafka_clusters": clusters,
    }
    config.update(overrides)
    return config


def write_static_brokers(path: Path, brokers: list[dict[str, Any]]) -> Path:
    """Write a static broker file atomically, as an operator's editor or config management would."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump({"brokers": brokers}))
    temporary.replace(path)
    return path


def xds_port(config: dict[str, Any]) -> int:
    return int(config["xds"]["listen"].rsplit(":", 1)[1])


class Stack:
    """kafka-xds (its own process) on a static broker file, and one Envoy sidecar connected to it."""

    def __init__(self, tmp_path: Path, certs: Certs, upstreams: Any, envoys: Any, xds_processes: Any) -> None:
        self.tmp_path, self.certs = tmp_path, certs
        self._upstreams, self._envoys, self._xds_processes = upstreams, envoys, xds_processes
        self.brokers: dict[int, TlsUpstream] = {}
        self.brokers_file = tmp_path / "brokers.yaml"

    async def start(
        self,
        hosts: dict[int, str],
        cluster: dict[str, Any],
        broker_extra: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Stack:
        """Brokers {id: ip} as mTLS upstreams, kafka-xds on `cluster` + the broker file, one sidecar."""
        for broker_id, host in hosts.items():
            self.brokers[broker_id] = await self._upstreams(f"broker-{broker_id}", host)
        self.write_brokers(broker_extra or {})
        self.config = base_config(
            self.certs,
            [dict(cluster, static={"file": str(self.brokers_file), "poll_interval_seconds": 0.2})],
            **overrides,
        )
        self.server = await self._xds_processes(self.config)
        self.envoy = await self._envoys("app-1", xds_port(self.config))
        return self

    def write_brokers(self, extra: dict[str, Any]) -> None:
        write_static_brokers(
            self.brokers_file,
            [
                {"id": broker_id, "host": upstream.host, "port": upstream.port, **extra}
                for broker_id, upstream in sorted(self.brokers.items())
            ],
        )


@pytest.fixture
def stack(tmp_path: Path, certs: Certs, upstreams: Any, envoys: Any, xds_processes: Any) -> Stack:
    return Stack(tmp_path, certs, upstreams, envoys, xds_processes)
