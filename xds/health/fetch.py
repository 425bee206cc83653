"""A live cluster's partition state as a `ClusterState`, within a bounded time.

    state = await fetch_cluster_state("kafka-a", settings, timeout=5.0)   # one-shot (a probe, a CLI)

    reader = ClusterStateReader("kafka-a", settings)                      # kept open (a follower)
    try:
        while True:
            fetched = await reader.fetch(timeout=5.0)   # FetchedState, or ClusterUnreachable
            ...
    finally:
        await reader.close()

Each fetch is one Metadata request for every topic and DescribeConfigs of `min.insync.replicas`
for every topic (`xds.kafka.partitions`), asked of one server: the one that answered last, then
the bootstrap servers in their order, until one answers usefully. `settings` are a KRaft source's
(`KraftSettings`: bootstrap servers, TLS, SASL), whatever the cluster's mode: ZooKeeper-mode brokers
answer both requests the same way. The whole fetch ends within `timeout` seconds: each server gets
an equal share of what is left (at least `MIN_ATTEMPT_SECONDS`, at most what is left), so a server
that never answers cannot use up the time of the ones after it.

What the answer cannot say is in `FetchedState.warnings` and in the state the health decisions see:

* in KRaft, a fenced broker is simply absent from Metadata's brokers, so it reads as not registered
  (`BrokerState.fenced` stays False); a ZooKeeper-mode broker that is down is absent too;
* a topic whose `min.insync.replicas` could not be read (an ACL, a topic deleted meanwhile) gets the
  broker default, and the warning says which topics and why; when the broker default could not be
  learned either, such a topic is taken as needing every replica (min ISR = its replication factor),
  which can only make the decisions stricter, and the warning says so;
* a topic Metadata reported an error for (without partitions) is named in a warning.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from xds.config.model import KraftSettings
from xds.health.state import BrokerState, ClusterState, PartitionId, PartitionState
from xds.kafka.client import KafkaMetadataClient, describe_error, parse_bootstrap_server
from xds.kafka.metadata import MetadataError
from xds.kafka.partitions import PartitionSnapshot, Requester, fetch_partitions
from xds.shared.addresses import HostPort

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "ClusterStateReader",
    "ClusterUnreachable",
    "FetchedState",
    "cluster_state",
    "fetch_cluster_state",
]

DEFAULT_TIMEOUT_SECONDS = 5.0
MIN_ATTEMPT_SECONDS = 1.0  # a server's share of the time is never less (unless less is left)
_EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class FetchedState:
    """One server's answer: the state, who answered, the cluster id (None before Metadata v2), what
    the answer could not say (one line each), and how long the fetch took."""

    state: ClusterState
    server: str
    cluster_id: str | None
    warnings: tuple[str, ...]
    elapsed_seconds: float


class ClusterUnreachable(Exception):
    """No server answered usefully within the time. `problems`: (server, what happened) for every
    server asked, and the ones there was no time left for; `timed_out`: the time ran out."""

    def __init__(self, cluster: str, problems: tuple[tuple[str, str], ...], timed_out: bool) -> None:
        self.cluster = cluster
        self.problems = problems
        self.timed_out = timed_out
        super().__init__(self.detail)

    @property
    def detail(self) -> str:
        """`10.0.0.1:9092: connection refused; 10.0.0.2:9092: timed out`."""
        return "; ".join(f"{server}: {problem}" for server, problem in self.problems) or "no server to ask"


def _listed(names: list[str]) -> str:
    more = ", ..." if len(names) > _EXAMPLES else ""
    return ", ".join(names[:_EXAMPLES]) + more


def cluster_state(cluster: str, snapshot: PartitionSnapshot) -> tuple[ClusterState, tuple[str, ...]]:
    """A snapshot as the `ClusterState` the health decisions take, and the warnings it needs (pure)."""
    metadata, configs = snapshot.metadata, snapshot.min_isr
    brokers = [BrokerState(b.node_id, b.rack) for b in metadata.cluster.brokers]
    partitions = [
        PartitionState(PartitionId(p.topic, p.partition), p.leader, p.replicas, p.isr, p.offline_replicas)
        for topic in metadata.topics
        for p in topic.partitions
    ]
    warnings: list[str] = []
    failed = [topic for topic in metadata.topics if topic.error is not None]
    if failed:
        described = [f"{t.name} ({t.error})" for t in failed]
        warnings.append(
            f"Metadata could not describe {len(failed)} topic(s), not counted: {_listed(described)}"
        )
    min_isr = dict(configs.by_topic)
    unread = [topic for topic in configs.unread if any(t.name == topic for t in metadata.topics)]
    why = _listed([f"{topic} ({configs.unread[topic]})" for topic in unread])
    if unread and configs.broker_default is not None:
        warnings.append(
            f"min.insync.replicas of {len(unread)} topic(s) unreadable, broker default "
            f"{configs.broker_default} used: {why}"
        )
    elif unread:
        replication = {
            t.name: max((len(p.replicas) for p in t.partitions), default=1) for t in metadata.topics
        }
        for topic in unread:
            min_isr[topic] = max(replication.get(topic, 1), 1)
        warnings.append(
            f"min.insync.replicas of {len(unread)} topic(s) unreadable and the broker default unknown: "
            f"taken as their replication factor (stricter): {why}"
        )
    state = ClusterState.create(
        cluster,
        brokers,
        partitions,
        min_isr,
        configs.broker_default if configs.broker_default is not None else 1,
        metadata.cluster.controller_id,
    )
    return state, tuple(warnings)


class ClusterStateReader:
    """Fetches one cluster's state again and again over one kept connection (see the module)."""

    def __init__(self, cluster: str, settings: KraftSettings, client: Requester | None = None) -> None:
        self.cluster = cluster
        self._client = client or KafkaMetadataClient(settings, cluster)
        self._bootstrap = [parse_bootstrap_server(server) for server in settings.bootstrap_servers]
        self._last: HostPort | None = None

    def _candidates(self) -> list[HostPort]:
        first = [self._last] if self._last is not None else []
        return list(dict.fromkeys([*first, *self._bootstrap]))

    async def fetch(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> FetchedState:
        """The cluster's state now, from the first server that answers usefully; ClusterUnreachable
        (never anything else of Kafka's or the network's) when none does within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        problems: list[tuple[str, str]] = []
        candidates = self._candidates()
        timed_out = False
        for index, server in enumerate(candidates):
            remaining = deadline - loop.time()
            if remaining <= 0:
                timed_out = True
                problems.extend((str(s), "not asked: out of time") for s in candidates[index:])
                break
            share = min(remaining, max(remaining / (len(candidates) - index), MIN_ATTEMPT_SECONDS))
            try:
                async with asyncio.timeout(share):
                    snapshot = await fetch_partitions(self._client, server, share)
            except TimeoutError as err:
                timed_out = timed_out or share >= remaining
                problems.append((str(server), f"{describe_error(err)} after {share:.1f} s"))
                await self._client.close()
                continue
            except MetadataError as err:
                problems.append((str(server), str(err) or "unexpected answer"))
                continue
            except (OSError, UnicodeError) as err:  # UnicodeError: a password file that is no UTF-8
                problems.append((str(server), describe_error(err)))
                continue
            self._last = server
            state, warnings = cluster_state(self.cluster, snapshot)
            return FetchedState(
                state, str(server), snapshot.metadata.cluster.cluster_id, warnings, loop.time() - started
            )
        raise ClusterUnreachable(self.cluster, tuple(problems), timed_out)

    async def close(self) -> None:
        await self._client.close()


async def fetch_cluster_state(
    cluster: str, settings: KraftSettings, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> FetchedState:
    """One fetch over a connection of its own, closed after (see `ClusterStateReader.fetch`)."""
    reader = ClusterStateReader(cluster, settings)
    try:
        return await reader.fetch(timeout)
    finally:
        await reader.close()
