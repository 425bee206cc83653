"""End to end over mTLS: kafka-xds (its own process, with its workers) serves real Envoy sidecars only
what the identity in each sidecar's certificate is allowed, and follows certificate renewals."""

from __future__ import annotations

import asyncio
import itertools
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import base_config, write_static_brokers
from tests.support.addresses import LoopbackAddresses
from tests.support.envoy import Envoy
from tests.support.secret_volume import SecretVolume
from tests.support.wait import eventually
from tests.support.xds_process import XdsProcess
from xds.bootstrap import XdsClientTls
from xds.demo.brokers import Certs, exchange, make_certs
from xds.shared.addresses import parse_listen

pytestmark = pytest.mark.envoy

PAYMENTS = "spiffe://prod/ns/payments/sa/app"
ANALYTICS = "spiffe://prod/ns/analytics/sa/reports"
ACCESS = [
    {"identity": "spiffe://prod/ns/payments/*", "kafka_clusters": ["kafka-a"]},
    {"identity": "spiffe://prod/ns/analytics/*", "kafka_clusters": ["kafka-a", "kafka-b"]},
]
_SERIALS = itertools.count(1)


@pytest.fixture(params=["sotw", "delta"])
def api(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


class Mesh:
    """Two Kafka clusters of mTLS brokers, kafka-xds on xDS mTLS with an access policy, and sidecars
    whose certificates live in Secret-volume-like directories."""

    def __init__(
        self, tmp_path: Path, certs: Certs, addresses: LoopbackAddresses, upstreams, envoys, xds_processes
    ):
        self.tmp_path, self.certs, self.addresses = tmp_path, certs, addresses
        self._upstreams, self._envoys, self._xds_processes = upstreams, envoys, xds_processes
        self.loopbacks = {"kafka-a": addresses.take(), "kafka-b": addresses.take()}
        self.host = addresses.take()
        self.server_volume = SecretVolume(tmp_path / "kafka-xds-tls")

    async def start(self, access: list[dict[str, Any]] | None = ACCESS) -> XdsProcess:
        clusters = []
        for name, loopback in self.loopbacks.items():
            broker = await self._upstreams(f"{name}-broker-1", self.addresses.take())
            brokers = write_static_brokers(
                self.tmp_path / f"{name}.yaml", [{"id": 1, "host": broker.host, "port": broker.port}]
            )
            clusters.append(
                {
                    "name": name,
                    "loopback_ip": loopback,
                    "port_base": 9090,
                    "upstream_listener": "MESH",
                    "static": {"file": str(brokers), "poll_interval_seconds": 0.2},
                }
            )
        self.renew_server_certificate()
        self.config = base_config(self.certs, clusters, self.host)
        self.config["xds"]["tls"] = {
            "cert_file": str(self.server_volume.path("tls.crt")),
            "key_file": str(self.server_volume.path("tls.key")),
            "client_ca_file": str(self.server_volume.path("ca.crt")),
        }
        if access is not None:
            self.config["access"] = access
        server: XdsProcess = await self._xds_processes(self.config)
        self.server = server
        return server

    def renew_server_certificate(self) -> x509.Certificate:
        cert, key = self.certs.issue(f"xds-server-{next(_SERIALS)}", hosts=[self.host])
        self.server_volume.write_files(**{"tls.crt": cert, "tls.key": key, "ca.crt": self.certs.ca_file})
        return x509.load_pem_x509_certificate(cert.read_bytes())

    def sidecar_volume(self, name: str, identity: str, issuer: Certs | None = None) -> SecretVolume:
        volume = SecretVolume(self.tmp_path / f"{name}-tls")
        self.renew_sidecar_certificate(volume, identity, issuer)
        return volume

    def renew_sidecar_certificate(
        self, volume: SecretVolume, identity: str, issuer: Certs | None = None
    ) -> None:
        cert, key = (issuer or self.certs).issue(f"sidecar-{next(_SERIALS)}", uris=[identity])
        volume.write_files(**{"tls.crt": cert, "tls.key": key, "ca.crt": self.certs.ca_file})

    async def sidecar(self, node_id: str, volume: SecretVolume, api: str = "delta", **extra: Any) -> Envoy:
        tls = XdsClientTls(
            str(volume.path("ca.crt")), str(volume.path("tls.crt")), str(volume.path("tls.key"))
        )
        envoy: Envoy = await self._envoys(node_id, self.config, api=api, xds_tls=tls, **extra)
        return envoy

    async def streams(self, query: str = "") -> dict[str, Any]:
        status, body = await self.server.get(f"/debug/streams{query}")
        assert status in (200, 404), body
        found: dict[str, Any] = body
        return found

    async def refused(self, reason: str) -> float:
        _, text = await self.server.get("/metrics")
        match = re.search(
            rf'^kafka_xds_streams_refused_total{{reason="{reason}"}} (\S+)$', text, re.MULTILINE
        )
        assert match is not None, text
        return float(match.group(1))

    async def presented_serial(self) -> int:
        """The serial of the certificate kafka-xds shows a new connection (with a valid client cert)."""
        cert, key = self.certs.issue(f"probe-{next(_SERIALS)}", uris=[PAYMENTS])
        context = ssl.create_default_context(cafile=str(self.certs.ca_file))
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["h2"])
        host, port = parse_listen(self.config["xds"]["listen"])
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), 5)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def mesh(tmp_path, certs, addresses, upstreams, envoys, xds_processes) -> Mesh:
    return Mesh(tmp_path, certs, addresses, upstreams, envoys, xds_processes)


async def _stat(envoy: Envoy, name: str) -> int:
    return (await envoy.stats()).get(name, 0)


async def _handshake_failed(envoy: Envoy) -> bool:
    """kafka-xds closed the connection during the handshake (Envoy counts a failed connect), and
    Envoy retried (at least twice) without ever getting a response."""
    stats = await envoy.stats()
    return stats.get("cluster.kafka_xds.upstream_cx_connect_fail", 0) >= 2 and not stats.get(
        "cluster.kafka_xds.upstream_rq_200", 0
    )


async def _listeners(envoy: Envoy) -> dict[str, str]:
    return await envoy.listener_addresses()


def _without_client_certificate(bootstrap: dict[str, Any]) -> None:
    context = bootstrap["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
    del context["common_tls_context"]["tls_certificate_sds_secret_configs"]


async def test_a_sidecar_without_a_client_certificate_is_refused_at_the_handshake(mesh: Mesh):
    await mesh.start()
    volume = mesh.sidecar_volume("anonymous", PAYMENTS)
    envoy = await mesh.sidecar("anonymous", volume, edit_bootstrap=_without_client_certificate)
    await eventually(lambda: _handshake_failed(envoy), what="Envoy's TLS handshake refused")
    assert await _listeners(envoy) == {}
    assert list(await envoy.cluster_endpoints()) == ["kafka_xds"]  # no configuration at all
    assert (await mesh.streams())["total"] == 0


async def test_a_certificate_from_another_ca_is_refused_at_the_handshake(mesh: Mesh):
    await mesh.start()
    impostor = make_certs(mesh.tmp_path / "other-ca")
    volume = mesh.sidecar_volume("impostor", PAYMENTS, issuer=impostor)
    envoy = await mesh.sidecar("impostor", volume)
    await eventually(lambda: _handshake_failed(envoy), what="Envoy's TLS handshake refused")
    assert await _listeners(envoy) == {}
    assert list(await envoy.cluster_endpoints()) == ["kafka_xds"]  # no configuration at all
    assert (await mesh.streams())["total"] == 0


async def _only_kafka_a(mesh: Mesh, envoy: Envoy) -> bool:
    listeners = await _listeners(envoy)
    assert listeners == {"kafka-a/broker-1": f"{mesh.loopbacks['kafka-a']}:9091"}, listeners
    return True


async def test_a_sidecar_sees_only_the_clusters_its_identity_is_allowed(mesh: Mesh, api):
    await mesh.start()
    envoy = await mesh.sidecar("payments-1", mesh.sidecar_volume("payments-1", PAYMENTS), api=api)
    await eventually(lambda: _only_kafka_a(mesh, envoy), what="kafka-a's listener alone")
    answer = await eventually(
        lambda: exchange(mesh.loopbacks["kafka-a"], 9091, "ping"), what="bytes through kafka-a:9091"
    )
    assert answer.startswith("kafka-a-broker-1 commonName=sidecar.kafka-xds.test")  # upstream mTLS
    assert set((await envoy.cluster_endpoints()).keys()) == {"kafka_xds", "kafka-a/broker-1"}
    (row,) = (await mesh.streams("?identity=spiffe://prod/ns/payments/*"))["streams"]
    assert (row["node_id"], row["identity"], row["allowed_clusters"]) == ("payments-1", PAYMENTS, ["kafka-a"])
    _, page = await mesh.server.get("/")
    assert PAYMENTS in page


async def test_a_node_id_claiming_another_service_changes_nothing_it_sees(mesh: Mesh, api):
    await mesh.start()
    analytics = await mesh.sidecar("analytics-0", mesh.sidecar_volume("analytics-0", ANALYTICS), api=api)
    claims = await mesh.sidecar("analytics-1", mesh.sidecar_volume("payments-2", PAYMENTS), api=api)

    async def both_clusters() -> bool:
        return set(await _listeners(analytics)) == {"kafka-a/broker-1", "kafka-b/broker-1"}

    await eventually(both_clusters, what="the analytics sidecar's two clusters")
    await eventually(lambda: _only_kafka_a(mesh, claims), what="the claimant's kafka-a alone")
    rows = {row["node_id"]: row for row in (await mesh.streams())["streams"]}
    assert rows["analytics-1"]["identity"] == PAYMENTS
    assert rows["analytics-1"]["allowed_clusters"] == ["kafka-a"]


async def test_an_identity_allowed_nothing_is_refused_counted_and_logged(mesh: Mesh, api):
    await mesh.start()
    stranger = "spiffe://prod/ns/marketing/sa/web"
    envoy = await mesh.sidecar("web-1", mesh.sidecar_volume("web-1", stranger), api=api)

    async def refused() -> bool:
        return await mesh.refused("permission_denied") >= 1

    await eventually(refused, what="the refusal counted")
    assert await _listeners(envoy) == {}
    assert (await mesh.streams())["total"] == 0
    log = mesh.server.log_text()
    assert "PERMISSION_DENIED" in log and stranger in log


async def test_a_renewed_server_certificate_is_presented_without_a_restart(mesh: Mesh):
    await mesh.start()
    first = await mesh.presented_serial()
    renewed = mesh.renew_server_certificate()
    assert renewed.serial_number != first

    async def every_worker_presents_it() -> bool:
        # SO_REUSEPORT spreads connections over the workers: each reads the files itself.
        serials = {await mesh.presented_serial() for _ in range(8)}
        return serials == {renewed.serial_number}

    await eventually(every_worker_presents_it, what="the renewed certificate on new connections")
    envoy = await mesh.sidecar("payments-1", mesh.sidecar_volume("payments-1", PAYMENTS))
    await eventually(lambda: _only_kafka_a(mesh, envoy), what="a sidecar served over the renewed certificate")


async def test_a_renewed_sidecar_certificate_is_used_for_its_next_connection(mesh: Mesh, xds_processes):
    await mesh.start()
    volume = mesh.sidecar_volume("reports-1", PAYMENTS)
    envoy = await mesh.sidecar("reports-1", volume)
    await eventually(lambda: _only_kafka_a(mesh, envoy), what="kafka-a alone, as payments")

    reloads = await _stat(envoy, "sds.kafka_xds_client_certificate.update_success")

    mesh.renew_sidecar_certificate(volume, ANALYTICS)  # the kubelet swaps ..data

    async def reloaded() -> bool:
        return await _stat(envoy, "sds.kafka_xds_client_certificate.update_success") > reloads

    await eventually(reloaded, what="Envoy re-reading its certificate on the ..data swap")
    assert set(await _listeners(envoy)) == {"kafka-a/broker-1"}  # the open stream keeps its identity
    await mesh.server.terminate()  # the next connection is to a new kafka-xds on the same address
    mesh.server = await xds_processes(mesh.config, name="second")

    async def both_clusters() -> bool:
        return set(await _listeners(envoy)) == {"kafka-a/broker-1", "kafka-b/broker-1"}

    await eventually(both_clusters, what="the sidecar reconnected as analytics")
    (row,) = (await mesh.streams())["streams"]
    assert (row["identity"], row["allowed_clusters"]) == (ANALYTICS, ["kafka-a", "kafka-b"])
