"""A Kafka-protocol client: requests over aiokafka's connection class, one kept-open connection.

aiokafka negotiates each API's version with the broker (ApiVersions) and does TLS and SASL; this module
adds what a control plane needs around it: the connection to the last server kept open and reopened
when the broker closed it, TLS files and SASL passwords read again (off the event loop) for every new
connection so rotations need no restart, and errors as one short line an operator can act on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Protocol

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from xds.config.model import KraftSettings
from xds.kafka.metadata import ClusterMetadata, MetadataError, decode_metadata
from xds.shared.addresses import HostPort
from xds.shared.log import event, read_secret

log = logging.getLogger("kafka_xds.kafka")


class MetadataClient(Protocol):
    """Asks one server for the cluster's Metadata. Raises OSError, TimeoutError or MetadataError."""

    async def fetch(self, server: HostPort) -> ClusterMetadata: ...

    async def close(self) -> None: ...


def parse_bootstrap_server(server: str) -> HostPort:
    """`host:port` or `[v6]:port` (the config has checked the shape already)."""
    host, _, port = server.rpartition(":")
    return HostPort(host.strip("[]"), int(port))


def describe_error(err: BaseException) -> str:
    """An error as one short line an operator can act on."""
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err}"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    text = str(err) or type(err).__name__
    return text if type(err).__name__ in text else f"{type(err).__name__}: {text}"


class KafkaMetadataClient:
    """Metadata over aiokafka's connection class, keeping the connection to the last server open.

    aiokafka negotiates the Metadata version with the broker (ApiVersions), and does TLS and SASL.
    TLS files and the SASL password are read again for every new connection, so rotated certificates
    and passwords are picked up without a restart.
    """

    def __init__(self, settings: KraftSettings, cluster: str) -> None:
        self._settings = settings
        self._client_id = f"kafka-xds-{cluster}"
        self._connection: Any = None  # aiokafka.conn.AIOKafkaConnection (untyped)
        self._server: HostPort | None = None

    async def fetch(self, server: HostPort) -> ClusterMetadata:
        reused = self._connection is not None and self._server == server and self._connection.connected()
        if reused:
            try:
                return await self._fetch(server)
            except (OSError, TimeoutError, KafkaConnectionError) as err:
                # A kept-open connection may have been closed under us (the broker's
                # connections.max.idle.ms, a load balancer's idle timeout, a restart): that says
                # nothing about the server yet. Ask again over a new connection.
                event(
                    log,
                    logging.DEBUG,
                    "kept connection failed; reconnecting",
                    server=str(server),
                    error=repr(err),
                )
        try:
            return await self._fetch(server)
        except KafkaConnectionError as err:
            raise MetadataError(describe_error(err)) from err

    async def _fetch(self, server: HostPort) -> ClusterMetadata:
        timeout = self._settings.request_timeout_seconds
        try:
            connection = await self._connection_to(server, timeout)
            request = MetadataRequest(topics=[], allow_auto_topic_creation=False)
            response = await asyncio.wait_for(connection.send(request), timeout)
        except KafkaConnectionError:
            await self.close()
            raise
        except KafkaError as err:
            await self.close()
            raise MetadataError(describe_error(err)) from err
        except (OSError, TimeoutError):
            await self.close()
            raise
        return decode_metadata(response.to_object())

    async def _connection_to(self, server: HostPort, timeout: float) -> Any:
        if self._connection is not None and self._server == server and self._connection.connected():
            return self._connection
        await self.close()
        ssl_context, password = await asyncio.to_thread(self._read_security_files)
        settings = self._settings
        sasl = settings.sasl
        connection = await asyncio.wait_for(
            create_conn(
                server.host,
                server.port,
                client_id=self._client_id,
                request_timeout_ms=int(timeout * 1000),
                ssl_context=ssl_context,
                security_protocol=settings.security_protocol,
                sasl_mechanism=sasl.mechanism if sasl is not None else None,
                sasl_plain_username=sasl.username if sasl is not None else None,
                sasl_plain_password=password,
            ),
            timeout,
        )
        self._connection, self._server = connection, server
        return connection

    def _read_security_files(self) -> tuple[ssl.SSLContext | None, str | None]:
        """Runs in a worker thread: file reads and certificate parsing block."""
        settings = self._settings
        context = None
        if settings.security_protocol in ("SSL", "SASL_SSL"):
            context = make_ssl_context(settings)
        password = None
        if settings.sasl is not None:
            password = read_secret(settings.sasl.password_file)  # aiokafka's debug lines show it otherwise
        return context, password

    async def close(self) -> None:
        connection, self._connection, self._server = self._connection, None, None
        if connection is not None:
            connection.close(reason=None)


def make_ssl_context(settings: KraftSettings) -> ssl.SSLContext:
    """The TLS client context for the bootstrap listener (blocking: reads files)."""
    tls = settings.ssl
    context = ssl.create_default_context(cafile=tls.ca_file if tls is not None else None)
    if tls is not None:
        context.check_hostname = tls.check_hostname
        if tls.cert_file is not None and tls.key_file is not None:
            password = None
            if tls.key_password_file is not None:
                password = read_secret(tls.key_password_file)
            context.load_cert_chain(tls.cert_file, tls.key_file, password)
    return context
