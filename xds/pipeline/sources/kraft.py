"""The KRaft source: learns a ZooKeeper-less Kafka cluster's brokers from Kafka's own Metadata API.

Every `poll_interval_seconds` one Metadata request (for no topics: the answer stays small however many
partitions the cluster has) goes over a kept-open connection, through aiokafka's connection class,
which negotiates the API version and does TLS and SASL. The answer lists the live (unfenced) brokers
with their endpoints on the listener the request arrived on: the bootstrap listener is therefore the
upstream listener, and `upstream_port` may replace its port.

Only a real change publishes a new Topology. When a server does not answer, the next is tried: the
one that answered last, then every bootstrap server, then a few of the brokers learned so far. When
none answers, the last brokers are kept, marked stale, and polling backs off (capped, jittered). An
answer from another Kafka cluster (its cluster id differs from the first one seen) is refused. A
broker whose endpoint is no usable address (a port outside 1..65535, a host that is neither an IP
address nor a DNS name) is skipped and reported, as the other sources skip a malformed registration.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from xds.config.model import KafkaCluster, KraftSettings
from xds.kafka.client import KafkaMetadataClient, MetadataClient, describe_error, parse_bootstrap_server
from xds.kafka.metadata import ClusterMetadata, MetadataBroker, MetadataError
from xds.pipeline.sources.base import Publish, gave_up_waiting, kept
from xds.pipeline.topology import Broker, SkippedRegistration, SourceState, Topology
from xds.shared.addresses import HostPort, is_host
from xds.shared.log import Repeats, event

log = logging.getLogger("kafka_xds.sources.kraft")

_WAITING_NOTICE_SECONDS = 1.0  # how long a first answer may take before /readyz says why it waits
LEARNED_TRIES_PER_POLL = 3  # learned brokers tried per poll after the bootstrap servers (rotating)


def backoff_delay(failures: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after `failures` failed polls in a row: doubling from `base`, capped, jittered.

    The jitter (a uniform draw from the upper half) keeps many kafka-xds replicas that lost the same
    cluster at the same moment from polling it in step when it comes back.
    """
    if failures <= 0:
        return base
    ceiling = min(cap, base * 2.0 ** min(failures, 32))
    return max(base, ceiling * (0.5 + rng() / 2))


class KraftSource:
    kind = "kraft"

    def __init__(
        self,
        cluster: KafkaCluster,
        client_factory: Callable[[KraftSettings, str], MetadataClient] | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if cluster.kraft is None:
            raise ValueError(f"cluster {cluster.name} has no kraft source")
        self.cluster = cluster.name
        self._settings = cluster.kraft
        self._upstream_listener = cluster.upstream_listener
        self._client_factory = client_factory or KafkaMetadataClient
        self._clock = clock
        self._rng = rng
        self._sleep = sleep
        self._bootstrap = [parse_bootstrap_server(server) for server in self._settings.bootstrap_servers]
        self._servers_text = ", ".join(self._settings.bootstrap_servers)
        self._current = Topology.create(self.cluster, self.kind, SourceState.SYNCING)
        self._publish: Publish = lambda topology: None
        self._cluster_id: str | None = None  # the first id seen: a later, different one is refused
        self._last_answered: HostPort | None = None
        self._learned: list[HostPort] = []  # bootstrap-listener endpoints of the brokers last seen
        self._rotation = 0
        self._failures = 0
        self._repeats = Repeats()

    async def run(self, publish: Publish) -> None:
        self._publish = publish
        if self._settings.sasl is not None and self._settings.security_protocol == "SASL_PLAINTEXT":
            event(
                log,
                logging.WARNING,
                "SASL over SASL_PLAINTEXT: credentials and metadata cross the network unencrypted",
                cluster=self.cluster,
                mechanism=self._settings.sasl.mechanism,
            )
        client = self._client_factory(self._settings, self.cluster)
        try:
            await self._poll_forever(client)
        except Exception as err:  # the supervisor restarts the source: say meanwhile it follows nothing
            self._set(self._current.went_stale(f"KRaft source failed: {err!r}", self._clock()))
            raise
        finally:
            await client.close()

    async def _poll_forever(self, client: MetadataClient) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        timeout = self._settings.startup_timeout_seconds
        give_up_at = started + timeout if timeout is not None else None
        # Say why /readyz waits if the first answer is slow (e.g. servers that time out).
        notice = loop.call_later(_WAITING_NOTICE_SECONDS, self._waiting_notice)
        try:
            await self.poll_once(client)
        finally:
            notice.cancel()
        while True:
            if give_up_at is not None and not self._current.synced_once and loop.time() >= give_up_at:
                self._give_up_waiting()
                give_up_at = None
            delay = backoff_delay(
                self._failures,
                self._settings.poll_interval_seconds,
                self._settings.max_backoff_seconds,
                self._rng,
            )
            if give_up_at is not None and not self._current.synced_once:
                delay = min(delay, max(0.0, give_up_at - loop.time()))
            await self._sleep(delay)
            await self.poll_once(client)

    def _waiting_notice(self) -> None:
        if not self._current.synced_once and self._current.error is None:
            notice = f"waiting for a Metadata answer from {self._servers_text}"
            self._set(Topology.create(self.cluster, self.kind, SourceState.SYNCING, error=notice))

    async def poll_once(self, client: MetadataClient) -> bool:
        """Ask the candidates in turn until one answers usefully; publish what changed. True if one did."""
        problems: list[tuple[HostPort, str]] = []
        refusals: list[tuple[HostPort, str]] = []
        for server in self._candidates():
            try:
                metadata = await client.fetch(server)
            except (OSError, TimeoutError, MetadataError) as err:
                problems.append((server, describe_error(err)))
                continue
            refusal = self._refusal(metadata)
            if refusal is not None:
                refusals.append((server, refusal))
                continue
            if not metadata.brokers:
                problems.append((server, "answered with no live brokers (still starting?)"))
                continue
            self._accept(server, metadata)
            return True
        self._fail(problems, refusals)
        return False

    def _candidates(self) -> list[HostPort]:
        learned = self._learned
        if len(learned) > LEARNED_TRIES_PER_POLL:
            start = self._rotation % len(learned)
            learned = (learned[start:] + learned[:start])[:LEARNED_TRIES_PER_POLL]
            self._rotation += LEARNED_TRIES_PER_POLL
        ordered = [self._last_answered] if self._last_answered is not None else []
        return list(dict.fromkeys([*ordered, *self._bootstrap, *learned]))

    def _refusal(self, metadata: ClusterMetadata) -> str | None:
        if metadata.cluster_id is None or self._cluster_id is None or metadata.cluster_id == self._cluster_id:
            return None
        return (
            f"cluster id is {metadata.cluster_id!r} but was {self._cluster_id!r}: "
            "this is another Kafka cluster; refusing its brokers"
        )

    def _accept(self, server: HostPort, metadata: ClusterMetadata) -> None:
        if self._repeats.clear():  # at the level of the failure it ends: the default log shows both
            again = "again" if self._last_answered is not None else "for the first time"
            event(
                log,
                logging.WARNING,
                f"Metadata answered {again}; following brokers",
                cluster=self.cluster,
                server=str(server),
                failed_polls=self._failures,
            )
        self._failures = 0
        if self._cluster_id is None:
            self._cluster_id = metadata.cluster_id
        self._last_answered = server
        usable, skipped = [], []
        for broker in metadata.brokers:
            reason = _unusable(broker)
            if reason is None:
                usable.append(broker)
            else:
                skipped.append(
                    SkippedRegistration(f"{self.cluster}/broker-{broker.node_id}", reason, broker.node_id)
                )
        self._learned = sorted({HostPort(broker.host, broker.port) for broker in usable})
        port = self._settings.upstream_port
        brokers = [
            Broker.create(
                broker.node_id,
                {self._upstream_listener: HostPort(broker.host, port or broker.port)},
                broker.rack,
            )
            for broker in usable
        ]
        topology = Topology.create(
            self.cluster, self.kind, SourceState.SYNCED, brokers, skipped, cluster_id=self._cluster_id
        )
        self._log_changes(self._current.brokers if self._current.synced_once else (), topology.brokers)
        self._report_skips(topology.skipped)
        self._set(topology)

    def _report_skips(self, skipped: Iterable[SkippedRegistration]) -> None:
        """Log each skipped broker once, when it appears or its reason changes (not on every poll)."""
        before = set(self._current.skipped)
        for skip in skipped:
            if skip not in before:
                event(
                    log,
                    logging.ERROR,
                    "broker skipped: its Metadata endpoint is unusable; other brokers unaffected",
                    cluster=self.cluster,
                    broker=skip.broker_id,
                    reason=skip.reason,
                )

    def _fail(self, problems: list[tuple[HostPort, str]], refusals: list[tuple[HostPort, str]]) -> None:
        self._failures += 1
        details = "; ".join(f"{server}: {reason}" for server, reason in refusals + problems)
        if refusals:
            problem, level = details, logging.ERROR
        else:
            known = " or known brokers" if self._learned else ""
            problem = f"no Metadata answer from any of {self._servers_text}{known}: {details}"
            level = logging.WARNING
        # Failed polls repeat (with backoff) for as long as the cluster is away: logged when the
        # failure starts or changes, then a reminder a minute; every poll at debug level. The
        # learned brokers asked rotate: the reasons, not which servers gave them, make it the same.
        fields = self._repeats.admit(" | ".join(sorted({reason for _, reason in refusals + problems})))
        if fields is None:
            event(log, logging.DEBUG, "Metadata poll failed", cluster=self.cluster, problem=problem)
        else:
            event(log, level, kept(self._current) + problem, cluster=self.cluster, **fields)
        self._set(self._current.went_stale(problem, self._clock()))

    def _give_up_waiting(self) -> None:
        reason = f"no Metadata answer from {self._servers_text} yet"
        timeout = self._settings.startup_timeout_seconds
        self._set(gave_up_waiting(self._current, reason, timeout, log))

    def _log_changes(self, before: Iterable[Broker], after: Iterable[Broker]) -> None:
        old = {broker.broker_id: broker for broker in before}
        new = {broker.broker_id: broker for broker in after}
        for broker_id in sorted(old.keys() | new.keys()):
            was, now = old.get(broker_id), new.get(broker_id)
            if was == now:
                continue
            change = "joined" if was is None else "left (fenced or gone)" if now is None else "changed"
            event(
                log,
                logging.INFO,
                f"broker {change}",
                cluster=self.cluster,
                broker=broker_id,
                endpoint=_endpoint_text(now or was, self._upstream_listener),
            )

    def _set(self, topology: Topology) -> None:
        if topology != self._current:
            self._current = topology
            self._publish(topology)


def _unusable(broker: MetadataBroker) -> str | None:
    """Why a broker's Metadata endpoint cannot be an upstream, checked as static brokers are."""
    if not 1 <= broker.port <= 65535:
        return f"port {broker.port} of {broker.host!r} is outside 1..65535"
    if not is_host(broker.host):
        return f"expected an IP address or a DNS name, got {broker.host!r}"
    return None


def _endpoint_text(broker: Broker | None, listener: str) -> str | None:
    endpoint = broker.endpoint(listener) if broker is not None else None
    return str(endpoint) if endpoint is not None else None
