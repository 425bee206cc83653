"""Stand-in brokers for the demo and the tests: certificates (trustme) and mTLS servers.

No Kafka broker binary runs here, so a "broker" is what its SSL listener is on the wire: a TLS
server that requires and verifies a client certificate (ssl.client.auth=required). It answers each
line with its own name and the client certificate's common name, so a caller knows which broker it
reached and with which identity. Needs the `demo` (or `test`) extra for trustme.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass
class Certs:
    ca: trustme.CA
    directory: Path
    ca_file: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *hosts: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*hosts).configure_cert(context)
        self.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED  # a broker's MESH listener: ssl.client.auth=required
        return context


def make_certs(directory: Path, client_name: str = "sidecar.kafka-xds.test") -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="kafka-xds tests")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert(client_name, common_name=client_name)
    client_cert, client_key = directory / "client.pem", directory / "client.key"
    client.cert_chain_pems[0].write_to_path(str(client_cert))
    client.private_key_pem.write_to_path(str(client_key))
    return Certs(ca, directory, ca_file, client_cert, client_key)


@dataclass
class TlsUpstream:
    """A TLS server on (host, port) answering every line with `<name> <client subject> <line>`."""

    name: str
    host: str
    context: ssl.SSLContext
    port: int = 0
    connections: int = 0
    client_subjects: list[str] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)  # SNI of each handshake
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> TlsUpstream:
        self.context.sni_callback = self._record_server_name
        self._server = await asyncio.start_server(self._handle, self.host, self.port, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _record_server_name(self, _socket: object, server_name: str | None, _context: object) -> None:
        self.server_names.append(server_name)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            for task in list(self._handlers):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        peer = writer.get_extra_info("peercert") or {}
        subject = ",".join(
            f"{key}={value}" for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"
        )
        self.client_subjects.append(subject)
        try:
            while line := await reader.readline():
                writer.write(f"{self.name} {subject} {line.decode().strip()}\n".encode())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def exchange(host: str, port: int, line: str, timeout: float = 5.0) -> str:
    """Send one line over plain TCP (as a Kafka client talks to its sidecar) and read the answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(line.encode() + b"\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), timeout)
        if not answer:
            raise ConnectionError(f"{host}:{port} closed the connection without answering")
        return answer.decode().strip()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
