"""A Kafka-protocol client: requests over aiokafka's connection class, one kept-open connection.

aiokafka negotiates each API's version with the broker (ApiVersions) and does TLS and SASL; this module
adds what a control plane needs around it: any request (`request`; the brokers' Metadata is `fetch`,
partitions and topic configs are `xds.kafka.partitions`) over the connection to the last server, kept
open and reopened when the broker closed it, TLS files and SASL passwords read again (off the event
loop) for every new connection so rotations need no restart, and errors as one short line an
operator can act on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Protocol

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.api import Request
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
    """Requests (Metadata first) over aiokafka's connection class, keeping the connection to the last
    server open.

    aiokafka negotiates each request's version with the broker (ApiVersions), and does TLS and SASL.
    TLS files and the SASL password are read again for every new connection, so rotated certificates
    and passwords are picked up without a restart.
    """

    def __init__(self, settings: KraftSettings, cluster: str) -> None:
        self._settings = settings
        self._client_id = f"kafka-xds-{cluster}"
        self._connection: Any = None  # aiokafka.conn.AIOKafkaConnection (untyped)
        self._server: HostPort | None = None

    async def fetch(self, server: HostPort) -> ClusterMetadata:
        """The brokers (no topics) as `server` knows them."""
        answer = await self.request(server, MetadataRequest(topics=[], allow_auto_topic_creation=False))
        return decode_metadata(answer)

    async def request(
        self, server: HostPort, request: Request[Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one request to `server` over the kept connection (opened when there is none, opened
        again once when a kept one turns out closed) and return aiokafka's decoding of the answer
        (`to_object()`: dicts and lists, for the caller's strict decoder). aiokafka picks the highest
        version both sides speak. `timeout` (seconds) bounds connecting and answering each, at most
        the settings' request timeout. Raises OSError, TimeoutError or MetadataError (the server
        answered, but with a Kafka error: authentication, an unsupported request)."""
        limit = self._settings.request_timeout_seconds
        timeout = limit if timeout is None else max(0.0, min(timeout, limit))
        reused = self._connection is not None and self._server == server and self._connection.connected()
        if reused:
            try:
                return await self._send(server, request, timeout)
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
            return await self._send(server, request, timeout)
        except KafkaConnectionError as err:
            raise MetadataError(describe_error(err)) from err

    async def _send(self, server: HostPort, request: Request[Any], timeout: float) -> dict[str, Any]:
        try:
            connection = await self._connection_to(server, timeout)
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
        except asyncio.CancelledError:
            await self.close()  # an answer may still come on it: of no further use
            raise
        answer: dict[str, Any] = response.to_object()
        return answer

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
