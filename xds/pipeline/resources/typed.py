"""The resources as envoy-data-plane messages: the typed model the wire encoders must agree with.

Production writes the bytes directly (`encode`); this module builds the same messages field
by field through envoy-data-plane, which the tests hold byte-for-byte equal to the encoders, and
reads payloads back into messages for the debug views.
"""

from __future__ import annotations

import datetime

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
    WatchedDirectory,
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
    CommonTlsContextCombinedCertificateValidationContext,
    SdsSecretConfig,
    Secret,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    TlsCertificate,
    UpstreamTlsContext,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any

from xds.config.model import SubjectAltName
from xds.pipeline.resources.inputs import (
    TCP_PROXY_FILTER,
    TLS_TRANSPORT_SOCKET,
    CertificateInputs,
    ClusterInputs,
    Encoders,
    EndpointInputs,
    ListenerInputs,
    TlsSecrets,
    TrustedCaInputs,
    stat_name,
    watched_directory,
)
from xds.shared.addresses import HostPort
from xds.shared.resource import Resource
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE

MESSAGE_TYPES: dict[str, type[betterproto2.Message]] = {
    LISTENER_TYPE: Listener,
    CLUSTER_TYPE: Cluster,
    ENDPOINT_TYPE: ClusterLoadAssignment,
    SECRET_TYPE: Secret,
}

_ADS = ConfigSource(ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3)


def decoded(resource: Resource) -> betterproto2.Message:
    """A built resource as its envoy-data-plane message, for reading (debug views, tests)."""
    return decode(resource.type_url, resource.payload)


def decode(type_url: str, payload: bytes) -> betterproto2.Message:
    """A serialized resource as its envoy-data-plane message."""
    message_type = MESSAGE_TYPES.get(type_url)
    if message_type is None:
        raise ValueError(f"no envoy-data-plane message type for type URL {type_url!r}")
    return message_type.parse(payload)


def typed_listener(inputs: ListenerInputs) -> Listener:
    proxy = TcpProxy(
        stat_prefix=stat_name(inputs.name),
        cluster=inputs.name,
        idle_timeout=datetime.timedelta(seconds=inputs.idle_timeout_seconds),
    )
    return Listener(
        name=inputs.name,
        address=_address(inputs.listen),
        stat_prefix=stat_name(inputs.name),
        traffic_direction=TrafficDirection.OUTBOUND,
        filter_chains=[FilterChain(filters=[Filter(name=TCP_PROXY_FILTER, typed_config=Any.pack(proxy))])],
    )


def typed_cluster(inputs: ClusterInputs) -> Cluster:
    sidecar = inputs.sidecar
    return Cluster(
        name=inputs.name,
        alt_stat_name=stat_name(inputs.name),
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
        transport_socket=None
        if inputs.secrets is None
        else _upstream_tls(inputs.secrets, inputs.server_name, inputs.broker_names),
    )


def typed_endpoints(inputs: EndpointInputs) -> ClusterLoadAssignment:
    groups = []
    if inputs.upstream is not None:
        groups.append(
            LocalityLbEndpoints(
                locality=Locality(zone=inputs.rack or ""),
                lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=_address(inputs.upstream)))],
            )
        )
    return ClusterLoadAssignment(cluster_name=inputs.name, endpoints=groups)


def typed_certificate(inputs: CertificateInputs) -> Secret:
    return Secret(
        name=inputs.name,
        tls_certificate=TlsCertificate(
            certificate_chain=DataSource(filename=inputs.cert_file),
            private_key=DataSource(filename=inputs.key_file),
            watched_directory=WatchedDirectory(path=watched_directory(inputs.cert_file)),
        ),
    )


def typed_trusted_ca(inputs: TrustedCaInputs) -> Secret:
    return Secret(
        name=inputs.name,
        validation_context=CertificateValidationContext(
            trusted_ca=DataSource(filename=inputs.ca_file),
            watched_directory=WatchedDirectory(path=watched_directory(inputs.ca_file)),
        ),
    )


TYPED_ENCODERS = Encoders(
    lambda inputs: bytes(typed_listener(inputs)),
    lambda inputs: bytes(typed_cluster(inputs)),
    lambda inputs: bytes(typed_endpoints(inputs)),
    lambda inputs: bytes(typed_certificate(inputs)),
    lambda inputs: bytes(typed_trusted_ca(inputs)),
)


_SAN_TYPES = {"dns": SubjectAltNameMatcherSanType.DNS, "uri": SubjectAltNameMatcherSanType.URI}


def _upstream_tls(
    secrets: TlsSecrets, server_name: str | None, broker_names: tuple[SubjectAltName, ...]
) -> TransportSocket:
    certificates = [SdsSecretConfig(name=secrets.certificate, sds_config=_ADS)]
    trusted_ca = SdsSecretConfig(name=secrets.trusted_ca, sds_config=_ADS)
    if broker_names:
        matchers = [
            SubjectAltNameMatcher(san_type=_SAN_TYPES[name.kind], matcher=StringMatcher(exact=name.value))
            for name in broker_names
        ]
        common = CommonTlsContext(
            tls_certificate_sds_secret_configs=certificates,
            combined_validation_context=CommonTlsContextCombinedCertificateValidationContext(
                default_validation_context=CertificateValidationContext(
                    match_typed_subject_alt_names=matchers
                ),
                validation_context_sds_secret_config=trusted_ca,
            ),
        )
    else:
        common = CommonTlsContext(
            tls_certificate_sds_secret_configs=certificates, validation_context_sds_secret_config=trusted_ca
        )
    context = UpstreamTlsContext(common_tls_context=common, sni=server_name or "")
    return TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=Any.pack(context))


def _address(host_port: HostPort) -> Address:
    return Address(socket_address=SocketAddress(address=host_port.host, port_value=host_port.port))
