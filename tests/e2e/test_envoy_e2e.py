"""End to end: kafka-xds (its own process) drives a real Envoy over ADS; bytes flow over real mTLS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import Stack, base_config, write_static_brokers
from tests.support.addresses import LoopbackAddresses
from tests.support.broker_names import broker_name
from tests.support.envoy import Envoy
from tests.support.wait import eventually
from tests.support.xds_process import XdsProcess
from xds.demo.brokers import Certs, exchange

pytestmark = pytest.mark.envoy


@pytest.fixture(params=["sotw", "delta"])
def api(request: pytest.FixtureRequest) -> str:
    """The ADS variant the sidecar speaks: the scenarios below run with both."""
    value: str = request.param
    return value


def _cluster(loopback: str, brokers_file: Path, **extra: object) -> dict[str, object]:
    return {
        "name": "kafka-a",
        "loopback_ip": loopback,
        "port_base": 9090,
        "upstream_listener": "MESH",
        "removal_grace_seconds": 2,
        "static": {"file": str(brokers_file), "poll_interval_seconds": 0.2},
        **extra,
    }


async def _answers(loopback: str, port: int, expected_prefix: str) -> str:
    answer = await exchange(loopback, port, "ping")
    assert answer.startswith(expected_prefix), answer
    return answer


async def _stat(envoy: Envoy, name: str) -> int:
    return (await envoy.stats()).get(name, 0)


async def test_bytes_flow_through_sidecar_to_mtls_upstream(
    tmp_path, addresses: LoopbackAddresses, certs: Certs, upstreams, envoys, xds_processes, api
):
    loopback = addresses.take()
    broker1 = await upstreams("broker-1", addresses.take())
    broker2 = await upstreams("broker-2", addresses.take())
    brokers_file = write_static_brokers(
        tmp_path / "brokers.yaml",
        [
            {"id": 1, "host": broker1.host, "port": broker1.port, "rack": "az1"},
            {"id": 2, "host": broker2.host, "port": broker2.port, "rack": "az2"},
        ],
    )
    config = base_config(certs, [_cluster(loopback, brokers_file)], addresses.take())
    server = await xds_processes(config)
    envoy = await envoys("app-1", config, api=api)

    answer = await eventually(
        lambda: _answers(loopback, 9091, "broker-1"), what=f"bytes through {loopback}:9091"
    )
    assert (
        "commonName=sidecar.kafka-xds.test" in answer
    )  # the upstream verified the sidecar's client certificate
    await eventually(lambda: _answers(loopback, 9092, "broker-2"), what=f"bytes through {loopback}:9092")

    listeners = await envoy.listener_addresses()
    assert listeners == {"kafka-a/broker-1": f"{loopback}:9091", "kafka-a/broker-2": f"{loopback}:9092"}
    endpoints = await envoy.cluster_endpoints()
    assert endpoints["kafka-a/broker-1"] == [f"{broker1.host}:{broker1.port}"]
    assert endpoints["kafka-a/broker-2"] == [f"{broker2.host}:{broker2.port}"]
    dump = await envoy.config_dump(resource="dynamic_active_clusters")
    tls = dump["configs"][0]["cluster"]["transport_socket"]
    assert tls["name"] == "envoy.transport_sockets.tls"
    context = tls["typed_config"]["common_tls_context"]  # the TLS material comes by SDS over ADS
    assert context["tls_certificate_sds_secret_configs"][0]["name"] == "kafka-a/client-certificate"
    # The trusted CA by SDS, and in the Cluster the name its broker's certificate must hold.
    validation = context["combined_validation_context"]
    assert validation["validation_context_sds_secret_config"]["name"] == "kafka-a/trusted-ca"
    broker_id = int(dump["configs"][0]["cluster"]["name"].removeprefix("kafka-a/broker-"))
    assert validation["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": broker_name("kafka-a", broker_id)}}
    ]
    assert set(await _secret_versions(envoy)) == {"kafka-a/client-certificate", "kafka-a/trusted-ca"}
    assert server.log_text().count("Traceback") == 0


async def test_editing_static_file_moves_traffic_without_listener_or_cluster_change(
    tmp_path, addresses: LoopbackAddresses, certs: Certs, upstreams, envoys, xds_processes, api
):
    loopback = addresses.take()
    old = await upstreams("old-pod", addresses.take())
    new = await upstreams("new-pod", addresses.take())
    brokers_file = write_static_brokers(
        tmp_path / "brokers.yaml", [{"id": 1, "host": old.host, "port": old.port}]
    )
    config = base_config(certs, [_cluster(loopback, brokers_file)], addresses.take())
    await xds_processes(config)
    envoy = await envoys("app-1", config, api=api)
    await eventually(lambda: _answers(loopback, 9091, "old-pod"), what="traffic to the old pod")
    listener_modified = await _stat(envoy, "listener_manager.listener_modified")
    cluster_modified = await _stat(envoy, "cluster_manager.cluster_modified")

    write_static_brokers(brokers_file, [{"id": 1, "host": new.host, "port": new.port}])

    await eventually(lambda: _answers(loopback, 9091, "new-pod"), what="traffic to the rescheduled pod")
    assert await _stat(envoy, "listener_manager.listener_modified") == listener_modified
    assert await _stat(envoy, "cluster_manager.cluster_modified") == cluster_modified


async def test_restarting_server_changes_nothing_in_envoy(stack: Stack, xds_processes, api):
    await stack.start([1], _cluster(stack.loopback, stack.brokers_file), api=api)
    envoy = stack.envoy
    await eventually(lambda: _answers(stack.loopback, 9091, "broker-1"), what="traffic before the restart")
    before = await envoy.stats()

    assert await stack.server.terminate() < 5
    await eventually(lambda: _connected(envoy, 0), what="Envoy noticing the control plane left")
    await xds_processes(stack.config, name="second")
    await eventually(lambda: _connected(envoy, 1), what="Envoy reconnecting to the restarted control plane")
    await asyncio.sleep(1.0)  # give any (wrong) resend time to be applied before counting

    after = await envoy.stats()
    for counter in _CHURN_COUNTERS:
        assert after.get(counter, 0) == before.get(counter, 0), counter
    await _answers(stack.loopback, 9091, "broker-1")


async def _connected(envoy: Envoy, expected: int) -> bool:
    return await _stat(envoy, "control_plane.connected_state") == expected


async def test_sigterm_ends_streams_and_exits_zero_within_five_seconds(stack: Stack):
    await stack.start([1], _cluster(stack.loopback, stack.brokers_file))
    server, envoy = stack.server, stack.envoy
    await eventually(lambda: _connected(envoy, 1), what="an ADS stream")
    await eventually(lambda: _answers(stack.loopback, 9091, "broker-1"), what="traffic before SIGTERM")

    took = await server.terminate()

    assert server.returncode == 0
    assert took < 5, f"shutdown took {took:.2f}s"
    await _answers(stack.loopback, 9091, "broker-1")  # the sidecar keeps its last config meanwhile


async def test_rejected_config_keeps_the_last_good_one_and_is_not_resent(
    tmp_path, stack: Stack, xds_processes
):
    await stack.start([1], _cluster(stack.loopback, stack.brokers_file))
    config, envoy = stack.config, stack.envoy
    await eventually(lambda: _answers(stack.loopback, 9091, "broker-1"), what="traffic with the good config")
    good_clusters = await _cds_version(envoy)
    await stack.server.terminate()

    # The operator restarts kafka-xds with a CA path that does not exist on the sidecar: Envoy
    # cannot load it and rejects the SDS update of the trusted CA (the clusters only name it, so
    # they do not change). Envoy keeps using the TLS context it built from the last good files.
    broken = dict(config, upstream_tls=dict(config["upstream_tls"], ca_file=str(tmp_path / "missing-ca.pem")))
    second = await xds_processes(broken, name="broken")
    rejected = "sds.kafka-a/trusted-ca.update_rejected"
    await eventually(lambda: _stat_at_least(envoy, rejected, 1), what="an SDS NACK")
    await asyncio.sleep(2.0)  # a resend loop would show up as more rejections

    assert await _stat(envoy, rejected) == 1
    assert await _cds_version(envoy) == good_clusters
    await _answers(stack.loopback, 9091, "broker-1")  # still on the last good TLS material
    log = second.log_text()
    assert log.count("sidecar rejected config (NACK)") == 1
    assert "missing-ca.pem" in log


async def _stat_at_least(envoy: Envoy, name: str, value: int) -> bool:
    return await _stat(envoy, name) >= value


async def _secret_versions(envoy: Envoy) -> dict[str, str]:
    dump = await envoy.config_dump(resource="dynamic_active_secrets")
    return {entry["name"]: entry["version_info"] for entry in dump["configs"]}


async def _cds_version(envoy: Envoy) -> str:
    dump = await envoy.config_dump(resource="dynamic_active_clusters")
    versions: set[str] = {entry["version_info"] for entry in dump["configs"]}
    assert len(versions) == 1, versions
    return versions.pop()


async def test_broker_registered_by_dns_name_is_reached_at_its_address_with_the_name_as_sni(
    tmp_path, addresses: LoopbackAddresses, certs: Certs, upstreams, envoys, xds_processes
):
    # The one broker on 127.0.0.1: that is where the name `localhost` leads. Its port is the
    # kernel's pick (bound, not guessed), so no other run can be on it.
    broker = await upstreams("broker-1", "127.0.0.1")  # certificate for 127.0.0.1; SNI is seen anyway
    brokers_file = write_static_brokers(
        tmp_path / "brokers.yaml", [{"id": 1, "host": "localhost", "port": broker.port}]
    )
    loopback = addresses.take()
    config = base_config(certs, [_cluster(loopback, brokers_file)], addresses.take())
    await xds_processes(config)
    envoy = await envoys("app-1", config)

    await eventually(
        lambda: _answers(loopback, 9091, "broker-1"), what="traffic to a broker registered as localhost"
    )

    assert (await envoy.cluster_endpoints())["kafka-a/broker-1"] == [f"127.0.0.1:{broker.port}"]
    assert broker.server_names[-1] == "localhost"


async def test_added_broker_gets_a_listener_and_a_removed_one_leaves_after_its_grace(
    tmp_path, addresses: LoopbackAddresses, certs: Certs, upstreams, envoys, xds_processes, api
):
    loopback = addresses.take()
    one = await upstreams("broker-1", addresses.take())
    two = await upstreams("broker-2", addresses.take())
    brokers_file = write_static_brokers(
        tmp_path / "brokers.yaml", [{"id": 1, "host": one.host, "port": one.port}]
    )
    config = base_config(certs, [_cluster(loopback, brokers_file)], addresses.take())  # removal grace: 2 s
    await xds_processes(config)
    envoy = await envoys("app-1", config, api=api)
    await eventually(lambda: _answers(loopback, 9091, "broker-1"), what="broker 1")

    both = [
        {"id": 1, "host": one.host, "port": one.port},
        {"id": 2, "host": two.host, "port": two.port},
    ]
    write_static_brokers(brokers_file, both)
    await eventually(lambda: _answers(loopback, 9092, "broker-2"), what="the new broker's listener")
    assert await _stat(envoy, "cluster_manager.warming_clusters") == 0

    write_static_brokers(brokers_file, both[:1])

    async def endpoint_gone() -> bool:
        return not (await envoy.cluster_endpoints()).get("kafka-a/broker-2", ["missing"])

    await eventually(endpoint_gone, timeout=10, what="broker 2's endpoint removed at once")
    assert "kafka-a/broker-2" in await envoy.listener_addresses()  # still there during the grace

    async def listener_gone() -> bool:
        return "kafka-a/broker-2" not in await envoy.listener_addresses()

    await eventually(listener_gone, timeout=15, what="broker 2's listener removed after the grace")

    async def cluster_gone() -> bool:
        return "kafka-a/broker-2" not in await envoy.cluster_endpoints()

    await eventually(cluster_gone, timeout=10, what="broker 2's cluster removed after its listener")
    await _answers(loopback, 9091, "broker-1")


async def test_a_sidecar_fails_over_to_another_replica_without_any_change(
    tmp_path, addresses: LoopbackAddresses, certs: Certs, upstreams, envoys, xds_processes, api
):
    loopback = addresses.take()
    broker = await upstreams("broker-1", addresses.take())
    brokers_file = write_static_brokers(
        tmp_path / "brokers.yaml", [{"id": 1, "host": broker.host, "port": broker.port}]
    )
    host = addresses.take()
    replicas = [base_config(certs, [_cluster(loopback, brokers_file)], host) for _ in range(2)]
    servers = [
        await xds_processes(replica, name=f"replica-{index}") for index, replica in enumerate(replicas)
    ]
    envoy = await envoys("app-1", replicas[0], api=api, replicas=replicas)
    await eventually(lambda: _answers(loopback, 9091, "broker-1"), what="traffic through the first replica")
    (serving,) = [server for server in servers if await _serves(server, "app-1")]
    other = servers[1 - servers.index(serving)]
    before = await envoy.stats()

    assert await serving.terminate() < 5
    await eventually(lambda: _serves(other, "app-1"), timeout=30, what="the sidecar on the other replica")
    await eventually(lambda: _connected(envoy, 1), what="Envoy connected again")
    await asyncio.sleep(1.0)  # give any (wrong) resend time to be applied before counting

    after = await envoy.stats()
    for counter in _CHURN_COUNTERS:
        assert after.get(counter, 0) == before.get(counter, 0), counter
    await _answers(loopback, 9091, "broker-1")


_CHURN_COUNTERS = (
    "listener_manager.listener_modified",
    "listener_manager.listener_added",
    "listener_manager.listener_removed",
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_added",
    "cluster_manager.cluster_removed",
)


async def _serves(server: XdsProcess, node_id: str) -> bool:
    status, body = await server.get(f"/debug/streams?node={node_id}")
    return status == 200 and body["streams"][0]["sync"] == "in_sync"
