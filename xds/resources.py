"""Envoy resources for the plan: per broker one Listener, one Cluster and one ClusterLoadAssignment.

Every resource is built, serialized and hashed once per change, never per sidecar, and a broker whose
inputs did not change keeps the very object built for it before. The split of inputs is deliberate:
the Listener depends on the loopback address, the Cluster on TLS and connection settings, and only
the ClusterLoadAssignment on where the broker runs, so a broker moving to a new IP changes only its
ClusterLoadAssignment and Envoy neither drains the listener nor re-warms the cluster.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import betterproto2
from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterDiscoveryType,
    ClusterEdsClusterConfig,
    UpstreamConnectionOptions,
)
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    AggregatedConfigSource,
    ApiVersion,
    ConfigSource,
    DataSource,
    Locality,
    SocketAddress,
    TcpKeepalive,
    TrafficDirection,
    TransportSocket,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3 import TcpProxy
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    TlsCertificate,
    UpstreamTlsContext,
)
from envoy_data_plane.google.protobuf import Any

from xds.config import SidecarSettings, UpstreamTls
from xds.plan import PlannedBroker
from xds.topology import HostPort

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
# The order a change is applied in (make before break): clusters, then their endpoints, then listeners.
TYPE_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE)
SHORT_TYPE_NAMES = {CLUSTER_TYPE: "clusters", ENDPOINT_TYPE: "endpoints", LISTENER_TYPE: "listeners"}

_ADS = ConfigSource(ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3)


@dataclass(frozen=True, slots=True, eq=False)
class BuiltResource:
    """One Envoy resource, serialized once, with a version that is the hash of its bytes."""

    type_url: str
    name: str
    version: str
    message: betterproto2.Message
    packed: Any
    references: frozenset[str] = frozenset()  # names of the clusters a listener forwards to

    @classmethod
    def of(cls, name: str, message: betterproto2.Message, references: Iterable[str] = ()) -> BuiltResource:
        packed = Any.pack(message)
        version = hashlib.sha256(packed.value).hexdigest()[:16]
        return cls(packed.type_url, name, version, message, packed, frozenset(references))


def resource_name(planned: PlannedBroker) -> str:
    """The name of a broker's Listener, Cluster and ClusterLoadAssignment: `<cluster>/broker-<id>`."""
    return f"{planned.cluster}/broker-{planned.broker_id}"


K = TypeVar("K", bound=Hashable)


class _Memo:
    """Keeps the resources of the last build by their inputs; whatever a build does not use is dropped."""

    def __init__(self) -> None:
        self._previous: dict[Hashable, BuiltResource] = {}
        self._current: dict[Hashable, BuiltResource] = {}
        self.built = 0
        self.reused = 0

    def get(self, key: K, build: Callable[[K], BuiltResource]) -> BuiltResource:
        found = self._current.get(key) or self._previous.get(key)
        if found is None:
            found = build(key)
            self.built += 1
        else:
            self.reused += 1
        self._current[key] = found
        return found

    def finish(self) -> None:
        self._previous, self._current = self._current, {}


@dataclass(frozen=True, slots=True)
class _ListenerInputs:
    name: str
    listen: HostPort
    idle_timeout_seconds: float


@dataclass(frozen=True, slots=True)
class _ClusterInputs:
    name: str
    server_name: str | None
    tls: UpstreamTls | None
    sidecar: SidecarSettings


@dataclass(frozen=True, slots=True)
class _EndpointInputs:
    name: str
    upstream: HostPort | None
    rack: str | None


@dataclass(frozen=True, slots=True)
class BrokerResources:
    listener: BuiltResource
    cluster: BuiltResource
    endpoints: BuiltResource


class ResourceBuilder:
    """Builds each broker's resources, reusing those whose inputs did not change since the last build."""

    def __init__(self) -> None:
        self._memo = _Memo()

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
        return built

    def _broker(
        self, planned: PlannedBroker, tls: UpstreamTls | None, sidecar: SidecarSettings
    ) -> BrokerResources:
        name = resource_name(planned)
        # SNI only for names: an IP literal is not a valid SNI (RFC 6066, section 3), and the server
        # name is stable where the IP is not, so a reschedule stays an endpoint-only change.
        server_name = planned.server_name
        return BrokerResources(
            self._memo.get(_ListenerInputs(name, planned.listen, sidecar.idle_timeout_seconds), _listener),
            self._memo.get(_ClusterInputs(name, server_name, tls, sidecar), _cluster),
            self._memo.get(_EndpointInputs(name, planned.upstream, planned.rack), _endpoints),
        )


def _listener(inputs: _ListenerInputs) -> BuiltResource:
    proxy = TcpProxy(
        stat_prefix=_stat_name(inputs.name),
        cluster=inputs.name,
        idle_timeout=datetime.timedelta(seconds=inputs.idle_timeout_seconds),
    )
    listener = Listener(
        name=inputs.name,
        address=_address(inputs.listen),
        stat_prefix=_stat_name(inputs.name),
        traffic_direction=TrafficDirection.OUTBOUND,
        filter_chains=[
            FilterChain(
                filters=[Filter(name="envoy.filters.network.tcp_proxy", typed_config=Any.pack(proxy))]
            )
        ],
    )
    return BuiltResource.of(inputs.name, listener, references=[inputs.name])


def _cluster(inputs: _ClusterInputs) -> BuiltResource:
    sidecar = inputs.sidecar
    cluster = Cluster(
        name=inputs.name,
        type=ClusterDiscoveryType.EDS,
        eds_cluster_config=ClusterEdsClusterConfig(eds_config=_ADS),
        connect_timeout=datetime.timedelta(seconds=sidecar.connect_timeout_seconds),
        upstream_connection_options=UpstreamConnectionOptions(
            tcp_keepalive=TcpKeepalive(
                keepalive_probes=sidecar.keepalive_probes,
                keepalive_time=sidecar.keepalive_time_seconds,
                keepalive_interval=sidecar.keepalive_interval_seconds,
            )
        ),
        transport_socket=_upstream_tls(inputs.tls, inputs.server_name) if inputs.tls else None,
    )
    return BuiltResource.of(inputs.name, cluster)


def _upstream_tls(tls: UpstreamTls, server_name: str | None) -> TransportSocket:
    context = UpstreamTlsContext(
        common_tls_context=CommonTlsContext(
            tls_certificates=[
                TlsCertificate(
                    certificate_chain=DataSource(filename=tls.cert_file),
                    private_key=DataSource(filename=tls.key_file),
                )
            ],
            validation_context=CertificateValidationContext(trusted_ca=DataSource(filename=tls.ca_file)),
        ),
        sni=server_name or "",
    )
    return TransportSocket(name="envoy.transport_sockets.tls", typed_config=Any.pack(context))


def _endpoints(inputs: _EndpointInputs) -> BuiltResource:
    groups = []
    if inputs.upstream is not None:
        groups.append(
            LocalityLbEndpoints(
                locality=Locality(zone=inputs.rack or ""),
                lb_endpoints=[
                    LbEndpoint(
                        endpoint=Endpoint(
                            address=_address(inputs.upstream),
                        )
                    )
                ],
            )
        )
    return BuiltResource.of(inputs.name, ClusterLoadAssignment(cluster_name=inputs.name, endpoints=groups))


def _address(host_port: HostPort) -> Address:
    return Address(socket_address=SocketAddress(address=host_port.host, port_value=host_port.port))


def _stat_name(name: str) -> str:
    return name.replace("/", ".")
