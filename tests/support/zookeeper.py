"""Real ZooKeeper for the tests: what the demo runs (xds.demo.zookeeper), plus ensembles and TLS.

The server runner, Kafka's znode format and broker registrations live in `xds.demo.zookeeper` and
are re-exported here. Test-only: ensemble members (three servers on distinct ports form a quorum),
a server with TLS, the sessions a server sees (`cons`), and ending someone else's session. A server
with TLS runs the same Java class directly: Debian's classpath for zkServer.sh lacks netty-codec,
which Netty's TLS handler needs.
"""

from __future__ import annotations

import re
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from kazoo.client import KazooClient

from xds.demo import zookeeper as demo_zookeeper
from xds.demo.processes import free_port
from xds.demo.zookeeper import ZK_SERVER, KafkaBroker, broker_znode, cluster_id_znode, write_znode

__all__ = [
    "ZK_SERVER",
    "KafkaBroker",
    "ZooKeeperEnsemble",
    "ZooKeeperServer",
    "broker_znode",
    "cluster_id_znode",
    "expire_session",
    "write_znode",
]

_ZK_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
_TLS_CLASSPATH = ":".join(
    ["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar"]  # what zkServer.sh uses, and:
    + [
        f"/usr/share/java/{jar}.jar"
        for jar in ("netty-codec", "netty-resolver", "netty-transport-native-unix-common")
    ]
)


class ZooKeeperServer(demo_zookeeper.ZooKeeperServer):
    """A server that may be one of an ensemble (`peers`: id, quorum port, election port) or use TLS."""

    def __init__(
        self,
        directory: Path,
        server_id: int = 1,
        peers: list[tuple[int, int, int]] | None = None,
        client_port: int | None = None,
        tls: trustme.CA | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(directory, client_port, host)
        self.server_id = server_id
        self.secure_port = free_port(host) if tls is not None else None
        self._tls = tls
        self._peers = peers or []

    @property
    def secure_hosts(self) -> str:
        """The TLS port (needs a client certificate from the CA the server was given)."""
        assert self.secure_port is not None, "started without tls"
        return f"{self.host}:{self.secure_port}"

    def _config_lines(self) -> list[str]:
        lines = super()._config_lines()
        if self.secure_port is not None:
            lines += [f"secureClientPort={self.secure_port}", f"secureClientPortAddress={self.host}"]
        for peer_id, quorum_port, election_port in self._peers:
            lines.append(f"server.{peer_id}={self.host}:{quorum_port}:{election_port}")
        return lines

    def _write_config(self) -> None:
        super()._write_config()
        if self._peers:
            (self.data_dir / "myid").write_text(f"{self.server_id}\n")

    def _command(self, jvm_flags: str) -> list[str]:
        if self._tls is None:
            return super()._command(jvm_flags)
        flags = [*jvm_flags.split(), *self._tls_flags(self._tls)]
        return ["java", *flags, "-cp", _TLS_CLASSPATH, _ZK_MAIN, str(self.config_path)]

    def _tls_flags(self, ca: trustme.CA) -> list[str]:
        """Netty TLS, a PEM key store (ZooKeeper reads PKCS#8 keys only), client certificates required."""
        issued = ca.issue_cert(self.host, "localhost")
        key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
        pkcs8 = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key_store, trust_store = self.directory / "server.pem", self.directory / "ca.pem"
        key_store.write_bytes(pkcs8 + b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        ca.cert_pem.write_to_path(str(trust_store))
        return [
            "-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            f"-Dzookeeper.ssl.keyStore.location={key_store}",
            "-Dzookeeper.ssl.keyStore.type=PEM",
            f"-Dzookeeper.ssl.trustStore.location={trust_store}",
            "-Dzookeeper.ssl.trustStore.type=PEM",
        ]

    def start(self, timeout: float = 60.0) -> ZooKeeperServer:
        super().start(timeout)
        return self

    def session_ids(self) -> set[int]:
        """The sessions connected to this server now (from `cons`)."""
        try:
            text = self.four_letter("cons")
        except OSError:
            return set()
        return {int(sid, 16) for sid in re.findall(r"sid=0x([0-9a-f]+)", text)}


class ZooKeeperEnsemble:
    """Three (or `size`) servers on one loopback address (distinct ports) forming one quorum."""

    def __init__(self, directory: Path, host: str, size: int = 3) -> None:
        peers = [(index + 1, free_port(host), free_port(host)) for index in range(size)]
        self.servers = [
            ZooKeeperServer(directory / f"zk-{peer_id}", peer_id, peers, host=host) for peer_id, _, _ in peers
        ]

    @property
    def hosts(self) -> str:
        return ",".join(server.hosts for server in self.servers)

    def start(self, timeout: float = 90.0) -> ZooKeeperEnsemble:
        for server in self.servers:
            server.spawn()
        for server in self.servers:
            server.wait_serving(timeout)
        return self

    def serving(self, session_id: int) -> ZooKeeperServer | None:
        """The member a session is connected to now."""
        return next((server for server in self.servers if session_id in server.session_ids()), None)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def expire_session(hosts: str, session_id: int, password: bytes) -> None:
    """End someone else's session the way the server would on timeout: join it, then close it."""
    client = KazooClient(hosts=hosts, client_id=(session_id, password), timeout=10)
    client.start(timeout=15)
    client.stop()
    client.close()
