"""Stand-in brokers for the demo and the tests: certificates (trustme) and mTLS servers.

`Certs.issue` also makes the certificates of kafka-xds's own mTLS (a server certificate for its ADS
address, and sidecar certificates whose identity is a URI SAN such as a SPIFFE id).

No Kafka broker binary runs here, so a "broker" is what its SSL listener is on the wire: a TLS
server that requires and verifies a client certificate (ssl.client.auth=required). It answers each
line with its own name and the client certificate's common name, so a caller knows which broker it
reached and with which identity. Needs the `demo` (or `test`) extra for trustme.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Certs:
    ca: trustme.CA
    directory: Path
    ca_file: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *hosts: str, uris: Sequence[str] = ()) -> ssl.SSLContext:
        """A broker's TLS server: its certificate for `hosts` (DNS names, IPs) and `uris` (e.g. the
        SPIFFE id the sidecar verifies), and client certificates from this CA required."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if uris:  # trustme makes DNS, IP and email names only
            cert_file, key_file = self.issue(f"server-{secrets.token_hex(6)}", uris=uris, hosts=hosts)
            context.load_cert_chain(cert_file, key_file)
        else:
            self.ca.issue_cert(*hosts).configure_cert(context)
        self.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED  # a broker's MESH listener: ssl.client.auth=required
        return context

    def issue(
        self, name: str, *, uris: Sequence[str] = (), hosts: Sequence[str] = (), directory: Path | None = None
    ) -> tuple[Path, Path]:
        """A certificate from this CA for TLS servers and clients, with `uris` (e.g. SPIFFE ids) and
        `hosts` (DNS names, IPs) as subject alternative names: `<name>.pem` and `<name>.key`."""
        return issue_certificate(self.ca, directory or self.directory, name, uris=uris, hosts=hosts)


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


def issue_certificate(
    ca: trustme.CA, directory: Path, name: str, *, uris: Sequence[str] = (), hosts: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Like trustme's issue_cert, with URI SANs too (trustme makes DNS, IP and email ones only)."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)  # what trustme makes
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).subject
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


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
