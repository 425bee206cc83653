"""Real Apache Kafka fixtures (a pytest plugin, loaded by tests/conftest.py).

`real_kafka` starts clusters of real broker processes (xds/demo/kafka.py: ZooKeeper mode on the
module's ZooKeeper, chroot per cluster, or KRaft with a dedicated controller), each broker on an
address of this run's own, each cluster with a plan address on another. Clusters are shared by a
module's tests and stopped when it ends; when a test of the module failed, the tail of every broker's
log is printed (the logs themselves stay in pytest's temporary directory).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from tests.support.addresses import LoopbackAddresses
from tests.support.broker_names import broker_name
from xds.demo.brokers import Certs, make_certs
from xds.demo.kafka import BrokerSpec, KafkaCluster, KafkaNotInstalled, release_libs
from xds.demo.zookeeper import ZooKeeperServer

PORT_BASE = 9090  # broker N of a cluster is N + 9090 on the cluster's loopback IP
T = TypeVar("T")


class _KafkaLoop:
    """An event loop in a thread of its own, owning a module's broker processes: the tests' loops
    come and go per test (asyncio subprocesses belong to the loop that made them), the brokers stay."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-fixture", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class RealCluster:
    """A running Kafka cluster, and the plan that kafka-xds is to serve for it."""

    name: str
    kafka: KafkaCluster
    loopback_ip: str  # the plan's address of the cluster: what clients bootstrap from
    certs: Certs
    _loop: _KafkaLoop

    async def move(self, broker_id: int, new_host: str) -> None:
        """Reschedule a broker: same id and data, a new address (its "pod IP")."""
        await self._loop.call(self.kafka.move(broker_id, new_host))

    async def stop_broker(self, broker_id: int) -> None:
        await self._loop.call(self.kafka.stop_broker(broker_id))

    async def start_broker(self, broker_id: int) -> None:
        await self._loop.call(self.kafka.start_broker(broker_id))

    async def add_broker(self, spec: BrokerSpec) -> None:
        await self._loop.call(self.kafka.add_broker(spec))

    async def remove_broker(self, broker_id: int) -> None:
        await self._loop.call(self.kafka.remove_broker(broker_id))

    def spec_for(self, broker_id: int, host: str, rack: str | None = None) -> BrokerSpec:
        return BrokerSpec(broker_id, host, rack or f"rack-{broker_id}", self.plan_address(broker_id))

    def plan_address(self, broker_id: int) -> str:
        return f"{self.loopback_ip}:{PORT_BASE + broker_id}"

    def source_config(self, zookeeper: ZooKeeperServer | None) -> dict[str, object]:
        """This cluster's entry of `kafka_clusters`, the way the README tells users to write it."""
        entry: dict[str, object] = {
            "name": self.name,
            "loopback_ip": self.loopback_ip,
            "port_base": PORT_BASE,
            "upstream_listener": "INTERNAL",  # where the broker runs now (its pod IP)
            "upstream_port": self.kafka.mesh_port,  # MESH's port on that host: mTLS from the sidecar
            "removal_grace_seconds": 2,
        }
        if self.kafka.kraft:
            entry["kraft"] = {"bootstrap_servers": self.kafka.bootstrap_servers, "poll_interval_seconds": 0.5}
        else:
            assert zookeeper is not None and self.kafka.zookeeper is not None
            entry["client_listener"] = "MESH"  # checked: advertises the plan's address
            entry["zookeeper"] = {
                "hosts": zookeeper.hosts,
                "chroot": "/" + self.kafka.zookeeper.split("/", 1)[1],
                "session_timeout_seconds": 6,
            }
        return entry


def _require_kafka(version: str) -> None:
    try:
        release_libs(version)
    except KafkaNotInstalled as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def real_kafka(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    addresses: LoopbackAddresses,
) -> Iterator[Callable[..., RealCluster]]:
    """`real_kafka("kafka-a", brokers=3, zookeeper=server)` (ZooKeeper mode) or without
    `zookeeper` (KRaft). Racks default to `rack-<id>`; `racks={id: "k8s-1.az-a"}` sets them;
    `sasl_users={name: password}` adds a SASL_PLAINTEXT listener (PLAIN, and SCRAM-SHA-256 in KRaft)."""
    started: list[RealCluster] = []
    loop = _KafkaLoop()
    failed_before = request.session.testsfailed

    def start(
        name: str,
        brokers: int = 3,
        zookeeper: ZooKeeperServer | None = None,
        racks: dict[int, str] | None = None,
        properties: dict[str, str] | None = None,
        sasl_users: dict[str, str] | None = None,
    ) -> RealCluster:
        from xds.demo.kafka import KRAFT_RELEASE, ZOOKEEPER_RELEASE

        _require_kafka(ZOOKEEPER_RELEASE if zookeeper is not None else KRAFT_RELEASE)
        directory = tmp_path_factory.mktemp(f"kafka-{name}")
        certs = make_certs(directory / "certs")
        loopback_ip = addresses.take()
        specs = [
            BrokerSpec(
                broker_id,
                addresses.take(),
                (racks or {}).get(broker_id, f"rack-{broker_id}"),
                f"{loopback_ip}:{PORT_BASE + broker_id}",
            )
            for broker_id in range(1, brokers + 1)
        ]
        kafka = KafkaCluster(
            directory,
            specs,
            certs,
            zookeeper=f"{zookeeper.hosts}/{name}" if zookeeper is not None else None,
            controller_host=addresses.take(),
            properties=properties or {},
            sasl_users=sasl_users or {},
            certificate_names=(broker_name(name, 0).replace("broker-0.", "broker-{broker_id}."),),
        )
        cluster = RealCluster(name, kafka, loopback_ip, certs, loop)
        started.append(cluster)
        loop.run(kafka.start())
        return cluster

    yield start
    if request.session.testsfailed > failed_before:
        for cluster in started:
            for path in cluster.kafka.log_paths():
                lines = path.read_text(errors="replace").splitlines()[-30:] if path.exists() else []
                print(f"--- {path} (last {len(lines)} lines)\n" + "\n".join(lines))
    for cluster in started:
        loop.run(cluster.kafka.stop())
    loop.close()
