"""A real ZooKeeper (Debian's package) on loopback, and Kafka brokers' registrations in it.

Used by the demo and the tests alike. A server runs `zkServer.sh start-foreground` with its own
config and data directory, so it can be stopped and started again on the same data (sessions and
persistent znodes survive), or killed. Brokers register the way Kafka does: each from its own
session, an ephemeral `/brokers/ids/<id>` znode in Kafka's exact JSON. Everything here blocks (a
subprocess, a kazoo session): from asyncio, call it through `asyncio.to_thread`, as `KafkaBroker`
does itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from xds.demo.processes import free_port

ZK_SERVER = Path("/usr/share/zookeeper/bin/zkServer.sh")
_TICK_MS = 250  # sessions may be as short as two ticks: fault tests use short session timeouts
_JVM_FLAGS = "-Xmx192m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"  # small, quick to start; 2 cores
_SECURITY_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}


class ZooKeeperServer:
    """One standalone ZooKeeper server process on a loopback address (`host`, 127.0.0.1 by default)."""

    def __init__(self, directory: Path, client_port: int | None = None, host: str = "127.0.0.1") -> None:
        self.directory = directory
        self.host = host
        self.client_port = client_port or free_port(host)
        self.data_dir = directory / "data"
        self.config_path = directory / "zoo.cfg"
        self.log_path = directory / "zookeeper.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _config_lines(self) -> list[str]:
        return [
            f"tickTime={_TICK_MS}",
            f"dataDir={self.data_dir}",
            f"clientPort={self.client_port}",
            f"clientPortAddress={self.host}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "minSessionTimeout=500",
            "maxSessionTimeout=60000",
            "forceSync=no",  # demo and test data: durability is not the point, speed helps on 2 cores
            "initLimit=20",
            "syncLimit=10",
        ]

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(self._config_lines()) + "\n")

    def _command(self, jvm_flags: str) -> list[str]:
        return [str(ZK_SERVER), "start-foreground", str(self.config_path)]

    def spawn(self) -> None:
        """Start the process without waiting for it to serve (an ensemble member cannot serve alone)."""
        if self.running:
            return
        self._write_config()
        jvm_flags = f"{_JVM_FLAGS} -Dzookeeper.log.dir={self.directory}"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(jvm_flags),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, JMXDISABLE="true", JVMFLAGS=jvm_flags),
                # A Ctrl-C in the terminal must not reach it: whoever started it stops it, in order.
                start_new_session=True,
            )

    def start(self, timeout: float = 60.0) -> ZooKeeperServer:
        self.spawn()
        self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise RuntimeError(f"ZooKeeper exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            if self.mode() is not None:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ZooKeeper on {self.hosts} not serving after {timeout}s")
            time.sleep(0.1)

    def mode(self) -> str | None:
        """standalone, leader or follower while serving; None otherwise."""
        try:
            found = re.search(r"^Mode: (\w+)", self.four_letter("srvr"), re.MULTILINE)
        except OSError:
            return None
        return found.group(1) if found else None

    def four_letter(self, command: str) -> str:
        with socket.create_connection((self.host, self.client_port), timeout=2) as sock:
            sock.sendall(command.encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, as an operator's restart does; SIGKILL if it hangs."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: a crashed or partitioned server."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None


def broker_znode(
    endpoints: Mapping[str, str],
    rack: str | None = None,
    version: int = 5,
    protocols: Mapping[str, str] | None = None,
    timestamp_ms: int | None = None,
) -> bytes:
    """A `/brokers/ids/<id>` registration exactly as Kafka's BrokerIdZNode.encode writes `version`.

    `endpoints` maps listener name to `host:port` (for versions 2 and 3, the name is the security
    protocol); `protocols` maps listener name to security protocol (default: the name if it is one,
    else SSL)."""
    protocols = dict(protocols or {})
    for name in endpoints:
        protocols.setdefault(name, name if name in _SECURITY_PROTOCOLS else "SSL")
    plaintext = next((address for name, address in endpoints.items() if protocols[name] == "PLAINTEXT"), None)
    host, _, port = plaintext.rpartition(":") if plaintext else (None, "", "-1")
    body: dict[str, Any] = {}
    if version >= 5:
        body["features"] = {}
    if version >= 4:
        body["listener_security_protocol_map"] = protocols
    if version >= 2:
        body["endpoints"] = [f"{name}://{address}" for name, address in endpoints.items()]
    body.update(
        {
            "jmx_port": -1,
            "port": int(port),
            "host": host.strip("[]") if host else None,
            "version": version,
            "timestamp": str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)),
        }
    )
    if version >= 3 and rack is not None:
        body["rack"] = rack
    return json.dumps(body, separators=(",", ":")).encode()


class KafkaBroker:
    """One broker's ZooKeeper session and its ephemeral registration, as Kafka keeps them."""

    def __init__(self, hosts: str, chroot: str, broker_id: int | str) -> None:
        self.hosts = hosts
        self.path = f"{chroot}/brokers/ids/{broker_id}"
        self._client: KazooClient | None = None

    @property
    def session_id(self) -> int | None:
        return int(self._client.client_id[0]) if self._client and self._client.connected else None

    async def register(
        self, endpoints: Mapping[str, str] | None = None, data: bytes | None = None, **znode: Any
    ) -> KafkaBroker:
        """A new session and the registration: Kafka's start-up. `data` writes raw bytes instead."""
        content = data if data is not None else broker_znode(endpoints or {}, **znode)
        await asyncio.to_thread(self._register, content)
        return self

    def _register(self, content: bytes) -> None:
        self._close()
        client = KazooClient(hosts=self.hosts, timeout=10)
        client.start(timeout=15)
        self._client = client
        client.create(self.path, content, ephemeral=True, makepath=True)

    async def update(
        self, endpoints: Mapping[str, str] | None = None, data: bytes | None = None, **znode: Any
    ) -> None:
        """Rewrite the registration in place (Kafka does so when its listeners change dynamically)."""
        assert self._client is not None
        content = data if data is not None else broker_znode(endpoints or {}, **znode)
        await asyncio.to_thread(self._client.set, self.path, content)

    async def restart(self, endpoints: Mapping[str, str], **znode: Any) -> None:
        """Shut down (the znode goes with the session) and register again, e.g. from a new pod IP."""
        await self.stop()
        await self.register(endpoints, **znode)

    async def stop(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client.close()
            self._client = None


def write_znode(hosts: str, path: str, data: bytes) -> None:
    """Create or overwrite a persistent znode (e.g. `/cluster/id`) from a short-lived session."""
    client = KazooClient(hosts=hosts, timeout=10)
    client.start(timeout=15)
    try:
        try:
            client.set(path, data)
        except NoNodeError:
            client.create(path, data, makepath=True)
    finally:
        client.stop()
        client.close()


def cluster_id_znode(cluster_id: str) -> bytes:
    """`/cluster/id` as Kafka writes it."""
    return json.dumps({"version": "1", "id": cluster_id}, separators=(",", ":")).encode()
