"""Each resource's inputs as its serialized Envoy message, written directly in protobuf wire format."""

from __future__ import annotations

import datetime
import functools

from xds.config.model import SidecarSettings, SubjectAltName
from xds.pipeline.resources.inputs import (
    TCP_PROXY_FILTER,
    TCP_PROXY_TYPE,
    TLS_TRANSPORT_SOCKET,
    UPSTREAM_TLS_TYPE,
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
from xds.shared import wire
from xds.shared.addresses import HostPort

# at their zero value, and always writes a sub-message or oneof member that is set, even when empty
# or zero. Field numbers are from envoy's v3 API; typed.py builds the same messages by name.
# Everything the brokers share is encoded once: constants here, settings in small caches.

_delimited = wire.length_delimited
_scalar = wire.optional  # a proto3 string outside a oneof: the empty string is not written


def encode_listener(inputs: ListenerInputs) -> bytes:
    """envoy.config.listener.v3.Listener: a tcp_proxy to the broker's cluster on its planned address."""
    name, stats = inputs.name.encode(), stat_name(inputs.name).encode()
    # TcpProxy: stat_prefix 1, cluster 2 (oneof), idle_timeout 8
    proxy = _scalar(1, stats) + _delimited(2, name) + _duration_field(8, inputs.idle_timeout_seconds)
    # Filter: name 1, typed_config 4 (an Any: type_url 1, value 2)
    tcp_filter = _TCP_PROXY_FILTER_NAME + _delimited(4, _TCP_PROXY_TYPE_URL + _delimited(2, proxy))
    return b"".join(
        (  # name 1, address 2, stat_prefix 28, filter_chains 3 (FilterChain: filters 3), traffic_direction 16
            _scalar(1, name),
            _delimited(2, _address(inputs.listen)),
            _scalar(28, stats),
            _delimited(3, _delimited(3, tcp_filter)),
            _OUTBOUND,
        )
    )


def encode_cluster(inputs: ClusterInputs) -> bytes:
    """envoy.config.cluster.v3.Cluster: EDS over ADS, connection settings, mTLS when configured."""
    # name 1, alt_stat_name 28, type 2, eds_cluster_config 3, connect_timeout 4, transport_socket 24,
    # upstream_connection_options 30
    discovery, connection_options = _cluster_settings(inputs.sidecar)
    head = _scalar(1, inputs.name.encode()) + _scalar(28, stat_name(inputs.name).encode()) + discovery
    if inputs.secrets is None:
        return head + connection_options
    # UpstreamTlsContext: common_tls_context 1, sni 2
    common = _common_tls_context(inputs.secrets, inputs.broker_names)
    context = common + _scalar(2, (inputs.server_name or "").encode())
    # TransportSocket: name 1, typed_config 3 (an Any: type_url 1, value 2)
    socket = _TLS_SOCKET_NAME + _delimited(3, _UPSTREAM_TLS_TYPE_URL + _delimited(2, context))
    return head + _delimited(24, socket) + connection_options


def encode_endpoints(inputs: EndpointInputs) -> bytes:
    """envoy.config.endpoint.v3.ClusterLoadAssignment: the broker's one endpoint, none while in grace."""
    name = _scalar(1, inputs.name.encode())  # cluster_name 1
    if inputs.upstream is None:
        return name
    locality = _scalar(2, (inputs.rack or "").encode())  # Locality: zone 2
    lb_endpoint = _delimited(1, _delimited(1, _address(inputs.upstream)))  # { endpoint { address } }
    group = _delimited(1, locality) + _delimited(2, lb_endpoint)  # LocalityLbEndpoints
    return name + _delimited(2, group)  # endpoints 2


def encode_certificate(inputs: CertificateInputs) -> bytes:
    """envoy.extensions.transport_sockets.tls.v3.Secret { name 1, tls_certificate 2 (oneof):
    TlsCertificate { certificate_chain 1, private_key 2, watched_directory 7 { path 1 } } }, each
    DataSource being { filename 1 (oneof) }: file names only, never their contents."""
    certificate = (
        _delimited(1, wire.string(1, inputs.cert_file))
        + _delimited(2, wire.string(1, inputs.key_file))
        + _delimited(7, _scalar(1, watched_directory(inputs.cert_file).encode()))
    )
    return _scalar(1, inputs.name.encode()) + _delimited(2, certificate)


def encode_trusted_ca(inputs: TrustedCaInputs) -> bytes:
    """envoy.extensions.transport_sockets.tls.v3.Secret { name 1, validation_context 4 (oneof):
    CertificateValidationContext { trusted_ca 1 { filename 1 }, watched_directory 11 { path 1 } } }."""
    validation = _delimited(1, wire.string(1, inputs.ca_file)) + _delimited(
        11, _scalar(1, watched_directory(inputs.ca_file).encode())
    )
    return _scalar(1, inputs.name.encode()) + _delimited(4, validation)


ENCODERS = Encoders(encode_listener, encode_cluster, encode_endpoints, encode_certificate, encode_trusted_ca)

_OUTBOUND = wire.int64(16, 2)  # Listener.traffic_direction = OUTBOUND
_TCP_PROXY_FILTER_NAME = wire.string(1, TCP_PROXY_FILTER)  # Filter.name
_TCP_PROXY_TYPE_URL = wire.string(1, TCP_PROXY_TYPE)  # Any.type_url
_TLS_SOCKET_NAME = wire.string(1, TLS_TRANSPORT_SOCKET)  # TransportSocket.name
_UPSTREAM_TLS_TYPE_URL = wire.string(1, UPSTREAM_TLS_TYPE)  # Any.type_url
_EDS = wire.int64(2, 3)  # Cluster.type = EDS
_SAN_TYPES = {"dns": wire.int64(1, 2), "uri": wire.int64(1, 3)}  # SubjectAltNameMatcher.san_type: DNS, URI
_ADS_V3 = _delimited(3, b"") + wire.int64(6, 2)  # ConfigSource: ads {}, resource_api_version V3
_MICROSECOND = datetime.timedelta(microseconds=1)


def _address(host_port: HostPort) -> bytes:
    """Address { socket_address 1: SocketAddress { address 2, port_value 3 (oneof: even 0) } }."""
    return _delimited(1, _scalar(2, host_port.host.encode()) + wire.uint32(3, host_port.port))


@functools.lru_cache(maxsize=64)
def _duration_field(field: int, seconds: float) -> bytes:
    return _delimited(field, _duration(seconds))


@functools.lru_cache(maxsize=64)
def _duration(seconds: float) -> bytes:
    """google.protobuf.Duration { seconds 1, nanos 2 } as envoy-data-plane computes it from
    `timedelta(seconds=...)`: microsecond precision, and its float arithmetic kept as it is so the
    bytes stay equal even for values near timedelta's limits."""
    total = datetime.timedelta(seconds=seconds) // _MICROSECOND
    whole, nanos = int(total / 1e6), int((total % 1e6) * 1e3)
    return (wire.int64(1, whole) if whole else b"") + (wire.int64(2, nanos) if nanos else b"")


def _uint32_value(field: int, value: int) -> bytes:
    """A google.protobuf.UInt32Value { value 1 } field."""
    return _delimited(field, wire.uint32(1, value) if value else b"")


@functools.lru_cache(maxsize=16)
def _cluster_settings(sidecar: SidecarSettings) -> tuple[bytes, bytes]:
    """What every broker's Cluster shares: (type, eds_cluster_config and connect_timeout;
    upstream_connection_options), the two runs of fields before and after transport_socket."""
    discovery = (
        _EDS
        + _delimited(3, _delimited(1, _ADS_V3))  # eds_cluster_config { eds_config }
        + _duration_field(4, sidecar.connect_timeout_seconds)
    )
    keepalive = (  # TcpKeepalive: keepalive_probes 1, keepalive_time 2, keepalive_interval 3
        _uint32_value(1, sidecar.keepalive_probes)
        + _uint32_value(2, sidecar.keepalive_time_seconds)
        + _uint32_value(3, sidecar.keepalive_interval_seconds)
    )
    return discovery, _delimited(30, _delimited(1, keepalive))  # { tcp_keepalive 1 }


def _common_tls_context(secrets: TlsSecrets, broker_names: tuple[SubjectAltName, ...]) -> bytes:
    """UpstreamTlsContext.common_tls_context (1): CommonTlsContext { tls_certificate_sds_secret_configs 6,
    then (oneof) validation_context_sds_secret_config 7 without names to verify, or
    combined_validation_context 8 with them }, each SdsSecretConfig { name 1, sds_config 2 } with the
    Secret's name and the ADS stream as its source.

    CombinedCertificateValidationContext { default_validation_context 1,
    validation_context_sds_secret_config 2 }: Envoy merges the trusted-CA Secret into the default
    context, so the names are the broker's own (in its Cluster) while the CA still comes, and
    rotates, through SDS."""
    certificate, trusted_ca = _sds_configs(secrets)
    if not broker_names:
        return _delimited(1, certificate + _delimited(7, trusted_ca))
    # CertificateValidationContext: match_typed_subject_alt_names 15
    matchers = b"".join(_delimited(15, _san_matcher(name)) for name in broker_names)
    combined = _delimited(1, matchers) + _delimited(2, trusted_ca)
    return _delimited(1, certificate + _delimited(8, combined))


@functools.lru_cache(maxsize=256)
def _sds_configs(secrets: TlsSecrets) -> tuple[bytes, bytes]:
    """(tls_certificate_sds_secret_configs 6 as a field, the trusted CA's SdsSecretConfig body)."""
    certificate = _scalar(1, secrets.certificate.encode()) + _delimited(2, _ADS_V3)
    trusted_ca = _scalar(1, secrets.trusted_ca.encode()) + _delimited(2, _ADS_V3)
    return _delimited(6, certificate), trusted_ca


def _san_matcher(name: SubjectAltName) -> bytes:
    """SubjectAltNameMatcher { san_type 1, matcher 2: StringMatcher { exact 1 (oneof) } }. For a DNS
    name Envoy's exact match follows DNS rules: case-insensitive, and a wildcard certificate
    (`*.kafka-a.svc`) matches one label."""
    return _SAN_TYPES[name.kind] + _delimited(2, wire.string(1, name.value))
