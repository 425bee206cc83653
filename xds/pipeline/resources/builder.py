"""Each broker's resources, built once per change of their inputs and reused otherwise."""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from xds.config.model import SidecarSettings, SubjectAltName, UpstreamTls
from xds.pipeline.plan import PlannedBroker
from xds.pipeline.resources.encode import ENCODERS
from xds.pipeline.resources.inputs import (
    CertificateInputs,
    ClusterInputs,
    Encoders,
    EndpointInputs,
    ListenerInputs,
    TlsSecrets,
    TrustedCaInputs,
    resource_name,
)
from xds.shared.resource import Resource
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE


@dataclass(frozen=True, slots=True)
class BrokerResources:
    listener: Resource
    cluster: Resource
    endpoints: Resource
    secrets: tuple[Resource, ...] = ()  # those the cluster uses, shared by its Kafka cluster


K = TypeVar("K", bound=Hashable)


class _Entry:
    __slots__ = ("resource", "used_by")

    def __init__(self, resource: Resource, used_by: int) -> None:
        self.resource = resource
        self.used_by = used_by  # the build that last used it


class _Memo:
    """Keeps the resources of the last build by their inputs; whatever a build does not use is dropped.

    Hashing the inputs is most of what a reused resource costs, so a lookup hashes them once: the
    entry is marked with the build using it, in place, and `finish` drops the entries this build
    did not mark (only those are hashed again)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._build = 0
        self.built = 0
        self.reused = 0

    def get(self, key: K, build: Callable[[K], Resource]) -> Resource:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(build(key), self._build)
            self.built += 1
        else:
            entry.used_by = self._build
            self.reused += 1
        return entry.resource

    def finish(self) -> None:
        unused = [key for key, entry in self._entries.items() if entry.used_by != self._build]
        for key in unused:
            del self._entries[key]
        self._build += 1


class ResourceBuilder:
    """Builds each broker's resources, reusing those whose inputs did not change since the last build."""

    def __init__(self, encoders: Encoders | None = None) -> None:
        self._memo = _Memo()
        encode = encoders or ENCODERS
        self._listener = functools.partial(_listener, encode.listener)
        self._cluster = functools.partial(_cluster, encode.cluster)
        self._endpoints = functools.partial(_endpoints, encode.endpoints)
        self._certificate = functools.partial(_certificate, encode.certificate)
        self._trusted_ca = functools.partial(_trusted_ca, encode.trusted_ca)
        # Per build, each Kafka cluster's secrets, looked up once for all of its brokers.
        self._secrets: dict[tuple[str, UpstreamTls], _ClusterTls] = {}
        # Each broker's rendered certificate names, by Kafka cluster and TLS settings: kept from the
        # last build (only for the settings it used), so a build renders only brokers new to it. At
        # most one entry per broker id with a port in the plan.
        self._names: dict[tuple[str, UpstreamTls], dict[int, tuple[SubjectAltName, ...]]] = {}

    @property
    def counts(self) -> tuple[int, int]:
        """(built, reused) since this builder was made: what the 'rebuild only what changed' rule costs."""
        return self._memo.built, self._memo.reused

    def build(
        self,
        brokers: Iterable[tuple[PlannedBroker, UpstreamTls | None]],
        sidecar: SidecarSettings,
    ) -> list[BrokerResources]:
        built = [self._broker(planned, tls, sidecar) for planned, tls in brokers]
        self._memo.finish()
        self._names = {key: found.names for key, found in self._secrets.items()}
        self._secrets.clear()
        return built

    def _broker(
        self, planned: PlannedBroker, tls: UpstreamTls | None, sidecar: SidecarSettings
    ) -> BrokerResources:
        name, kafka = resource_name(planned), planned.cluster
        # SNI only for names: an IP literal is not a valid SNI (RFC 6066, section 3), and the server
        # name is stable where the IP is not, so a reschedule stays an endpoint-only change.
        server_name = planned.server_name
        memo = self._memo
        names: TlsSecrets | None = None
        shared: tuple[Resource, ...] = ()
        broker_names: tuple[SubjectAltName, ...] = ()
        if tls is not None:
            found = self._secrets.get((kafka, tls))
            if found is None:
                found = self._secrets[(kafka, tls)] = self._cluster_tls(kafka, tls)
            names, shared = found.secrets, found.shared
            # From the broker's id and cluster only: its certificate names stay when its address moves.
            rendered = found.names.get(planned.broker_id)
            if rendered is None:
                rendered = found.names[planned.broker_id] = tls.names_for(kafka, planned.broker_id)
            broker_names = rendered
        cluster = ClusterInputs(kafka, name, server_name, names, sidecar, broker_names)
        return BrokerResources(
            memo.get(
                ListenerInputs(kafka, name, planned.listen, sidecar.idle_timeout_seconds), self._listener
            ),
            memo.get(cluster, self._cluster),
            memo.get(EndpointInputs(kafka, name, planned.upstream, planned.rack), self._endpoints),
            shared,
        )

    def _cluster_tls(self, kafka: str, tls: UpstreamTls) -> _ClusterTls:
        names = TlsSecrets.of(kafka)
        certificate = CertificateInputs(kafka, names.certificate, tls.cert_file, tls.key_file)
        trusted_ca = TrustedCaInputs(kafka, names.trusted_ca, tls.ca_file)
        shared = (
            self._memo.get(certificate, self._certificate),
            self._memo.get(trusted_ca, self._trusted_ca),
        )
        return _ClusterTls(names, shared, self._names.get((kafka, tls), {}))


@dataclass(frozen=True, slots=True)
class _ClusterTls:
    """A Kafka cluster's TLS in one build: its Secrets' names and resources, its brokers' names."""

    secrets: TlsSecrets
    shared: tuple[Resource, ...]
    names: dict[int, tuple[SubjectAltName, ...]]  # by broker id, filled as its brokers are built


def _listener(encode: Callable[[ListenerInputs], bytes], inputs: ListenerInputs) -> Resource:
    return Resource.of(
        LISTENER_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster, frozenset((inputs.name,))
    )


def _cluster(encode: Callable[[ClusterInputs], bytes], inputs: ClusterInputs) -> Resource:
    uses = inputs.secrets.names if inputs.secrets is not None else frozenset()
    return Resource.of(CLUSTER_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster, uses)


def _endpoints(encode: Callable[[EndpointInputs], bytes], inputs: EndpointInputs) -> Resource:
    return Resource.of(ENDPOINT_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster)


def _certificate(encode: Callable[[CertificateInputs], bytes], inputs: CertificateInputs) -> Resource:
    return Resource.of(SECRET_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster)


def _trusted_ca(encode: Callable[[TrustedCaInputs], bytes], inputs: TrustedCaInputs) -> Resource:
    return Resource.of(SECRET_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster)


# Wire encoders. Each writes the fields in the order envoy-data-plane's `bytes(message)` does (the
# order the fields are declared in the .proto files, not their numbers), leaves out proto3 scalars
