"""End to end with ZooKeeper: brokers register as Kafka does, kafka-xds (its own process) follows
them, and a real Envoy carries bytes over mTLS to whichever broker the znodes name."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from tests.conftest import base_config
from tests.support.addresses import LoopbackAddresses
from tests.support.envoy import Envoy
from tests.support.wait import eventually, free_port
from tests.support.xds_process import XdsProcess
from tests.support.zookeeper import KafkaBroker, ZooKeeperServer
from xds.demo.brokers import Certs, TlsUpstream, exchange
from xds.demo.zookeeper import cluster_id_znode, write_znode

pytestmark = [pytest.mark.envoy, pytest.mark.zookeeper]

_CHURN = (
    "listener_manager.listener_added",
    "listener_manager.listener_modified",
    "listener_manager.listener_removed",
    "cluster_manager.cluster_added",
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_removed",
)


class ZkStack:
    """kafka-xds on ZooKeeper, one Envoy sidecar, and mTLS stand-in brokers that register in ZooKeeper,
    each Kafka cluster on a loopback IP of its own (`loopbacks`), each broker on an address of its own."""

    def __init__(
        self,
        certs: Certs,
        upstreams: Any,
        envoys: Any,
        xds_processes: Any,
        kafka_brokers: Any,
        addresses: LoopbackAddresses,
    ) -> None:
        self.certs = certs
        self._upstreams, self._envoys, self._xds_processes = upstreams, envoys, xds_processes
        self._kafka_brokers = kafka_brokers
        self.addresses = addresses
        self.server: XdsProcess
        self.envoy: Envoy

    def on(self, hosts: str, chroots: dict[str, str]) -> ZkStack:
        """Which ZooKeeper and chroots (one per Kafka cluster) the brokers and kafka-xds use."""
        self.hosts, self.chroots = hosts, chroots
        self.loopbacks = {cluster: self.addresses.take() for cluster in chroots}
        return self

    async def start(self, session_timeout: float = 4, **overrides: Any) -> ZkStack:
        """kafka-xds following every chroot, and one sidecar connected to it."""
        clusters = [
            {
                "name": name,
                "loopback_ip": self.loopbacks[name],
                "port_base": 9090,
                "upstream_listener": "MESH",
                "client_listener": "CLIENT",
                "removal_grace_seconds": 2,
                "zookeeper": {
                    "hosts": self.hosts,
                    "chroot": chroot,
                    "session_timeout_seconds": session_timeout,
                },
            }
            for name, chroot in self.chroots.items()
        ]
        self.config = base_config(self.certs, clusters, self.addresses.take(), **overrides)
        self.server = await self._xds_processes(self.config)
        self.envoy = await self._envoys("app-1", self.config)
        return self

    async def broker(
        self, cluster: str, broker_id: int, name: str | None = None
    ) -> tuple[TlsUpstream, KafkaBroker]:
        """An mTLS upstream on an address of its own, registered as broker `broker_id` of `cluster`."""
        upstream = await self._upstreams(name or f"{cluster}-{broker_id}", self.addresses.take())
        registration = await self._kafka_brokers(
            self.hosts, self.chroots[cluster], broker_id, self.endpoints(cluster, broker_id, upstream)
        )
        return upstream, registration

    def endpoints(self, cluster: str, broker_id: int, upstream: TlsUpstream) -> dict[str, str]:
        return {
            "MESH": f"{upstream.host}:{upstream.port}",
            "CLIENT": f"{self.loopbacks[cluster]}:{9090 + broker_id}",
        }

    async def answers(self, cluster: str, port: int, expected_prefix: str) -> str:
        """Send a line through the sidecar's listener `port` of `cluster`; the broker's answer."""
        answer = await exchange(self.loopbacks[cluster], port, "ping")
        assert answer.startswith(expected_prefix), answer
        return answer

    async def topology(self, cluster: str) -> dict[str, Any]:
        status, body = await self.server.get("/debug/topology")
        assert status == 200
        found: dict[str, Any] = body["clusters"][cluster]
        return found

    async def churn(self) -> dict[str, int]:
        stats = await self.envoy.stats()
        return {name: stats.get(name, 0) for name in _CHURN}


@pytest.fixture
def zk_stack(certs, upstreams, envoys, xds_processes, kafka_brokers, addresses) -> ZkStack:
    return ZkStack(certs, upstreams, envoys, xds_processes, kafka_brokers, addresses)


async def test_two_clusters_under_two_chroots_and_a_new_broker_carries_bytes_over_mtls(
    zookeeper, chroot, zk_stack
):
    zk_stack.on(zookeeper.hosts, {"kafka-a": f"{chroot}-a", "kafka-b": f"{chroot}-b"})
    await asyncio.to_thread(
        write_znode, zookeeper.hosts, f"{chroot}-a/cluster/id", cluster_id_znode("dGhlLWEtY2x1c3Rlcg")
    )
    await zk_stack.broker("kafka-a", 1)
    await zk_stack.broker("kafka-b", 1)
    await zk_stack.start()
    await eventually(lambda: zk_stack.answers("kafka-a", 9091, "kafka-a-1"), what="kafka-a broker 1")
    await eventually(lambda: zk_stack.answers("kafka-b", 9091, "kafka-b-1"), what="kafka-b broker 1")

    await zk_stack.broker("kafka-a", 2)

    answer = await eventually(
        lambda: zk_stack.answers("kafka-a", 9092, "kafka-a-2"), what="the new broker's listener"
    )
    assert "commonName=sidecar.kafka-xds.test" in answer  # the broker verified the sidecar's certificate
    a, b = zk_stack.loopbacks["kafka-a"], zk_stack.loopbacks["kafka-b"]
    assert await zk_stack.envoy.listener_addresses() == {
        "kafka-a/broker-1": f"{a}:9091",
        "kafka-a/broker-2": f"{a}:9092",
        "kafka-b/broker-1": f"{b}:9091",
    }
    cluster = await zk_stack.topology("kafka-a")
    assert cluster["source"]["kind"] == "zookeeper"
    assert cluster["source"]["state"] == "synced"
    assert cluster["source"]["cluster_id"] == "dGhlLWEtY2x1c3Rlcg"
    assert cluster["plan_mismatches"] == []
    _, page = await zk_stack.server.get("/")
    assert "dGhlLWEtY2x1c3Rlcg" in page  # the status page names each Kafka cluster's id
    assert "Traceback" not in zk_stack.server.log_text()


async def test_reregistered_broker_is_reached_at_its_new_ip_without_listener_or_cluster_changes(
    zookeeper, chroot, zk_stack, upstreams, addresses
):
    zk_stack.on(zookeeper.hosts, {"kafka-a": chroot})
    _, registration = await zk_stack.broker("kafka-a", 1, name="old-pod")
    await zk_stack.start()
    await eventually(lambda: zk_stack.answers("kafka-a", 9091, "old-pod"), what="traffic to the old pod")
    before = await zk_stack.churn()

    new_pod = await upstreams("new-pod", addresses.take())
    await registration.restart(zk_stack.endpoints("kafka-a", 1, new_pod))  # rescheduled: new session, new IP

    await eventually(
        lambda: zk_stack.answers("kafka-a", 9091, "new-pod"), what="traffic to the rescheduled pod"
    )
    assert (await zk_stack.envoy.cluster_endpoints())["kafka-a/broker-1"] == [
        f"{new_pod.host}:{new_pod.port}"
    ]
    after = await zk_stack.churn()
    assert after["listener_manager.listener_modified"] == before["listener_manager.listener_modified"]
    assert after["cluster_manager.cluster_modified"] == before["cluster_manager.cluster_modified"]


async def test_removed_broker_loses_its_endpoint_at_once_and_its_listener_after_the_grace(
    zookeeper, chroot, zk_stack
):
    zk_stack.on(zookeeper.hosts, {"kafka-a": chroot})
    await zk_stack.broker("kafka-a", 1)
    _, two = await zk_stack.broker("kafka-a", 2)
    await zk_stack.start()
    await eventually(lambda: zk_stack.answers("kafka-a", 9092, "kafka-a-2"), what="broker 2")

    await two.stop()  # the broker shuts down: ZooKeeper deletes its registration with its session

    async def endpoint_gone() -> bool:
        return not (await zk_stack.envoy.cluster_endpoints()).get("kafka-a/broker-2", ["missing"])

    await eventually(endpoint_gone, timeout=10, what="broker 2's endpoint removed at once")
    assert "kafka-a/broker-2" in await zk_stack.envoy.listener_addresses()  # kept during the grace

    async def listener_gone() -> bool:
        return "kafka-a/broker-2" not in await zk_stack.envoy.listener_addresses()

    await eventually(listener_gone, timeout=15, what="broker 2's listener removed after the grace")
    await zk_stack.answers("kafka-a", 9091, "kafka-a-1")


async def test_malformed_registrations_change_nothing_else(zookeeper, chroot, zk_stack, kafka_brokers):
    zk_stack.on(zookeeper.hosts, {"kafka-a": chroot})
    await zk_stack.broker("kafka-a", 1)
    await zk_stack.start()
    await eventually(lambda: zk_stack.answers("kafka-a", 9091, "kafka-a-1"), what="broker 1")
    before = await zk_stack.churn()
    endpoints_before = await zk_stack.envoy.cluster_endpoints()

    await kafka_brokers(zookeeper.hosts, chroot, 2, data=b"{not json")
    pod = zk_stack.addresses.take()  # where the bad registrations say they run
    await kafka_brokers(
        zookeeper.hosts, chroot, 3, {"CLIENT": f"{zk_stack.loopbacks['kafka-a']}:9093"}
    )  # no MESH
    await kafka_brokers(zookeeper.hosts, chroot, "x", {"MESH": f"{pod}:9094"})  # not a broker id
    await kafka_brokers(zookeeper.hosts, chroot, 70000, {"MESH": f"{pod}:9094"})  # no port in the plan

    async def four_skips() -> list[dict[str, Any]]:
        skipped: list[dict[str, Any]] = (await zk_stack.topology("kafka-a"))["skipped"]
        return skipped if len(skipped) == 4 else []

    skipped = await eventually(four_skips, what="the bad registrations reported")
    wheres = {skip["where"] for skip in skipped}
    assert {f"{chroot}/brokers/ids/2", f"{chroot}/brokers/ids/3", f"{chroot}/brokers/ids/x"} <= wheres
    assert any("70000" in skip["reason"] for skip in skipped)
    log = zk_stack.server.log_text()
    assert log.count("broker registration skipped") == 3
    await asyncio.sleep(0.5)  # a (wrong) push would land within the debounce and Envoy's apply
    assert await zk_stack.churn() == before
    assert await zk_stack.envoy.cluster_endpoints() == endpoints_before
    await zk_stack.answers("kafka-a", 9091, "kafka-a-1")


async def test_zookeeper_outage_keeps_envoy_serving_and_reports_stale_until_it_returns(
    zookeeper_servers, chroot, zk_stack
):
    server: ZooKeeperServer = await zookeeper_servers()
    zk_stack.on(server.hosts, {"kafka-a": chroot})
    await zk_stack.broker("kafka-a", 1)
    await zk_stack.start()
    await eventually(lambda: zk_stack.answers("kafka-a", 9091, "kafka-a-1"), what="broker 1")
    before = await zk_stack.churn()

    await asyncio.to_thread(server.stop)

    async def stale() -> dict[str, Any]:
        source: dict[str, Any] = (await zk_stack.topology("kafka-a"))["source"]
        assert source["state"] == "stale", source
        return source

    source = await eventually(stale, what="the source reported stale")
    assert source["stale_since"] is not None
    assert [broker["id"] for broker in (await zk_stack.topology("kafka-a"))["brokers"]] == [1]
    assert await zk_stack.server.ready()  # first sync done: /readyz stays 200
    await zk_stack.answers("kafka-a", 9091, "kafka-a-1")  # Envoy keeps serving the last config
    assert await zk_stack.churn() == before

    await asyncio.to_thread(server.start)

    async def synced() -> bool:
        return bool((await zk_stack.topology("kafka-a"))["source"]["state"] == "synced")

    await eventually(synced, what="the source synced again")
    await zk_stack.broker("kafka-a", 2)
    await eventually(
        lambda: zk_stack.answers("kafka-a", 9092, "kafka-a-2"), what="a broker registered after recovery"
    )
    await zk_stack.answers("kafka-a", 9091, "kafka-a-1")


async def test_expired_session_is_replaced_and_changes_made_meanwhile_are_reconciled(
    zookeeper, chroot, zk_stack
):
    zk_stack.on(zookeeper.hosts, {"kafka-a": chroot})
    _, one = await zk_stack.broker("kafka-a", 1)
    _, two = await zk_stack.broker("kafka-a", 2)
    await zk_stack.start(session_timeout=2)
    await eventually(lambda: zk_stack.answers("kafka-a", 9092, "kafka-a-2"), what="broker 2")
    ours = {one.session_id, two.session_id}
    (control_plane,) = await eventually(
        lambda: _sessions_except(zookeeper, ours), what="kafka-xds's ZooKeeper session"
    )

    # Freeze kafka-xds (a long GC pause, a stalled VM) until ZooKeeper expires its session, then
    # change the registrations: no watch is left to report these changes; only a re-read can.
    zk_stack.server.send_signal(signal.SIGSTOP)
    try:
        await eventually(
            lambda: _gone(zookeeper, control_plane), timeout=20, what="the frozen session to expire"
        )
        await two.stop()
        await zk_stack.broker("kafka-a", 3)
    finally:
        zk_stack.server.send_signal(signal.SIGCONT)

    await eventually(
        lambda: zk_stack.answers("kafka-a", 9093, "kafka-a-3"), what="broker 3, registered meanwhile"
    )

    async def endpoint_gone() -> bool:
        return not (await zk_stack.envoy.cluster_endpoints()).get("kafka-a/broker-2", ["missing"])

    await eventually(endpoint_gone, what="broker 2, gone meanwhile, without an endpoint")
    assert control_plane not in zookeeper.session_ids()
    await zk_stack.broker("kafka-a", 4)  # the new session watches again
    await eventually(
        lambda: zk_stack.answers("kafka-a", 9094, "kafka-a-4"), what="a broker after the new session"
    )


async def _sessions_except(server: ZooKeeperServer, known: set[int | None]) -> tuple[int, ...]:
    others = tuple(await asyncio.to_thread(server.session_ids) - known)
    assert len(others) == 1, others  # only kafka-xds's, once earlier tests' clients have gone
    return others


async def _gone(server: ZooKeeperServer, session_id: int) -> bool:
    return session_id not in await asyncio.to_thread(server.session_ids)


async def test_unreachable_zookeeper_holds_readyz_until_the_startup_timeout_serves_the_cluster_empty(
    addresses, xds_processes
):
    nowhere = addresses.take()
    cluster = {
        "name": "kafka-a",
        "loopback_ip": addresses.take(),
        "port_base": 9090,
        "upstream_listener": "MESH",
        "zookeeper": {"hosts": f"{nowhere}:{free_port(nowhere)}", "startup_timeout_seconds": 3},
    }
    server = await xds_processes(base_config(None, [cluster], addresses.take()), wait_ready=False)

    async def waiting() -> str:
        status, body = await server.get("/readyz")
        assert status == 503, body
        reason: str = body["waiting"]["kafka-a"]
        assert f"no ZooKeeper session with {nowhere}:" in reason, reason
        return reason

    await eventually(waiting, what="/readyz naming the cluster that waits for ZooKeeper")
    await eventually(server.ready, what="ready once the startup timeout gave up on ZooKeeper")
    source = (await server.get("/debug/topology"))[1]["clusters"]["kafka-a"]["source"]
    assert source["state"] == "unavailable"
    assert "startup_timeout_seconds=3" in source["error"]
    assert "serving this cluster with no brokers" in server.log_text()
