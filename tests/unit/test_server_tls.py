"""The ADS server over TLS, in process: handshakes, identities, the access policy, certificate renewal."""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from grpc import aio
from prometheus_client import CollectorRegistry

from tests.support.protocol_world import World
from tests.support.secret_volume import SecretVolume
from tests.support.wait import eventually
from tests.unit.test_server import AdsClient
from xds.config.model import XdsSettings, XdsTls
from xds.demo.brokers import Certs, make_certs
from xds.serving.access import AccessPolicy
from xds.serving.reports import StreamQuery, report
from xds.serving.stream_metrics import StreamMetrics
from xds.serving.transport import AdsServer
from xds.shared.errors import StartupError
from xds.shared.resource_types import CLUSTER_TYPE

_SERIALS = itertools.count(1)  # certificate file names
PAYMENTS_APP = "spiffe://prod/ns/payments/sa/app"
POLICY = [
    ("spiffe://prod/ns/payments/*", ["kafka-a"]),
    ("spiffe://prod/ns/analytics/*", ["kafka-a", "kafka-b"]),
]


class TlsServer:
    """An AdsServer on TLS files in a Secret-volume-like directory, with two Kafka clusters published."""

    def __init__(self, tmp_path: Path, access: AccessPolicy | None) -> None:
        self.certs = make_certs(tmp_path / "certs")
        self.volume = SecretVolume(tmp_path / "secret")
        self.renew()
        self.registry = CollectorRegistry()
        tls = XdsTls(
            cert_file=str(self.volume.path("tls.crt")),
            key_file=str(self.volume.path("tls.key")),
            client_ca_file=str(self.volume.path("ca.crt")),
        )
        self.server = AdsServer(
            # The tests build resources on the event loop; no overload refusal may stand in for
            # the refusal a test expects.
            XdsSettings(listen="127.0.0.1:0", tls=tls, overload_lag_seconds=60),
            StreamMetrics(self.registry),
            access=access,
        )
        self.world = World()

    def renew(self, key: Path | None = None) -> x509.Certificate:
        """A new server certificate, swapped in as the kubelet does; returns it."""
        cert, own_key = self.certs.issue(f"server-{next(_SERIALS)}", hosts=["127.0.0.1"])
        self.volume.write_files(**{"tls.crt": cert, "tls.key": key or own_key, "ca.crt": self.certs.ca_file})
        return x509.load_pem_x509_certificate(cert.read_bytes())

    async def start(self) -> TlsServer:
        await self.server.start()
        views = await asyncio.to_thread(
            self.world.views, {1: "10.0.0.1"}, None, "kafka-a", {"kafka-b": {1: "10.0.1.1"}}
        )
        self.server.publish(views.snapshot)
        return self

    def client(self, certs: Certs | None = None, *, uris: tuple[str, ...] = (), hosts: tuple[str, ...] = ()):
        """An ADS client trusting the server's CA, presenting a certificate from `certs` (None: none)."""
        key = cert = None
        if certs is not None:
            cert_file, key_file = certs.issue(f"client-{next(_SERIALS)}", uris=uris, hosts=hosts)
            cert, key = cert_file.read_bytes(), key_file.read_bytes()
        credentials = grpc.ssl_channel_credentials(self.certs.ca_file.read_bytes(), key, cert)
        assert self.server.port is not None
        return AdsClient(self.server.port, credentials=credentials)

    def refused(self, reason: str) -> float:
        return self.registry.get_sample_value("kafka_xds_streams_refused_total", {"reason": reason}) or 0.0


@pytest.fixture
async def tls_server(tmp_path) -> AsyncIterator[Callable[..., asyncio.Future[TlsServer]]]:
    started: list[TlsServer] = []

    async def start(access: AccessPolicy | None = None) -> TlsServer:
        server = await TlsServer(tmp_path, access).start()
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        await server.server.stop(grace=0)


def _ask_clusters(client: AdsClient, node_id: str = "app-1") -> None:
    client.send(DiscoveryRequest(type_url=CLUSTER_TYPE, node=Node(id=node_id)))


async def _refused_code(client: AdsClient) -> grpc.StatusCode:
    with pytest.raises(aio.AioRpcError) as raised:
        await client.receive()
    await client.close()
    return raised.value.code()


async def test_a_client_without_a_certificate_is_refused_at_the_handshake(tls_server):
    served = await tls_server()
    client = served.client(None)
    _ask_clusters(client)
    assert await _refused_code(client) == grpc.StatusCode.UNAVAILABLE
    assert served.server.streams == {}


async def test_a_certificate_from_another_ca_is_refused_at_the_handshake(tls_server, tmp_path):
    served = await tls_server()
    client = served.client(make_certs(tmp_path / "other-ca"), uris=(PAYMENTS_APP,))
    _ask_clusters(client)
    assert await _refused_code(client) == grpc.StatusCode.UNAVAILABLE
    assert served.server.streams == {}


async def test_the_identity_comes_from_the_certificate_not_the_node_id(tls_server):
    served = await tls_server(AccessPolicy(POLICY))
    client = served.client(served.certs, uris=(PAYMENTS_APP,), hosts=("app.payments.svc",))
    _ask_clusters(client, node_id="analytics-reporting")  # claims to be another service
    response = await client.receive()
    assert [resource.value for resource in response.resources] and all(
        b"kafka-a/" in resource.value and b"kafka-b/" not in resource.value for resource in response.resources
    )
    (stream,) = served.server.streams.values()
    assert (stream.node_id, stream.identity, stream.allowed) == (
        "analytics-reporting",
        PAYMENTS_APP,
        frozenset({"kafka-a"}),
    )
    await client.close()


async def test_streams_report_their_identity_and_allowed_clusters_and_filter_by_identity(tls_server):
    served = await tls_server(AccessPolicy(POLICY))
    client = served.client(served.certs, uris=(PAYMENTS_APP,))
    _ask_clusters(client)
    await client.receive()
    streams, views = served.server.streams.values(), served.server.views
    (row,) = report(streams, views, StreamQuery(identity="spiffe://prod/ns/payments/*"))["rows"]
    assert (row["identity"], row["allowed_clusters"]) == (PAYMENTS_APP, ["kafka-a"])
    assert report(streams, views, StreamQuery(identity=PAYMENTS_APP))["matched"] == 1
    assert report(streams, views, StreamQuery(identity="spiffe://prod/ns/analytics/*"))["matched"] == 0
    await client.close()


async def test_the_dns_san_is_the_identity_without_a_uri_san(tls_server):
    served = await tls_server(AccessPolicy([("*.payments.svc", ["kafka-b"])]))
    client = served.client(served.certs, hosts=("app.payments.svc",))
    _ask_clusters(client)
    await client.receive()
    (stream,) = served.server.streams.values()
    assert (stream.identity, stream.allowed) == ("app.payments.svc", frozenset({"kafka-b"}))
    await client.close()


async def test_an_identity_allowed_nothing_is_refused_counted_and_logged_by_name(tls_server, caplog):
    served = await tls_server(AccessPolicy(POLICY))
    client = served.client(served.certs, uris=("spiffe://prod/ns/marketing/sa/web",))
    _ask_clusters(client)
    with (
        caplog.at_level(logging.WARNING, logger="kafka_xds.server"),
        pytest.raises(aio.AioRpcError) as raised,
    ):
        await client.receive()
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'spiffe://prod/ns/marketing/sa/web' may see no Kafka cluster" in (raised.value.details() or "")
    assert served.refused("permission_denied") == 1
    assert any(
        getattr(record, "fields", {}).get("identity") == "spiffe://prod/ns/marketing/sa/web"
        and "PERMISSION_DENIED" in record.getMessage()
        for record in caplog.records
    )
    assert served.server.streams == {}
    await client.close()


async def test_a_certificate_without_a_usable_identity_is_refused_saying_so(tls_server):
    served = await tls_server(AccessPolicy([("*", ["kafka-a"])]))
    client = served.client(served.certs)  # neither a URI nor a DNS SAN
    _ask_clusters(client)
    with pytest.raises(aio.AioRpcError) as raised:
        await client.receive()
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "URI SAN" in (raised.value.details() or "")
    assert served.refused("unauthenticated") == 1
    await client.close()


async def test_without_an_access_policy_a_verified_sidecar_sees_every_cluster(tls_server):
    served = await tls_server(None)
    client = served.client(served.certs, uris=(PAYMENTS_APP,))
    _ask_clusters(client)
    response = await client.receive()
    assert len(response.resources) == 2
    (stream,) = served.server.streams.values()
    assert (stream.identity, stream.allowed) == (PAYMENTS_APP, None)
    await client.close()


async def _presented(served: TlsServer, certs: Certs) -> x509.Certificate:
    """The certificate a new TLS connection is shown (the client presents one, as it must)."""
    cert, key = certs.issue(f"probe-{next(_SERIALS)}", uris=(PAYMENTS_APP,))
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    _, writer = await asyncio.open_connection("127.0.0.1", served.server.port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der)


async def test_a_renewed_server_certificate_is_presented_to_new_connections(tls_server):
    served = await tls_server()
    first = await _presented(served, served.certs)
    renewed = served.renew()
    assert renewed.serial_number != first.serial_number
    shown = await _presented(served, served.certs)
    assert shown.serial_number == renewed.serial_number
    client = served.client(served.certs, uris=(PAYMENTS_APP,))  # and gRPC still works on it
    _ask_clusters(client)
    assert (await client.receive()).type_url == CLUSTER_TYPE
    await client.close()


async def test_a_renewal_whose_key_does_not_match_keeps_the_previous_certificate(tls_server, caplog):
    served = await tls_server()
    first = await _presented(served, served.certs)
    with caplog.at_level(logging.ERROR, logger="kafka_xds.server"):
        served.renew(key=served.certs.client_key)  # a key, but not the new certificate's
        for _ in range(3):
            assert (await _presented(served, served.certs)).serial_number == first.serial_number
    problems = [record for record in caplog.records if "previous certificate stays" in record.getMessage()]
    assert len(problems) == 1  # once, not at every handshake
    assert "xds.tls.key_file" in problems[0].fields["error"]
    fixed = served.renew()
    await eventually(lambda: _serial_is(served, fixed.serial_number), what="the next good renewal presented")


async def _serial_is(served: TlsServer, serial: int) -> bool:
    return (await _presented(served, served.certs)).serial_number == serial


async def test_unreadable_certificate_files_stop_the_start_naming_the_key(tmp_path):
    tls = XdsTls(cert_file=str(tmp_path / "missing.pem"), key_file=str(tmp_path / "missing.key"))
    server = AdsServer(XdsSettings(listen="127.0.0.1:0", tls=tls), StreamMetrics(CollectorRegistry()))
    with pytest.raises(StartupError) as raised:
        await server.start()
    assert str(raised.value).startswith("xds.tls.cert_file: cannot read ")
