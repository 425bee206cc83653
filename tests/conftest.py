"""Fixtures that start real components: certificates, TLS upstreams, Envoy, kafka-xds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.addresses import LoopbackAddresses
from tests.support.broker_names import BROKER_NAMES, FLEET_CERTIFICATE_NAME, broker_name
from tests.support.envoy import Envoy
from tests.support.wait import free_port
from tests.support.xds_process import XdsProcess
from xds.bootstrap import XdsClientTls
from xds.demo.brokers import Certs, TlsUpstream, make_certs
from xds.shared.addresses import parse_listen

pytest_plugins = [
    "tests.conftest_zk",  # real ZooKeeper servers, ensembles and broker registrations
    "tests.conftest_kafka",  # a real Kafka-protocol broker (Tansu)
    "tests.conftest_kafka_real",  # real Apache Kafka clusters (ZooKeeper mode and KRaft)
]


@pytest.fixture(scope="session")
def addresses() -> Iterator[LoopbackAddresses]:
    """This run's own loopback addresses: take one for everything a test binds or points Envoy at."""
    with LoopbackAddresses() as run_addresses:
        yield run_addresses


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


@pytest.fixture
async def upstreams(certs: Certs) -> AsyncIterator[Callable[..., Awaitable[TlsUpstream]]]:
    """Start broker-like mTLS servers: `await upstreams("broker-1", addresses.take())`."""
    started: list[TlsUpstream] = []

    async def start(name: str, host: str, names: Sequence[str] = (FLEET_CERTIFICATE_NAME,)) -> TlsUpstream:
        """`names`: DNS names its certificate holds besides `host` (tests/support/broker_names.py)."""
        upstream = await TlsUpstream(name, host, certs.server_context(host, *names)).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        await upstream.stop()


@pytest.fixture
async def envoys(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Envoy]]]:
    """Start sidecars connected to a kafka-xds config: `await envoys("app-1", config)`."""
    started: list[Envoy] = []

    async def start(
        node_id: str,
        config: dict[str, Any],
        directory: Path | None = None,
        api: str = "delta",
        replicas: Sequence[dict[str, Any]] = (),
        xds_tls: XdsClientTls | None = None,
        edit_bootstrap: Callable[[dict[str, Any]], None] | None = None,
    ) -> Envoy:
        """A sidecar on `config`'s kafka-xds (and on every one of `replicas`, when given); with
        `xds_tls`, over mTLS, as `kafka-xds bootstrap --xds-ca/--xds-cert/--xds-key` makes it;
        `edit_bootstrap` changes the bootstrap (parsed YAML, in place) before Envoy starts."""
        host, port = parse_listen(config["xds"]["listen"])  # its admin API goes on the same address
        servers = [replica["xds"]["listen"] for replica in replicas]
        envoy = Envoy(directory or tmp_path, node_id, port, host, api, servers, xds_tls)
        if edit_bootstrap is not None:
            bootstrap = yaml.safe_load(envoy.bootstrap_path.read_text())
            edit_bootstrap(bootstrap)
            envoy.bootstrap_path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
        started.append(envoy)
        return await envoy.start()

    yield start
    for envoy in started:
        await envoy.stop()


@pytest.fixture
async def xds_processes(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[XdsProcess]]]:
    started: list[XdsProcess] = []

    async def start(
        config: dict[str, Any],
        name: str = "kafka-xds",
        wait_ready: bool = True,
        directory: Path | None = None,
    ) -> XdsProcess:
        process = await XdsProcess(directory or tmp_path, config, name).start(wait_ready)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.kill()


def base_config(
    certs: Certs | None, clusters: list[dict[str, Any]], listen_ip: str, **overrides: Any
) -> dict[str, Any]:
    """kafka-xds's xDS and debug servers on free ports of `listen_ip`; `certs=None`: plain TCP upstreams."""
    config: dict[str, Any] = {
        "xds": {"listen": f"{listen_ip}:{free_port(listen_ip)}", "debounce_ms": 50, "tls": None},
        "debug": {"listen": f"{listen_ip}:{free_port(listen_ip)}"},
        "upstream_tls": None
        if certs is None
        else {
            "ca_file": str(certs.ca_file),
            "cert_file": str(certs.client_cert),
            "key_file": str(certs.client_key),
            "broker_names": BROKER_NAMES,
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


class Stack:
    """kafka-xds (its own process) on a static broker file, and one Envoy sidecar connected to it.

    Each stack has addresses of its own: `loopback`, the Kafka cluster's loopback IP (Envoy's
    listeners); `host`, kafka-xds's xDS and debug servers and Envoy's admin API; one per broker.
    """

    def __init__(
        self,
        directory: Path,
        certs: Certs,
        upstreams: Any,
        envoys: Any,
        xds_processes: Any,
        addresses: LoopbackAddresses,
        node_id: str = "app-1",
    ) -> None:
        self.directory, self.certs, self.node_id = directory, certs, node_id
        self._upstreams, self._envoys, self._xds_processes = upstreams, envoys, xds_processes
        self._addresses = addresses
        self.loopback, self.host = addresses.take(), addresses.take()
        self.brokers: dict[int, TlsUpstream] = {}
        self.brokers_file = directory / "brokers.yaml"
        directory.mkdir(parents=True, exist_ok=True)

    async def start(
        self,
        broker_ids: Iterable[int],
        cluster: dict[str, Any],
        broker_extra: dict[str, Any] | None = None,
        api: str = "delta",
        **overrides: Any,
    ) -> Stack:
        """Brokers as mTLS upstreams (`broker-<id>@<ip>`), kafka-xds on `cluster` and the broker file,
        one sidecar."""
        self.cluster_name = str(cluster["name"])
        for broker_id in broker_ids:
            await self._start_broker(broker_id)
        self.write_brokers(broker_extra or {})
        self.config = base_config(
            self.certs,
            [dict(cluster, static={"file": str(self.brokers_file), "poll_interval_seconds": 0.2})],
            self.host,
            **overrides,
        )
        self.server = await self._xds_processes(self.config, directory=self.directory)
        self.envoy = await self._envoys(self.node_id, self.config, directory=self.directory, api=api)
        return self

    async def move(self, broker_id: int, extra: dict[str, Any] | None = None) -> TlsUpstream:
        """Reschedule a broker: a new mTLS upstream on an address of its own, written to the file."""
        await self._start_broker(broker_id)
        self.write_brokers(extra or {})
        return self.brokers[broker_id]

    async def _start_broker(self, broker_id: int) -> None:
        """An mTLS upstream on an address of its own, its certificate for its own name only."""
        host = self._addresses.take()
        names = [broker_name(self.cluster_name, broker_id)]
        self.brokers[broker_id] = await self._upstreams(f"broker-{broker_id}@{host}", host, names)

    def write_brokers(self, extra: dict[str, Any]) -> None:
        write_static_brokers(
            self.brokers_file,
            [
                {"id": broker_id, "host": upstream.host, "port": upstream.port, **extra}
                for broker_id, upstream in sorted(self.brokers.items())
            ],
        )


@pytest.fixture
def stack(
    tmp_path: Path,
    certs: Certs,
    upstreams: Any,
    envoys: Any,
    xds_processes: Any,
    addresses: LoopbackAddresses,
) -> Stack:
    return Stack(tmp_path, certs, upstreams, envoys, xds_processes, addresses)
