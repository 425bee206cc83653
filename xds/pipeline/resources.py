"""Envoy resources for the plan: per broker one Listener, one Cluster and one ClusterLoadAssignment;
per Kafka cluster with upstream TLS two Secrets, which name the sidecar's certificate files.

Every resource is built, serialized and hashed once per change, never per sidecar, and a broker whose
inputs did not change keeps the very object built for it before. The split of inputs is deliberate:
the Listener depends on the loopback address, the Cluster on TLS and connection settings, and only
the ClusterLoadAssignment on where the broker runs, so a broker moving to a new IP changes only its
ClusterLoadAssignment and Envoy neither drains the listener nor re-warms the cluster.

The TLS material reaches Envoy by file name, in SDS Secrets over the same ADS stream, each with the
directory to watch: Envoy reloads the files itself when the kubelet swaps a Secret volume's `..data`
symlink, so a renewed certificate is used without a restart and without kafka-xds. kafka-xds never
reads those files (they are paths on the sidecar) and never serves key material. A Cluster names its
two Secrets, so a changed path changes only the Secret.

The bytes are written directly in protobuf wire format (xds/wire.py): building the same messages
through envoy-data-plane's pydantic classes costs about 3 ms each. Those classes stay the model:
xds/typed.py builds each resource through them, the tests hold the two byte-for-byte equal, and
`BuiltResource.decode` reads any payload back into them.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import posixpath
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from xds.config.model import SidecarSettings, UpstreamTls
from xds.pipeline.plan import PlannedBroker
from xds.shared import wire
from xds.shared.addresses import HostPort
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE

if TYPE_CHECKING:
    import betterproto2

TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
UPSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"


@dataclass(frozen=True, slots=True, eq=False)
class BuiltResource:
    """One Envoy resource, serialized once, with a version that is the hash of its bytes."""

    type_url: str
    name: str
    version: str  # sha256 of the payload, 16 hex digits: equal bytes, equal versions, on any replica
    payload: bytes  # the serialized resource message (what an Any's value holds)
    references: frozenset[str]  # a listener: the clusters it forwards to; a cluster: the secrets it uses
    kafka_cluster: str  # the Kafka cluster of the broker this resource is for

    @classmethod
    def of(
        cls,
        type_url: str,
        name: str,
        payload: bytes,
        kafka_cluster: str,
        references: frozenset[str] = frozenset(),
    ) -> BuiltResource:
        return cls(
            type_url, name, hashlib.sha256(payload).hexdigest()[:16], payload, references, kafka_cluster
        )

    def decode(self) -> betterproto2.Message:
        """The payload as its envoy-data-plane message, for reading (debug views, tests)."""
        # Imported here: the typed model costs well over half a second of import time, which a
        # replica's start does not need to pay.
        from xds.pipeline.typed import decode

        return decode(self.type_url, self.payload)


def resource_name(planned: PlannedBroker) -> str:
    """The name of a broker's Listener, Cluster and ClusterLoadAssignment: `<cluster>/broker-<id>`."""
    return f"{planned.cluster}/broker-{planned.broker_id}"


def stat_name(name: str) -> str:
    """A resource name as an Envoy stats prefix: `kafka-a/broker-1` -> `kafka-a.broker-1`."""
    return name.replace("/", ".")


@dataclass(frozen=True, slots=True)
class TlsSecrets:
    """The names of the two Secrets a Kafka cluster's Clusters take their TLS material from."""

    certificate: str
    trusted_ca: str

    @classmethod
    def of(cls, kafka_cluster: str) -> TlsSecrets:
        return cls(f"{kafka_cluster}/client-certificate", f"{kafka_cluster}/trusted-ca")

    @property
    def names(self) -> frozenset[str]:
        return frozenset((self.certificate, self.trusted_ca))


def watched_directory(path: str) -> str:
    """The directory Envoy watches for a file: the file's directory as configured, symlinks not
    followed. A Kubernetes Secret volume's `tls.crt` is a link to `..data/tls.crt`, and the kubelet
    renews it by renaming a new `..data` link into the volume's directory: a move Envoy sees there."""
    return posixpath.dirname(path) or "."


@dataclass(frozen=True, slots=True)
class ListenerInputs:
    kafka_cluster: str
    name: str
    listen: HostPort
    idle_timeout_seconds: float


@dataclass(frozen=True, slots=True)
class ClusterInputs:
    kafka_cluster: str
    name: str
    server_name: str | None
    secrets: TlsSecrets | None  # None: plain TCP
    sidecar: SidecarSettings


@dataclass(frozen=True, slots=True)
class EndpointInputs:
    kafka_cluster: str
    name: str
    upstream: HostPort | None
    rack: str | None


@dataclass(frozen=True, slots=True)
class CertificateInputs:
    kafka_cluster: str
    name: str
    cert_file: str
    key_file: str


@dataclass(frozen=True, slots=True)
class TrustedCaInputs:
    kafka_cluster: str
    name: str
    ca_file: str


@dataclass(frozen=True, slots=True)
class Encoders:
    """How each resource's inputs become its serialized message."""

    listener: Callable[[ListenerInputs], bytes]
    cluster: Callable[[ClusterInputs], bytes]
    endpoints: Callable[[EndpointInputs], bytes]
    certificate: Callable[[CertificateInputs], bytes]
    trusted_ca: Callable[[TrustedCaInputs], bytes]


@dataclass(frozen=True, slots=True)
class BrokerResources:
    listener: BuiltResource
    cluster: BuiltResource
    endpoints: BuiltResource
    secrets: tuple[BuiltResource, ...] = ()  # those the cluster uses, shared by its Kafka cluster


K = TypeVar("K", bound=Hashable)


class _Entry:
    __slots__ = ("resource", "used_by")

    def __init__(self, resource: BuiltResource, used_by: int) -> None:
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

    def get(self, key: K, build: Callable[[K], BuiltResource]) -> BuiltResource:
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
        self._secrets: dict[tuple[str, UpstreamTls], tuple[TlsSecrets, tuple[BuiltResource, ...]]] = {}

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
        shared: tuple[BuiltResource, ...] = ()
        if tls is not None:
            found = self._secrets.get((kafka, tls))
            if found is None:
                found = self._secrets[(kafka, tls)] = self._cluster_secrets(kafka, tls)
            names, shared = found
        return BrokerResources(
            memo.get(
                ListenerInputs(kafka, name, planned.listen, sidecar.idle_timeout_seconds), self._listener
            ),
            memo.get(ClusterInputs(kafka, name, server_name, names, sidecar), self._cluster),
            memo.get(EndpointInputs(kafka, name, planned.upstream, planned.rack), self._endpoints),
            shared,
        )

    def _cluster_secrets(self, kafka: str, tls: UpstreamTls) -> tuple[TlsSecrets, tuple[BuiltResource, ...]]:
        names = TlsSecrets.of(kafka)
        certificate = CertificateInputs(kafka, names.certificate, tls.cert_file, tls.key_file)
        trusted_ca = TrustedCaInputs(kafka, names.trusted_ca, tls.ca_file)
        return names, (
            self._memo.get(certificate, self._certificate),
            self._memo.get(trusted_ca, self._trusted_ca),
        )


def _listener(encode: Callable[[ListenerInputs], bytes], inputs: ListenerInputs) -> BuiltResource:
    return BuiltResource.of(
        LISTENER_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster, frozenset((inputs.name,))
    )


def _cluster(encode: Callable[[ClusterInputs], bytes], inputs: ClusterInputs) -> BuiltResource:
    uses = inputs.secrets.names if inputs.secrets is not None else frozenset()
    return BuiltResource.of(CLUSTER_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster, uses)


def _endpoints(encode: Callable[[EndpointInputs], bytes], inputs: EndpointInputs) -> BuiltResource:
    return BuiltResource.of(ENDPOINT_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster)


def _certificate(encode: Callable[[CertificateInputs], bytes], inputs: CertificateInputs) -> BuiltResource:
    return BuiltResource.of(SECRET_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster)


def _trusted_ca(encode: Callable[[TrustedCaInputs], bytes], inputs: TrustedCaInputs) -> BuiltResource:
    return BuiltResource.of(SECRET_TYPE, inputs.name, encode(inputs), inputs.kafka_cluster)


# Wire encoders. Each writes the fields in the order envoy-data-plane's `bytes(message)` does (the
# order the fields are declared in the .proto files, not their numbers), leaves out proto3 scalars
# at their zero value, and always writes a sub-message or oneof member that is set, even when empty
# or zero. Field numbers are from envoy's v3 API; xds/typed.py builds the same messages by name.
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
    context = _common_tls_context(inputs.secrets) + _scalar(2, (inputs.server_name or "").encode())
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


@functools.lru_cache(maxsize=256)
def _common_tls_context(secrets: TlsSecrets) -> bytes:
    """UpstreamTlsContext.common_tls_context (1): CommonTlsContext { tls_certificate_sds_secret_configs 6,
    validation_context_sds_secret_config 7 (oneof) }, each SdsSecretConfig { name 1, sds_config 2 }
    with the Secret's name and the ADS stream as its source."""
    certificate = _scalar(1, secrets.certificate.encode()) + _delimited(2, _ADS_V3)
    trusted_ca = _scalar(1, secrets.trusted_ca.encode()) + _delimited(2, _ADS_V3)
    return _delimited(1, _delimited(6, certificate) + _delimited(7, trusted_ca))
