"""What each Envoy resource of a broker depends on, as immutable values: the builder's memo keys.

A resource is rebuilt exactly when its inputs change; the split of the inputs (see the package
docstring) is what keeps a broker move an endpoint-only change.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from xds.config.model import SidecarSettings, SubjectAltName
from xds.pipeline.plan import PlannedBroker
from xds.shared.addresses import HostPort

TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
UPSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"


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
    # What the broker's certificate must carry (any one of them); empty: the name is not verified.
    broker_names: tuple[SubjectAltName, ...] = ()


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
