"""Shared fixtures of the protocol tests: a world that publishes snapshots, and clients that answer
like Envoy does, for both protocol variants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import betterproto2
from envoy_data_plane.envoy.config.core.v3 import Node

from tests.support.xds_wire import (
    Decoded,
    decode_delta,
    decode_sotw,
    delta_request,
    secrets_used,
    sotw_request,
)
from xds.config.model import SidecarSettings, UpstreamTls
from xds.pipeline.plan import BrokerStatus, PlannedBroker
from xds.pipeline.resources.builder import ResourceBuilder
from xds.pipeline.snapshot import Snapshot
from xds.serving.protocol import (
    Delta,
    DeltaRequest,
    Nonces,
    Outcome,
    Sent,
    ServedSnapshot,
    Sotw,
    SotwRequest,
    StreamProtocol,
    Views,
)
from xds.shared.addresses import HostPort
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE

CDS, EDS, LDS, SDS = CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE
NOW = 1_700_000_000.0
TLS = UpstreamTls(ca_file="/ca.pem", cert_file="/c.pem", key_file="/k.pem")
RENEWED_TLS = UpstreamTls(ca_file="/ca.pem", cert_file="/renewed/c.pem", key_file="/renewed/k.pem")


class World:
    """Publishes snapshots from `{broker_id: upstream ip}` the way the pipeline does; with `tls`, every
    cluster uses its Kafka cluster's two secrets."""

    def __init__(self) -> None:
        self.builder = ResourceBuilder()
        self.nonces = Nonces("test")
        self.generation = 0
        self.served: ServedSnapshot | None = None

    def views(
        self,
        brokers: Mapping[int, str | None],
        tls: UpstreamTls | None = None,
        cluster: str = "kafka-a",
        extra: Mapping[str, Mapping[int, str | None]] | None = None,
    ) -> Views:
        clusters = {cluster: brokers, **(extra or {})}
        planned = [
            (
                PlannedBroker(
                    kafka_cluster,
                    broker_id,
                    HostPort("127.0.0.10", 9090 + broker_id),
                    HostPort(ip, 9094) if ip else None,
                    "az1",
                    BrokerStatus.LIVE if ip else BrokerStatus.IN_GRACE,
                ),
                tls,
            )
            for kafka_cluster, members in clusters.items()
            for broker_id, ip in sorted(members.items())
        ]
        snapshot = Snapshot.from_brokers(self.builder.build(planned, SidecarSettings()))
        self.generation += 1
        self.served = ServedSnapshot.build(self.generation, snapshot.all_resources(), self.served)
        return Views(self.served, self.nonces)


def name(broker_id: int, cluster: str = "kafka-a") -> str:
    return f"{cluster}/broker-{broker_id}"


def secret_names(cluster: str = "kafka-a") -> list[str]:
    return [f"{cluster}/client-certificate", f"{cluster}/trusted-ca"]


def sotw_stream(scope: frozenset[str] | None = None) -> StreamProtocol:
    return StreamProtocol(Sotw(), scope)


def delta_stream(scope: frozenset[str] | None = None) -> StreamProtocol:
    return StreamProtocol(Delta(), scope)


def responses(outcomes: Sequence[Outcome], delta: bool = False) -> list[Decoded]:
    """The responses among `outcomes`, decoded as a client would."""
    decode = decode_delta if delta else decode_sotw
    return [decode(outcome.body.data) for outcome in outcomes if isinstance(outcome, Sent)]


def only(outcomes: Sequence[Outcome], type_url: str | None = None, delta: bool = False) -> Decoded:
    sent = responses(outcomes, delta)
    assert len(sent) == 1, sent
    if type_url is not None:
        assert sent[0].type_url == type_url
    return sent[0]


def types_of(outcomes: Sequence[Outcome]) -> list[str]:
    return [outcome.type_url for outcome in outcomes if isinstance(outcome, Sent)]


# -- state of the world ---------------------------------------------------------------------------


def ack(response: Decoded, names: list[str] | None = None) -> SotwRequest:
    return sotw_request(response.type_url, names, version=response.version, nonce=response.nonce)


def nack(response: Decoded, last_good: str, message: str = "rejected") -> SotwRequest:
    return sotw_request(response.type_url, version=last_good, nonce=response.nonce, error=message)


class SotwSidecar:
    """Answers like Envoy on SotW ADS: ACKs every response, subscribes EDS to the clusters it got and
    SDS to the secrets they use."""

    def __init__(self, stream: StreamProtocol, views: Views | None) -> None:
        self.stream = stream
        self.views = views
        self.have: dict[str, Decoded] = {}
        self.log: list[Decoded] = []
        self.endpoint_names: list[str] = []
        self.secret_names: list[str] = []

    def connect(self, versions: dict[str, str] | None = None) -> None:
        versions = versions or {}
        first = sotw_request(CDS, version=versions.get(CDS, ""), node=Node(id="app-1"))
        self._handle(self.stream.receive(first, self.views, NOW))
        self._handle(self.stream.receive(sotw_request(LDS, version=versions.get(LDS, "")), self.views, NOW))

    def publish(self, views: Views) -> list[Decoded]:
        before = len(self.log)
        self.views = views
        self._handle(self.stream.publish(views))
        return self.log[before:]

    def _handle(self, outcomes: Sequence[Outcome]) -> None:
        queue = responses(outcomes)
        while queue:
            response = queue.pop(0)
            self.log.append(response)
            self.have[response.type_url] = response
            names = {EDS: self.endpoint_names, SDS: self.secret_names}.get(response.type_url)
            queue.extend(responses(self.stream.receive(ack(response, names), self.views, NOW)))
            if response.type_url == CDS and sorted(response.names) != self.endpoint_names:
                # Envoy subscribes to the endpoints of the clusters it has, after ACKing them.
                self.endpoint_names = sorted(response.names)
                queue.extend(self._follow(EDS, self.endpoint_names))
            if response.type_url != CDS:
                continue
            used = sorted(set().union(*map(secrets_used, response.resources.values())))
            if used != self.secret_names:
                # ... and to the secrets they use (a cluster's SDS subscription starts with it).
                self.secret_names = used
                queue.extend(self._follow(SDS, used))

    def _follow(self, type_url: str, names: list[str]) -> list[Decoded]:
        last = self.have.get(type_url)
        follow = sotw_request(type_url, names, last.version if last else "", last.nonce if last else "")
        return responses(self.stream.receive(follow, self.views, NOW))


# -- incremental ----------------------------------------------------------------------------------


def delta_ack(response: Decoded) -> DeltaRequest:
    return delta_request(response.type_url, nonce=response.nonce)


class DeltaSidecar:
    """Answers like Envoy on incremental ADS, and keeps what it holds per type: name -> version."""

    def __init__(self, stream: StreamProtocol, views: Views | None) -> None:
        self.stream = stream
        self.views = views
        self.held: dict[str, dict[str, str]] = {SDS: {}, CDS: {}, EDS: {}, LDS: {}}
        self.clusters: dict[str, betterproto2.Message] = {}  # those received on this connection
        self.log: list[Decoded] = []

    def connect(self, initial: dict[str, dict[str, str]] | None = None) -> None:
        """Subscribe as Envoy does on (re)connect: every request first, then handle the answers."""
        initial = initial or {}
        self.held = {type_url: dict(initial.get(type_url, {})) for type_url in (SDS, CDS, EDS, LDS)}
        outcomes = list(
            self.stream.receive(
                delta_request(CDS, ["*"], initial=initial.get(CDS), node=Node(id="app-1")), self.views, NOW
            )
        )
        for type_url in (EDS, SDS):
            if initial.get(type_url):
                request = delta_request(type_url, sorted(initial[type_url]), initial=initial[type_url])
                outcomes += self.stream.receive(request, self.views, NOW)
        outcomes += self.stream.receive(delta_request(LDS, ["*"], initial=initial.get(LDS)), self.views, NOW)
        self._handle(outcomes)

    def publish(self, views: Views) -> list[Decoded]:
        before = len(self.log)
        self.views = views
        self._handle(self.stream.publish(views))
        return self.log[before:]

    def _handle(self, outcomes: Sequence[Outcome]) -> None:
        queue = responses(outcomes, delta=True)
        while queue:
            response = queue.pop(0)
            self.log.append(response)
            held = self.held[response.type_url]
            held.update(response.versions)
            for removed in response.removed:
                held.pop(removed, None)
            queue.extend(responses(self.stream.receive(delta_ack(response), self.views, NOW), delta=True))
            if response.type_url == CDS:
                added = sorted(set(response.names) - set(self.stream.types[EDS].names))
                dropped = sorted(set(response.removed) & set(self.stream.types[EDS].names))
                if added or dropped:
                    change = delta_request(EDS, added, dropped)
                    queue.extend(responses(self.stream.receive(change, self.views, NOW), delta=True))
                queue.extend(self._follow_secrets(response))

    def _follow_secrets(self, clusters: Decoded) -> list[Decoded]:
        """Envoy subscribes to a secret with the first cluster using it and drops it with the last."""
        gone = [self.clusters.pop(name) for name in clusters.removed if name in self.clusters]
        self.clusters.update(clusters.resources)
        using = set().union(*map(secrets_used, self.clusters.values()))
        subscribed = self.stream.types[SDS].names
        added = sorted(set().union(*map(secrets_used, clusters.resources.values())) - subscribed)
        dropped = sorted((set().union(*map(secrets_used, gone)) & subscribed) - using)
        if not (added or dropped):
            return []
        return responses(self.stream.receive(delta_request(SDS, added, dropped), self.views, NOW), delta=True)
