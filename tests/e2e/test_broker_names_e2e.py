"""End to end: a real Envoy verifies the broker's certificate name, not only its CA.

Every certificate here is from the one test CA: the impostor's is as valid as the broker's, for
another broker's name. Envoy must refuse it on the broker's address (`ssl.fail_verify_san`) and pass
no bytes, and reach the real broker, whose certificate holds the name rendered for its id.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from tests.conftest import base_config, write_static_brokers
from tests.e2e.test_envoy_e2e import _answers, _cluster, _stat
from tests.support.addresses import LoopbackAddresses
from tests.support.broker_names import BROKER_DOMAIN
from tests.support.wait import eventually
from xds.demo.brokers import Certs, TlsUpstream, exchange

pytestmark = pytest.mark.envoy

TEMPLATES = {
    "dns": "{cluster}-broker-{broker_id}." + BROKER_DOMAIN,
    "uri": "spiffe://kafka-xds.test/ns/kafka/sa/{cluster}/broker-{broker_id}",
}
FAIL_VERIFY_SAN = "cluster.kafka-a.broker-1.ssl.fail_verify_san"


def _name(kind: str, broker_id: int) -> str:
    return TEMPLATES[kind].format(cluster="kafka-a", broker_id=broker_id)


async def _broker(certs: Certs, label: str, host: str, kind: str, broker_id: int) -> TlsUpstream:
    """An mTLS upstream whose certificate (from the test CA) holds broker `broker_id`'s name only."""
    name = _name(kind, broker_id)
    context = certs.server_context(host, uris=[name]) if kind == "uri" else certs.server_context(host, name)
    return await TlsUpstream(label, host, context).start()


async def _gets_no_bytes(host: str, port: int) -> bool:
    """The sidecar takes the connection, and closes it without one byte from upstream."""
    with contextlib.suppress(ConnectionError):
        await exchange(host, port, "ping")
        return False
    return True


@pytest.mark.parametrize("kind", ["dns", "uri"])
async def test_an_impostor_with_a_valid_certificate_for_another_name_is_refused_on_a_brokers_address(
    tmp_path, addresses: LoopbackAddresses, certs: Certs, envoys, xds_processes, kind: str
) -> None:
    loopback = addresses.take()
    broker = await _broker(certs, "broker-1", addresses.take(), kind, 1)
    # Broker 2's certificate, on another address: what a compromised broker 2 (or anything holding a
    # certificate the broker CA signed) would answer with in place of broker 1.
    impostor = await _broker(certs, "impostor", addresses.take(), kind, 2)
    started = [broker, impostor]
    try:
        brokers_file = write_static_brokers(
            tmp_path / "brokers.yaml", [{"id": 1, "host": broker.host, "port": broker.port}]
        )
        config: dict[str, Any] = base_config(certs, [_cluster(loopback, brokers_file)], addresses.take())
        config["upstream_tls"]["broker_names"] = {kind: [TEMPLATES[kind]]}
        await xds_processes(config)
        envoy = await envoys("app-1", config)
        await eventually(lambda: _answers(loopback, 9091, "broker-1"), what="the real broker")
        assert await _stat(envoy, FAIL_VERIFY_SAN) == 0
        clusters_modified = await _stat(envoy, "cluster_manager.cluster_modified")

        # Broker 1's upstream address now leads to the impostor (a poisoned registration, a stolen IP).
        write_static_brokers(brokers_file, [{"id": 1, "host": impostor.host, "port": impostor.port}])

        async def on_the_impostor() -> bool:
            endpoints: dict[str, list[str]] = await envoy.cluster_endpoints()
            return endpoints["kafka-a/broker-1"] == [f"{impostor.host}:{impostor.port}"]

        await eventually(on_the_impostor, what="broker 1's endpoint moved to the impostor")
        assert await _gets_no_bytes(loopback, 9091)
        assert await _stat(envoy, FAIL_VERIFY_SAN) >= 1
        assert impostor.client_subjects == []  # no connection got past the handshake to it
        # The move was an endpoint change only: the Cluster and its name check stayed as they were.
        assert await _stat(envoy, "cluster_manager.cluster_modified") == clusters_modified

        write_static_brokers(brokers_file, [{"id": 1, "host": broker.host, "port": broker.port}])
        await eventually(lambda: _answers(loopback, 9091, "broker-1"), what="the real broker again")
    finally:
        for upstream in started:
            await upstream.stop()


async def test_with_verify_broker_names_false_any_certificate_from_the_ca_passes_and_serve_warns(
    tmp_path, addresses: LoopbackAddresses, certs: Certs, envoys, xds_processes
) -> None:
    """The opt-out does what it says (and says it at start): the impostor is reached."""
    loopback = addresses.take()
    impostor = await _broker(certs, "impostor", addresses.take(), "dns", 2)
    try:
        brokers_file = write_static_brokers(
            tmp_path / "brokers.yaml", [{"id": 1, "host": impostor.host, "port": impostor.port}]
        )
        config: dict[str, Any] = base_config(certs, [_cluster(loopback, brokers_file)], addresses.take())
        del config["upstream_tls"]["broker_names"]
        config["upstream_tls"]["verify_broker_names"] = False
        server = await xds_processes(config)
        envoy = await envoys("app-1", config)
        await eventually(lambda: _answers(loopback, 9091, "impostor"), what="any certificate from the CA")
        assert await _stat(envoy, FAIL_VERIFY_SAN) == 0
        warnings = [line for line in server.log_text().splitlines() if "verify_broker_names is false" in line]
        assert len(warnings) == 1 and "kafka-a" in warnings[0], warnings
    finally:
        await impostor.stop()
