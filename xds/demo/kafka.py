"""Real Apache Kafka brokers on loopback, for the demo and the tests: ZooKeeper mode (3.9) or KRaft.

The jars come from Maven Central (`scripts/setup.sh` puts one directory per release into the cache);
each broker is `java -cp '<jars>/*' kafka.Kafka server.properties` with its own small heap, data
directory and log. Brokers listen the way the README tells users to run them:

- `INTERNAL` (plaintext) on the broker's own address, its "pod IP": replication, and the listener
  kafka-xds learns the broker's current host from (ZooKeeper registration, KRaft Metadata);
- `MESH` (TLS, `ssl.client.auth=required`) on the same address, the port sidecars connect to, which
  advertises the plan's loopback address so clients keep going through their sidecar.

A reschedule (`move`) stops a broker and starts it again with the same id and data on a new address,
as a pod that lands on another node. KRaft clusters get one dedicated controller, so the brokers the
source must follow are never controllers. Readiness is asked of the cluster itself (Metadata).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from xds.demo.brokers import Certs
from xds.demo.java import format_storage, java, tail, write_properties
from xds.demo.processes import free_port, terminate
from xds.kafka.metadata import decode_metadata

ZOOKEEPER_RELEASE = "3.9.1"  # the last line with ZooKeeper mode; docker-compose.yml runs the same
KRAFT_RELEASE = "4.1.0"


class KafkaNotInstalled(RuntimeError):
    """The release's jars are not in the cache."""


def kafka_cache() -> Path:
    """Where `scripts/setup.sh` puts the releases (outside git): one `<version>/libs` each."""
    configured = os.environ.get("KAFKA_XDS_KAFKA_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-xds" / "kafka"


def release_libs(version: str) -> Path:
    """The directory of one release's jars; a clear error naming the fix when it is missing."""
    libs = kafka_cache() / version / "libs"
    if not (kafka_cache() / version / ".installed").is_file() or not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaNotInstalled(
            f"Apache Kafka {version} is not installed ({libs} is missing): run `make setup`, which "
            "fetches it from Maven Central"
        )
    return libs


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    """One broker: where it runs now (`host`, its pod IP) and what it advertises to clients."""

    broker_id: int
    host: str
    rack: str
    advertised: str  # the plan's address for this broker, host:port, advertised on MESH


@dataclass
class _Broker:
    spec: BrokerSpec
    directory: Path
    internal_port: int
    sasl_port: int = 0
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.directory / f"broker-{self.spec.broker_id}.log"


@dataclass
class KafkaCluster:
    """A Kafka cluster of real broker processes (see the module docstring).

    `zookeeper` (`host:port/chroot`) selects ZooKeeper mode and release 3.9; without it the cluster
    runs KRaft (release 4.1) with a controller on `controller_host`. `mesh_port` is the MESH port on
    every broker's address (one port for the cluster, as a StatefulSet's pods share one).
    """

    directory: Path
    brokers: Sequence[BrokerSpec]
    certs: Certs
    zookeeper: str | None = None
    controller_host: str = "127.0.0.1"
    mesh_port: int = 0
    internal_port: int = 0  # INTERNAL's port on every broker's address; 0: a free port per broker
    properties: dict[str, str] = field(default_factory=dict)  # extra broker settings
    # With users (name -> password), every broker also listens on `SASL` (SASL_PLAINTEXT, PLAIN and,
    # in KRaft, SCRAM-SHA-256 with the credentials formatted into the metadata log).
    sasl_users: dict[str, str] = field(default_factory=dict)
    # DNS names of each broker's MESH certificate, `{broker_id}` filled in: what the sidecars verify.
    certificate_names: tuple[str, ...] = ("broker-{broker_id}.kafka.test",)
    _nodes: dict[int, _Broker] = field(default_factory=dict, init=False)
    _controller: asyncio.subprocess.Process | None = field(default=None, init=False)
    _controller_port: int = field(default=0, init=False)
    _cluster_id: str = field(default="", init=False)

    @property
    def kraft(self) -> bool:
        return self.zookeeper is None

    @property
    def version(self) -> str:
        return KRAFT_RELEASE if self.kraft else ZOOKEEPER_RELEASE

    def spec(self, broker_id: int) -> BrokerSpec:
        return self._nodes[broker_id].spec

    def internal_address(self, broker_id: int) -> str:
        node = self._nodes[broker_id]
        return f"{node.spec.host}:{node.internal_port}"

    @property
    def sasl_bootstrap_servers(self) -> list[str]:
        """The SASL listeners (with `sasl_users`)."""
        return [f"{node.spec.host}:{node.sasl_port}" for _, node in sorted(self._nodes.items())]

    @property
    def bootstrap_servers(self) -> list[str]:
        """The INTERNAL listeners (plaintext): what the KRaft source and the tests' admin ask."""
        return [self.internal_address(broker_id) for broker_id in sorted(self._nodes)]

    def log_paths(self) -> list[Path]:
        paths = [node.log_path for node in self._nodes.values()]
        return [*paths, self.directory / "controller.log"] if self.kraft else paths

    async def start(self, timeout: float = 120.0) -> KafkaCluster:
        libs = release_libs(self.version)
        self.directory.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._write_tls_files)
        if not self.mesh_port:
            self.mesh_port = _port_free_on_all([spec.host for spec in self.brokers])
        for spec in self.brokers:
            directory = self.directory / f"broker-{spec.broker_id}"
            self._nodes[spec.broker_id] = _Broker(spec, directory, self._internal_port(spec.host))
            self._nodes[spec.broker_id].sasl_port = free_port(spec.host) if self.sasl_users else 0
        if self.kraft:
            self._cluster_id = _kraft_cluster_id()
            self._controller_port = free_port(self.controller_host)
            await self._start_controller(libs)
        await asyncio.gather(*(self._start(node, libs) for node in self._nodes.values()))
        await self.wait_brokers(set(self._nodes), timeout)
        return self

    async def stop(self) -> None:
        await asyncio.gather(*(self.stop_broker(broker_id) for broker_id in list(self._nodes)))
        if self._controller is not None:
            await terminate(self._controller, 20)
            self._controller = None

    async def stop_broker(self, broker_id: int) -> None:
        node = self._nodes[broker_id]
        if node.process is not None:
            await terminate(node.process, 30)  # a clean shutdown hands leadership over first
            node.process = None

    async def start_broker(self, broker_id: int, timeout: float = 90.0) -> None:
        node = self._nodes[broker_id]
        await self._start(node, release_libs(self.version))
        await self.wait_brokers({broker_id}, timeout)

    async def move(self, broker_id: int, new_host: str, timeout: float = 90.0) -> None:
        """A pod reschedule: the broker stops, and starts again with its id and data on `new_host`."""
        await self.stop_broker(broker_id)
        node = self._nodes[broker_id]
        node.spec = replace(node.spec, host=new_host)
        node.internal_port = self._internal_port(new_host)
        node.sasl_port = free_port(new_host) if self.sasl_users else 0
        if _port_in_use(new_host, self.mesh_port):
            raise RuntimeError(f"MESH port {self.mesh_port} is taken on {new_host}")
        await self.start_broker(broker_id, timeout)

    async def add_broker(self, spec: BrokerSpec, timeout: float = 90.0) -> None:
        directory = self.directory / f"broker-{spec.broker_id}"
        node = _Broker(spec, directory, self._internal_port(spec.host))
        node.sasl_port = free_port(spec.host) if self.sasl_users else 0
        self._nodes[spec.broker_id] = node
        await self.start_broker(spec.broker_id, timeout)

    async def remove_broker(self, broker_id: int) -> None:
        await self.stop_broker(broker_id)
        del self._nodes[broker_id]

    def _internal_port(self, host: str) -> int:
        return self.internal_port or free_port(host)

    async def wait_brokers(self, broker_ids: set[int], timeout: float) -> None:
        """Until the cluster's Metadata lists every broker of `broker_ids` at its current address."""
        from aiokafka.conn import create_conn
        from aiokafka.protocol.metadata import MetadataRequest

        wanted = {self.internal_address(broker_id) for broker_id in broker_ids}
        deadline = asyncio.get_running_loop().time() + timeout
        last = "no answer yet"
        while True:
            for broker_id in broker_ids:
                node = self._nodes[broker_id]
                if node.process is not None and node.process.returncode is not None:
                    raise RuntimeError(
                        f"Kafka broker {broker_id} exited with {node.process.returncode}: "
                        f"{tail(node.log_path)}"
                    )
            for server in self.bootstrap_servers:
                host, port = server.rsplit(":", 1)
                try:
                    connection = await asyncio.wait_for(create_conn(host, int(port)), 3)
                    try:
                        request = MetadataRequest(topics=[], allow_auto_topic_creation=False)
                        answer = await asyncio.wait_for(connection.send(request), 3)
                    finally:
                        connection.close()
                except Exception as err:
                    last = f"{server}: {err!r}"
                    continue
                listed = {f"{b.host}:{b.port}" for b in decode_metadata(answer.to_object()).brokers}
                if wanted <= listed:
                    return
                last = f"{server} lists {sorted(listed)}"
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"Kafka brokers {sorted(broker_ids)} not in Metadata: {last}")
            await asyncio.sleep(0.5)

    # -- processes ----------------------------------------------------------------------------------

    def _write_tls_files(self) -> None:
        tls = self.directory / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        for spec in self.brokers:
            self._write_keystore(spec.broker_id)
        (tls / "truststore.pem").write_bytes(self.certs.ca.cert_pem.bytes())

    def _write_keystore(self, broker_id: int) -> Path:
        """The MESH keystore: PKCS#8 key and chain in one PEM file, as Kafka's PEM keystore takes it."""
        keystore = self.directory / "tls" / f"broker-{broker_id}.pem"
        if not keystore.exists():
            names = [name.format(broker_id=broker_id) for name in self.certificate_names]
            issued = self.certs.ca.issue_cert(*names, common_name=f"broker-{broker_id}")
            chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
            keystore.write_bytes(_pkcs8(issued.private_key_pem.bytes()) + chain)
        return keystore

    def _broker_properties(self, node: _Broker) -> dict[str, str]:
        spec = node.spec
        replicas = str(min(3, len(self.brokers)))
        properties = {
            "listeners": self._listeners(node),
            "advertised.listeners": self._advertised(node),
            "listener.security.protocol.map": _PROTOCOLS,
            "inter.broker.listener.name": "INTERNAL",
            "broker.rack": spec.rack,
            "log.dirs": str(node.directory / "data"),
            "listener.name.mesh.ssl.client.auth": "required",
            "listener.name.mesh.ssl.keystore.type": "PEM",
            "listener.name.mesh.ssl.keystore.location": str(self._write_keystore(spec.broker_id)),
            "listener.name.mesh.ssl.truststore.type": "PEM",
            "listener.name.mesh.ssl.truststore.location": str(self.directory / "tls" / "truststore.pem"),
            "listener.name.mesh.ssl.endpoint.identification.algorithm": "",
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "3",
            "default.replication.factor": replicas,
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.replica.fetchers": "1",
            "background.threads": "2",
            "log.segment.bytes": str(16 * 1024 * 1024),
            "controlled.shutdown.enable": "true",
            "auto.create.topics.enable": "false",
        }
        if self.sasl_users:
            properties |= self._sasl_properties(node)
        if self.kraft:
            properties |= {
                "process.roles": "broker",
                "node.id": str(spec.broker_id),
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.bootstrap.servers": f"{self.controller_host}:{self._controller_port}",
            }
        else:
            assert self.zookeeper is not None
            properties |= {
                "broker.id": str(spec.broker_id),
                "zookeeper.connect": self.zookeeper,
                "zookeeper.session.timeout.ms": "6000",
            }
        return properties | self.properties

    def _listeners(self, node: _Broker) -> str:
        return f"INTERNAL://{node.spec.host}:{node.internal_port},MESH://{node.spec.host}:{self.mesh_port}"

    def _advertised(self, node: _Broker) -> str:
        return f"INTERNAL://{node.spec.host}:{node.internal_port},MESH://{node.spec.advertised}"

    def _sasl_properties(self, node: _Broker) -> dict[str, str]:
        sasl = f"SASL://{node.spec.host}:{node.sasl_port}"
        mechanisms = ["PLAIN", "SCRAM-SHA-256"] if self.kraft else ["PLAIN"]
        users = " ".join(f'user_{name}="{password}"' for name, password in self.sasl_users.items())
        properties = {
            "listeners": f"{self._listeners(node)},{sasl}",
            "advertised.listeners": f"{self._advertised(node)},{sasl}",
            "listener.security.protocol.map": f"{_PROTOCOLS},SASL:SASL_PLAINTEXT",
            "listener.name.sasl.sasl.enabled.mechanisms": ",".join(mechanisms),
            "listener.name.sasl.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
            ),
        }
        if self.kraft:
            properties["listener.name.sasl.scram-sha-256.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
        return properties

    def _scram_arguments(self) -> list[str]:
        """`kafka-storage format --add-scram`: the SCRAM users, in the metadata log from the start."""
        if not (self.kraft and self.sasl_users):
            return []
        arguments = []
        for name, password in self.sasl_users.items():
            arguments += ["--add-scram", f"SCRAM-SHA-256=[name={name},password={password}]"]
        return arguments

    def _controller_properties(self) -> dict[str, str]:
        address = f"{self.controller_host}:{self._controller_port}"
        return {
            "process.roles": "controller",
            "node.id": str(_CONTROLLER_ID),
            "listeners": f"CONTROLLER://{address}",
            "advertised.listeners": f"CONTROLLER://{address}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": address,
            "log.dirs": str(self.directory / "controller" / "data"),
            "num.io.threads": "2",
            "num.network.threads": "2",
        }

    async def _start_controller(self, libs: Path) -> None:
        directory = self.directory / "controller"
        config = write_properties(directory / "server.properties", self._controller_properties())
        await format_storage(
            libs, config, self._cluster_id, directory / "format.log", True, self._scram_arguments()
        )
        self._controller = await java(libs, "kafka.Kafka", [str(config)], self.directory / "controller.log")

    async def _start(self, node: _Broker, libs: Path) -> None:
        config = write_properties(node.directory / "server.properties", self._broker_properties(node))
        if self.kraft and node.starts == 0:
            await format_storage(libs, config, self._cluster_id, node.directory / "format.log")
        node.starts += 1
        node.process = await java(libs, "kafka.Kafka", [str(config)], node.log_path, append=True)


_PROTOCOLS = "INTERNAL:PLAINTEXT,MESH:SSL,CONTROLLER:PLAINTEXT"
_CONTROLLER_ID = 3000  # outside every broker id the demo and the tests use


def _kraft_cluster_id() -> str:
    """Kafka's cluster id format: a UUID as 22 characters of URL-safe base64."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _pkcs8(key_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _port_free_on_all(hosts: list[str]) -> int:
    """One port free on every host (a StatefulSet's pods all listen on the same MESH port)."""
    for _ in range(50):
        port = free_port(hosts[0])
        if not any(_port_in_use(host, port) for host in hosts):
            return port
    raise RuntimeError(f"no port free on all of {hosts}")
