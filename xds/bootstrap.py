"""The Envoy bootstrap a sidecar starts with: ADS (incremental or state of the world) against kafka-xds.

Built from envoy-data-plane's Bootstrap message, so a typo is a Python error here, not an Envoy
start-up failure in a pod. With `XdsClientTls`, the sidecar reaches kafka-xds over mTLS: it checks
the server's certificate against the CA and the server name, and presents its own certificate.
Both come from file-based SDS: two Secret files beside the bootstrap name the certificate files,
and Envoy watches their directory (a Kubernetes Secret volume, whose `..data` symlink the kubelet
swaps on renewal), so a renewed certificate is used for the next connection without a restart.
kafka-xds only names these files: it never reads them (the key stays the sidecar's).
"""

from __future__ import annotations

import datetime
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import betterproto2
import yaml
from envoy_data_plane.envoy.config.bootstrap.v3 import (
    Admin,
    Bootstrap,
    BootstrapDynamicResources,
    BootstrapStaticResources,
)
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    AggregatedConfigSource,
    ApiConfigSource,
    ApiConfigSourceApiType,
    ApiVersion,
    ConfigSource,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    Http2ProtocolOptions,
    KeepaliveSettings,
    Node,
    PathConfigSource,
    SocketAddress,
    TransportSocket,
    WatchedDirectory,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    CommonTlsContextCombinedCertificateValidationContext,
    SdsSecretConfig,
    Secret,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    UpstreamTlsContext,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any as AnyMessage

from xds.pipeline.resources.inputs import CertificateInputs, TrustedCaInputs, watched_directory
from xds.pipeline.resources.typed import typed_certificate, typed_trusted_ca
from xds.shared.addresses import HostPort, is_host, is_ip, parse_listen

XDS_CLUSTER = "kafka_xds"
CLIENT_CERTIFICATE_SECRET = "kafka_xds_client_certificate"
TRUSTED_CA_SECRET = "kafka_xds_trusted_ca"
_TLS_SOCKET = "envoy.transport_sockets.tls"
_TLS_OPTIONS = ("--xds-ca", "--xds-cert", "--xds-key")


API_TYPES = {"delta": ApiConfigSourceApiType.DELTA_GRPC, "sotw": ApiConfigSourceApiType.GRPC}
# Incremental by default: a change costs the changed resources only (a broker added is one cluster
# and one listener, not the whole set again), and a reconnect sends only what differs.
DEFAULT_API = "delta"


class BootstrapError(ValueError):
    """An argument Envoy would refuse, or that would point the sidecar nowhere; named by its option."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


@dataclass(frozen=True, slots=True)
class XdsClientTls:
    """The sidecar's side of mTLS to kafka-xds: paths on the sidecar's filesystem (never read here).
    `server_name`: the name kafka-xds's certificate must hold (None: the host of the first --xds)."""

    ca_file: str
    cert_file: str
    key_file: str
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class BootstrapFiles:
    """What a sidecar starts from: the bootstrap and, with TLS, its two SDS Secret files."""

    bootstrap: Path
    secrets: tuple[tuple[Path, str], ...]  # (path, YAML)
    text: str

    def write(self) -> None:
        """Secrets first, each file replaced whole: Envoy never starts on a half-written set."""
        for path, text in (*self.secrets, (self.bootstrap, self.text)):
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_text(text)
            temporary.replace(path)


def _check_arguments(node_id: str, xds_servers: Sequence[str], node_cluster: str, admin: str) -> None:
    # Envoy refuses an empty node id or cluster at start ("node 'id' and 'cluster' are required"):
    # in Kubernetes an unset $POD_NAME would otherwise become a crash-looping sidecar.
    for option, value in (("--node-id", node_id), ("--node-cluster", node_cluster)):
        if not value.strip():
            raise BootstrapError(option, "must not be empty")
    if not xds_servers:
        raise BootstrapError("--xds", "give at least one kafka-xds replica (HOST:PORT)")
    for server in xds_servers:
        try:
            _, port = parse_listen(server)
        except ValueError as err:
            raise BootstrapError("--xds", str(err)) from None
        if port == 0:  # port 0 means "any free port" only where kafka-xds itself listens
            raise BootstrapError("--xds", f"expected a port in 1..65535, got {server!r}")
    try:
        parse_listen(admin)
    except ValueError as err:
        raise BootstrapError("--admin", str(err)) from None


def build_bootstrap(
    node_id: str,
    xds_servers: Sequence[str],
    node_cluster: str = "kafka-clients",
    admin: str = "127.0.0.1:9901",
    api: str = DEFAULT_API,
    tls: XdsClientTls | None = None,
    bootstrap_path: str = "",
) -> Bootstrap:
    """A bootstrap whose only static resource is the cluster of kafka-xds replicas; `api` is
    "delta" (incremental ADS) or "sotw" (state-of-the-world ADS). With `tls`, that cluster speaks
    mTLS with its certificate and CA from the SDS files `secret_files` puts beside `bootstrap_path`.

    Raises BootstrapError for an argument the sidecar could not start or connect with."""
    _check_arguments(node_id, xds_servers, node_cluster, admin)
    transport_socket = None
    if tls is not None:
        transport_socket = _tls_socket(tls, server_name(tls, xds_servers), bootstrap_path)
    ads = ConfigSource(ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3)
    endpoints = [LbEndpoint(endpoint=Endpoint(address=_address(server))) for server in xds_servers]
    all_ips = all(HostPort(*parse_listen(server)).is_ip for server in xds_servers)
    http2 = HttpProtocolOptions(
        explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=Http2ProtocolOptions(
                connection_keepalive=KeepaliveSettings(
                    interval=datetime.timedelta(seconds=30), timeout=datetime.timedelta(seconds=5)
                )
            )
        )
    )
    xds_cluster = Cluster(
        name=XDS_CLUSTER,
        type=ClusterDiscoveryType.STATIC if all_ips else ClusterDiscoveryType.STRICT_DNS,
        connect_timeout=datetime.timedelta(seconds=1),
        typed_extension_protocol_options={
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": AnyMessage.pack(http2)
        },
        load_assignment=ClusterLoadAssignment(
            cluster_name=XDS_CLUSTER, endpoints=[LocalityLbEndpoints(lb_endpoints=endpoints)]
        ),
        transport_socket=transport_socket,
    )
    return Bootstrap(
        node=Node(id=node_id, cluster=node_cluster),
        dynamic_resources=BootstrapDynamicResources(
            ads_config=ApiConfigSource(
                api_type=API_TYPES[api],
                transport_api_version=ApiVersion.V3,
                set_node_on_first_message_only=True,
                grpc_services=[GrpcService(envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=XDS_CLUSTER))],
            ),
            cds_config=ads,
            lds_config=ads,
        ),
        static_resources=BootstrapStaticResources(clusters=[xds_cluster]),
        admin=Admin(address=_address(admin)),
    )


def bootstrap_yaml(bootstrap: Bootstrap) -> str:
    body: dict[str, Any] = bootstrap.to_dict(casing=betterproto2.Casing.SNAKE)
    return yaml.safe_dump(body, sort_keys=False)


def bootstrap_files(
    output: Path,
    node_id: str,
    xds_servers: Sequence[str],
    node_cluster: str = "kafka-clients",
    admin: str = "127.0.0.1:9901",
    api: str = DEFAULT_API,
    tls: XdsClientTls | None = None,
) -> BootstrapFiles:
    """The bootstrap at `output` and, with `tls`, its SDS files beside it (`<stem>.<secret>.yaml`).
    Envoy must see them at the same absolute path (mount the volume at the same place)."""
    output = Path(os.path.abspath(output))
    bootstrap = build_bootstrap(node_id, xds_servers, node_cluster, admin, api, tls, str(output))
    secrets = () if tls is None else tuple(secret_files(tls, output))
    return BootstrapFiles(output, secrets, bootstrap_yaml(bootstrap))


def secret_path(output: Path, secret: str) -> Path:
    return output.with_name(f"{output.stem}.{secret}.yaml")


def secret_files(tls: XdsClientTls, output: Path) -> list[tuple[Path, str]]:
    """The two SDS files: each one Secret naming the sidecar's files and the directory to watch."""
    _check_tls(tls)
    # The same Secrets kafka-xds serves its clusters over ADS, here read from files by the sidecar.
    certificate = typed_certificate(
        CertificateInputs("", CLIENT_CERTIFICATE_SECRET, tls.cert_file, tls.key_file)
    )
    trusted = typed_trusted_ca(TrustedCaInputs("", TRUSTED_CA_SECRET, tls.ca_file))
    return [(secret_path(output, secret.name), _secret_yaml(secret)) for secret in (certificate, trusted)]


def server_name(tls: XdsClientTls, xds_servers: Sequence[str]) -> str:
    """The name kafka-xds's certificate must hold: given, or the one host every --xds shares."""
    if tls.server_name is not None:
        if not is_host(tls.server_name):
            raise BootstrapError(
                "--xds-server-name", f"expected a DNS name or an IP, got {tls.server_name!r}"
            )
        return tls.server_name
    hosts = sorted({parse_listen(server)[0] for server in xds_servers})
    if len(hosts) > 1:
        raise BootstrapError(
            "--xds-server-name",
            f"the --xds replicas have different hosts ({', '.join(hosts)}): give the name kafka-xds's "
            "certificate holds",
        )
    return hosts[0]


def _check_tls(tls: XdsClientTls) -> None:
    for option, path in zip(_TLS_OPTIONS, (tls.ca_file, tls.cert_file, tls.key_file), strict=True):
        if not posixpath.isabs(path) or posixpath.basename(path) in ("", ".", ".."):
            raise BootstrapError(
                option, f"expected the absolute path of a file on the sidecar (Envoy reads it), got {path!r}"
            )


def _tls_socket(tls: XdsClientTls, name: str, bootstrap_path: str) -> TransportSocket:
    """SNI = the server name (unless it is an IP: not a valid SNI), and the server's certificate
    checked against the CA and that name (Envoy checks no name unless told)."""
    _check_tls(tls)
    if not posixpath.isabs(bootstrap_path):
        raise BootstrapError("--output", f"expected an absolute path, got {bootstrap_path!r}")
    output = Path(bootstrap_path)
    name_is_ip = is_ip(name)
    san_type = SubjectAltNameMatcherSanType.IP_ADDRESS if name_is_ip else SubjectAltNameMatcherSanType.DNS
    context = UpstreamTlsContext(
        sni="" if name_is_ip else name,
        common_tls_context=CommonTlsContext(
            tls_certificate_sds_secret_configs=[_sds(CLIENT_CERTIFICATE_SECRET, tls.cert_file, output)],
            combined_validation_context=CommonTlsContextCombinedCertificateValidationContext(
                default_validation_context=CertificateValidationContext(
                    match_typed_subject_alt_names=[
                        SubjectAltNameMatcher(san_type=san_type, matcher=StringMatcher(exact=name))
                    ]
                ),
                validation_context_sds_secret_config=_sds(TRUSTED_CA_SECRET, tls.ca_file, output),
            ),
        ),
    )
    return TransportSocket(name=_TLS_SOCKET, typed_config=AnyMessage.pack(context))


def _sds(secret: str, watched_file: str, output: Path) -> SdsSecretConfig:
    """A Secret read from its file, re-read when the watched directory changes (`..data` swap)."""
    return SdsSecretConfig(
        name=secret,
        sds_config=ConfigSource(
            path_config_source=PathConfigSource(
                path=str(secret_path(output, secret)),
                watched_directory=WatchedDirectory(path=watched_directory(watched_file)),
            ),
            resource_api_version=ApiVersion.V3,
        ),
    )


def _secret_yaml(secret: Secret) -> str:
    body = {"resources": [AnyMessage.pack(secret).to_dict(casing=betterproto2.Casing.SNAKE)]}
    return yaml.safe_dump(body, sort_keys=False)


def _address(listen: str) -> Address:
    host, port = parse_listen(listen)
    return Address(socket_address=SocketAddress(address=host, port_value=port))
