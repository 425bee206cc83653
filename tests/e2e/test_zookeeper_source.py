"""The ZooKeeper source against a real ZooKeeper: follows registrations, survives ZooKeeper trouble."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

from tests.support.wait import free_port
from tests.support.zookeeper import (
    ZooKeeperServer,
    broker_znode,
    cluster_id_znode,
    expire_session,
    write_znode,
)
from xds.config.model import KafkaCluster, parse_config
from xds.pipeline.sources.zk_session import Ensemble, SessionRegistry
from xds.pipeline.sources.zookeeper import ZookeeperSource
from xds.pipeline.topology import SourceState, Topology

pytestmark = pytest.mark.zookeeper


def _cluster(hosts: str, chroot: str, name: str = "kafka-a", **zookeeper: Any) -> KafkaCluster:
    settings = {"hosts": hosts, "chroot": chroot, "session_timeout_seconds": 4, **zookeeper}
    config = parse_config(
        {
            "xds": {"tls": None},
            "upstream_tls": None,
            "kafka_clusters": [
                {
                    "name": name,
                    "loopback_ip": "127.0.0.10",
                    "port_base": 9090,
                    "upstream_listener": "MESH",
                    "zookeeper": settings,
                }
            ],
        }
    )
    return config.kafka_clusters[0]


def _mesh(topology: Topology) -> dict[int, str]:
    return {broker.broker_id: str(broker.endpoint("MESH")) for broker in topology.brokers}


class Published:
    """Every topology a source published, and a way to wait for the one a test expects."""

    def __init__(self) -> None:
        self.topologies: list[Topology] = []
        self._changed = asyncio.Event()

    def __call__(self, topology: Topology) -> None:
        asyncio.get_running_loop()  # raises off the loop thread: kazoo threads must not publish
        self.topologies.append(topology)
        self._changed.set()

    @property
    def latest(self) -> Topology:
        return self.topologies[-1]

    async def until(
        self, predicate: Callable[[Topology], bool], what: str = "topology", timeout: float = 30.0
    ) -> Topology:
        deadline = time.monotonic() + timeout
        while not (self.topologies and predicate(self.latest)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; last: {self.topologies[-1:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.latest

    def saw(self, state: SourceState) -> bool:
        return any(topology.state is state for topology in self.topologies)

    def emptied_after_sync(self) -> bool:
        """Did the source ever report no brokers after it had seen some? (It must not, on trouble.)"""
        seen = False
        for topology in self.topologies:
            seen = seen or bool(topology.brokers)
            if seen and not topology.brokers and topology.state is not SourceState.SYNCED:
                return True
        return False


class Following:
    """Sources under test, with their own session registry (so tests can see and expire sessions)."""

    def __init__(self) -> None:
        self.clients: list[KazooClient] = []
        self.registry = SessionRegistry(self._new_client)
        self.tasks: list[asyncio.Task[None]] = []

    def _new_client(self, ensemble: Ensemble) -> KazooClient:
        client = ensemble.new_client()
        self.clients.append(client)
        return client

    def __call__(self, cluster: KafkaCluster) -> tuple[ZookeeperSource, Published]:
        source, published = ZookeeperSource(cluster, self.registry), Published()
        self.tasks.append(asyncio.create_task(source.run(published)))
        return source, published


@pytest.fixture
async def follow() -> AsyncIterator[Following]:
    following = Following()
    yield following
    for task in following.tasks:
        task.cancel()
    for task in following.tasks:
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(following.registry) == 0  # the last source closed the shared session


MESH = {"MESH": "10.0.0.1:9094", "CLIENT": "127.0.0.10:9091"}


async def test_registered_brokers_are_read_with_every_listener_rack_and_time(
    zookeeper, chroot, kafka_brokers, follow
):
    write_znode(zookeeper.hosts, f"{chroot}/cluster/id", cluster_id_znode("cluster-A"))
    await kafka_brokers(zookeeper.hosts, chroot, 1, MESH, rack="az1", timestamp_ms=1700000000000)
    await kafka_brokers(zookeeper.hosts, chroot, 2, {"MESH": "[fd00::2]:9094"}, version=4)
    _, published = follow(_cluster(zookeeper.hosts, chroot))

    topology = await published.until(lambda t: t.state is SourceState.SYNCED, "first sync")

    assert _mesh(topology) == {1: "10.0.0.1:9094", 2: "[fd00::2]:9094"}
    first = topology.broker(1)
    assert first is not None
    assert str(first.endpoint("CLIENT")) == "127.0.0.10:9091"
    assert first.rack == "az1"
    assert first.registered_at_ms == 1700000000000
    assert topology.cluster_id == "cluster-A"
    assert topology.source_kind == "zookeeper"
    assert topology.error is None and topology.skipped == ()
    assert [t.state for t in published.topologies] == [SourceState.SYNCED]  # one complete first read


async def test_brokers_joining_leaving_and_moving_are_followed(zookeeper, chroot, kafka_brokers, follow):
    one = await kafka_brokers(zookeeper.hosts, chroot, 1, MESH)
    _, published = follow(_cluster(zookeeper.hosts, chroot))
    await published.until(lambda t: _mesh(t) == {1: "10.0.0.1:9094"}, "broker 1")

    two = await kafka_brokers(zookeeper.hosts, chroot, 2, {"MESH": "10.0.0.2:9094"})
    await published.until(lambda t: _mesh(t) == {1: "10.0.0.1:9094", 2: "10.0.0.2:9094"}, "broker 2 joins")

    await one.restart({"MESH": "10.0.0.7:9094"})  # rescheduled: a new session, a new IP
    await published.until(lambda t: _mesh(t) == {1: "10.0.0.7:9094", 2: "10.0.0.2:9094"}, "broker 1 moves")

    await two.update({"MESH": "10.0.0.2:9095"}, rack="az2")  # rewritten in place
    moved = await published.until(lambda t: _mesh(t).get(2) == "10.0.0.2:9095", "broker 2 rewritten")
    assert [broker.rack for broker in moved.brokers] == [None, "az2"]

    await two.stop()
    await published.until(lambda t: _mesh(t) == {1: "10.0.0.7:9094"}, "broker 2 leaves")
    assert all(t.state is SourceState.SYNCED for t in published.topologies)


async def test_malformed_registrations_are_skipped_and_nothing_else_changes(
    zookeeper, chroot, kafka_brokers, follow, caplog
):
    await kafka_brokers(zookeeper.hosts, chroot, 1, MESH)
    _, published = follow(_cluster(zookeeper.hosts, chroot))
    await published.until(lambda t: _mesh(t) == {1: "10.0.0.1:9094"}, "broker 1")

    broken = await kafka_brokers(zookeeper.hosts, chroot, 2, data=b"{not json")
    await kafka_brokers(zookeeper.hosts, chroot, 3, {"CLIENT": "127.0.0.10:9093"})  # no MESH listener
    await kafka_brokers(zookeeper.hosts, chroot, "broker-4", MESH)  # not a broker id
    topology = await published.until(lambda t: len(t.skipped) == 3, "three skips")

    assert _mesh(topology) == {1: "10.0.0.1:9094"}
    assert topology.state is SourceState.SYNCED
    reasons = {skip.where: (skip.broker_id, skip.reason) for skip in topology.skipped}
    assert reasons[f"{chroot}/brokers/ids/2"][0] == 2
    assert "not JSON" in reasons[f"{chroot}/brokers/ids/2"][1]
    assert reasons[f"{chroot}/brokers/ids/3"] == (3, "no 'MESH' listener registered (has: CLIENT)")
    assert "not a broker id" in reasons[f"{chroot}/brokers/ids/broker-4"][1]
    logged = [r for r in caplog.records if r.getMessage().startswith("broker registration skipped")]
    assert {r.__dict__["fields"]["path"] for r in logged} == set(reasons)
    assert all(r.__dict__["fields"]["cluster"] == "kafka-a" for r in logged)

    await broken.update({"MESH": "10.0.0.2:9094"})  # the broker fixes its registration: the watch is alive
    fixed = await published.until(lambda t: 2 in _mesh(t), "broker 2 once fixed")
    assert _mesh(fixed) == {1: "10.0.0.1:9094", 2: "10.0.0.2:9094"}
    assert len(fixed.skipped) == 2


async def test_empty_chroot_is_synced_with_no_brokers_and_followed_when_they_arrive(
    zookeeper, chroot, kafka_brokers, follow
):
    _, published = follow(_cluster(zookeeper.hosts, chroot))
    empty = await published.until(lambda t: t.state is SourceState.SYNCED, "first sync")
    assert empty.brokers == ()
    assert "does not exist" in (empty.error or "")

    await kafka_brokers(zookeeper.hosts, chroot, 5, MESH)  # creates /brokers/ids: the exists watch fires
    arrived = await published.until(lambda t: 5 in _mesh(t), "the first broker")
    assert arrived.error is None


async def test_clusters_on_one_ensemble_share_one_session(zookeeper, chroot, kafka_brokers, follow):
    await kafka_brokers(zookeeper.hosts, f"{chroot}-a", 1, MESH)
    await kafka_brokers(zookeeper.hosts, f"{chroot}-b", 1, {"MESH": "10.0.1.1:9094"})
    source_a, published_a = follow(_cluster(zookeeper.hosts, f"{chroot}-a"))
    source_b, published_b = follow(_cluster(zookeeper.hosts, f"{chroot}-b", name="kafka-b"))

    await published_a.until(lambda t: _mesh(t) == {1: "10.0.0.1:9094"}, "cluster a")
    await published_b.until(lambda t: _mesh(t) == {1: "10.0.1.1:9094"}, "cluster b")

    assert len(follow.clients) == 1
    assert source_a.session_id is not None
    assert source_a.session_id == source_b.session_id


async def test_unreachable_zookeeper_keeps_the_cluster_syncing_and_says_why(addresses, follow):
    nowhere = addresses.take()
    _, published = follow(_cluster(f"{nowhere}:{free_port(nowhere)}", "/kafka-a"))
    waiting = await published.until(lambda t: t.error is not None, "a reason")
    assert waiting.state is SourceState.SYNCING
    assert f"no ZooKeeper session with {nowhere}:" in (waiting.error or "")
    await asyncio.sleep(1.0)
    assert published.latest.state is SourceState.SYNCING  # without a startup timeout it waits for good


async def test_startup_timeout_serves_the_cluster_empty_until_zookeeper_answers(
    tmp_path, addresses, chroot, kafka_brokers, follow
):
    server = ZooKeeperServer(tmp_path / "zk", host=addresses.take())
    _, published = follow(_cluster(server.hosts, chroot, startup_timeout_seconds=1))
    unavailable = await published.until(lambda t: t.state is SourceState.UNAVAILABLE, "giving up")
    assert unavailable.brokers == ()
    assert "startup_timeout_seconds=1" in (unavailable.error or "")
    try:
        await asyncio.to_thread(server.start)
        await kafka_brokers(server.hosts, chroot, 1, MESH)
        await published.until(lambda t: _mesh(t) == {1: "10.0.0.1:9094"}, "brokers once ZooKeeper answers")
    finally:
        await asyncio.to_thread(server.kill)


async def test_lost_connection_keeps_the_last_brokers_stale_and_reconciles(
    zookeeper_servers, chroot, kafka_brokers, follow
):
    server = await zookeeper_servers()
    await kafka_brokers(server.hosts, chroot, 1, MESH)
    two = await kafka_brokers(server.hosts, chroot, 2, {"MESH": "10.0.0.2:9094"})
    _, published = follow(_cluster(server.hosts, chroot))
    await published.until(lambda t: len(t.brokers) == 2, "both brokers")

    await asyncio.to_thread(server.stop)
    stale = await published.until(lambda t: t.state is SourceState.STALE, "stale")
    assert _mesh(stale) == {1: "10.0.0.1:9094", 2: "10.0.0.2:9094"}
    assert stale.stale_since is not None
    assert "lost" in (stale.error or "")

    await asyncio.to_thread(server.start)
    await published.until(lambda t: t.state is SourceState.SYNCED, "synced again")
    await kafka_brokers(server.hosts, chroot, 3, {"MESH": "10.0.0.3:9094"})
    await two.stop()
    await published.until(lambda t: set(_mesh(t)) == {1, 3}, "changes after the outage")
    assert not published.emptied_after_sync()


async def test_expired_session_is_replaced_rewatched_and_reconciled(zookeeper, chroot, kafka_brokers, follow):
    await kafka_brokers(zookeeper.hosts, chroot, 1, MESH)
    two = await kafka_brokers(zookeeper.hosts, chroot, 2, {"MESH": "10.0.0.2:9094"})
    source, published = follow(_cluster(zookeeper.hosts, chroot))
    await published.until(lambda t: len(t.brokers) == 2, "both brokers")
    old_session, password = follow.clients[0].client_id

    # Changes land while the session is dead: only a full re-read can notice them.
    await asyncio.to_thread(expire_session, zookeeper.hosts, old_session, password)
    await two.stop()
    await kafka_brokers(zookeeper.hosts, chroot, 3, {"MESH": "10.0.0.3:9094"})

    await published.until(lambda t: t.state is SourceState.SYNCED and set(_mesh(t)) == {1, 3}, "reconciled")
    assert source.session_id not in (None, old_session)
    assert SourceState.STALE in [t.state for t in published.topologies]
    await kafka_brokers(zookeeper.hosts, chroot, 4, {"MESH": "10.0.0.4:9094"})  # watches set again
    await published.until(lambda t: set(_mesh(t)) == {1, 3, 4}, "a broker after the new session")
    assert not published.emptied_after_sync()


async def test_chroot_showing_another_cluster_id_is_refused_and_last_brokers_kept(
    zookeeper, chroot, kafka_brokers, follow, caplog
):
    write_znode(zookeeper.hosts, f"{chroot}/cluster/id", cluster_id_znode("cluster-A"))
    one = await kafka_brokers(zookeeper.hosts, chroot, 1, MESH)
    _, published = follow(_cluster(zookeeper.hosts, chroot))
    await published.until(lambda t: t.cluster_id == "cluster-A" and len(t.brokers) == 1, "cluster A")

    write_znode(zookeeper.hosts, f"{chroot}/cluster/id", cluster_id_znode("cluster-B"))
    refused = await published.until(lambda t: t.state is SourceState.STALE, "refusal")
    assert "'cluster-B' but was 'cluster-A'" in (refused.error or "")
    assert _mesh(refused) == {1: "10.0.0.1:9094"}
    assert refused.cluster_id == "cluster-A"
    assert any("another Kafka cluster" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")

    await one.restart({"MESH": "10.0.0.9:9094"})  # brokers of "another cluster": not followed
    await asyncio.sleep(0.5)
    assert _mesh(published.latest) == {1: "10.0.0.1:9094"}

    write_znode(zookeeper.hosts, f"{chroot}/cluster/id", cluster_id_znode("cluster-A"))
    back = await published.until(lambda t: t.state is SourceState.SYNCED, "following again")
    assert _mesh(back) == {1: "10.0.0.9:9094"}


async def test_digest_auth_reads_a_protected_chroot(zookeeper, chroot, tmp_path, follow):
    acl = make_digest_acl("kafka-xds", "s3cret", read=True, write=True, create=True, delete=True, admin=True)
    await asyncio.to_thread(_create_protected, zookeeper.hosts, chroot, acl)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("s3cret\n")
    bad.write_text("wrong\n")

    _, published = follow(
        _cluster(zookeeper.hosts, chroot, auth={"username": "kafka-xds", "password_file": str(good)})
    )
    await published.until(lambda t: _mesh(t) == {1: "10.0.0.1:9094"}, "the protected broker")

    cluster = _cluster(
        zookeeper.hosts, chroot, name="kafka-b", auth={"username": "kafka-xds", "password_file": str(bad)}
    )
    _, refused = follow(cluster)
    waiting = await refused.until(lambda t: t.error is not None, "a read error")
    assert waiting.state is SourceState.SYNCING
    assert "NoAuth" in (waiting.error or "")
    assert len(follow.clients) == 2  # other credentials, other session


def _create_protected(hosts: str, chroot: str, acl: Any) -> None:
    client = KazooClient(hosts=hosts, auth_data=[("digest", "kafka-xds:s3cret")])
    client.start(timeout=15)
    try:
        client.create(f"{chroot}/brokers/ids/1", broker_znode(MESH), acl=[acl], makepath=True)
        client.set_acls(f"{chroot}/brokers/ids", [acl])
    finally:
        client.stop()
        client.close()


async def test_losing_the_connected_ensemble_member_moves_to_another(
    zookeeper_ensemble, chroot, kafka_brokers, follow
):
    await kafka_brokers(zookeeper_ensemble.hosts, chroot, 1, MESH)
    source, published = follow(_cluster(zookeeper_ensemble.hosts, chroot))
    await published.until(lambda t: _mesh(t) == {1: "10.0.0.1:9094"}, "broker 1")
    session = source.session_id
    assert session is not None
    member = zookeeper_ensemble.serving(session)
    assert member is not None

    await asyncio.to_thread(member.kill)

    await published.until(
        lambda t: t.state is SourceState.SYNCED and published.saw(SourceState.STALE), "resync"
    )
    assert source.session_id == session  # the same session, through another member
    assert zookeeper_ensemble.serving(session) not in (None, member)
    await kafka_brokers(zookeeper_ensemble.hosts, chroot, 2, {"MESH": "10.0.0.2:9094"})
    await published.until(lambda t: set(_mesh(t)) == {1, 2}, "a broker registered after the failover")
    assert not published.emptied_after_sync()


async def test_tls_to_zookeeper_with_a_client_certificate(
    zookeeper_servers, certs, chroot, kafka_brokers, follow
):
    server = await zookeeper_servers(tls=certs.ca)
    await kafka_brokers(server.hosts, chroot, 1, MESH)  # the brokers use the plain port
    tls = {
        "ca_file": str(certs.ca_file),
        "cert_file": str(certs.client_cert),
        "key_file": str(certs.client_key),
    }

    _, published = follow(_cluster(server.secure_hosts, chroot, tls=tls))
    await published.until(lambda t: _mesh(t) == {1: "10.0.0.1:9094"}, "brokers read over TLS")

    # No client certificate: the server ends every handshake, so there is no session and no sync.
    _, refused = follow(
        _cluster(server.secure_hosts, chroot, name="kafka-b", tls={"ca_file": str(certs.ca_file)})
    )
    waiting = await refused.until(lambda t: t.error is not None, "a reason to wait")
    assert waiting.state is SourceState.SYNCING
    assert len(follow.clients) == 2


async def test_unreadable_credentials_are_reported_and_the_source_fails_for_a_restart(tmp_path, follow):
    missing = tmp_path / "missing-password"
    cluster = _cluster(
        "127.0.0.1:2181", "/kafka-a", auth={"username": "kafka-xds", "password_file": str(missing)}
    )
    source, published = ZookeeperSource(cluster, follow.registry), Published()
    with pytest.raises(RuntimeError, match="missing-password"):
        await source.run(published)
    assert published.latest.state is SourceState.SYNCING
    assert "cannot read ZooKeeper credentials" in (published.latest.error or "")
    assert len(follow.registry) == 0
