"""The Envoy bootstrap a sidecar starts with: ADS (incremental or state of the world) against kafka-xds.

Built from envoy-data-plane's Bootstrap message, so a typo is a Python error here, not an Envoy
start-up failure in a pod.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
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
    SocketAddress,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.google.protobuf import Any as AnyMessage

from xds.config import parse_listen
from xds.topology import HostPort

XDS_CLUSTER = "kafka_xds"


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
) -> Bootstrap:
    """A bootstrap whose only static resource is the cluster of kafka-xds replicas; `api` is
    "delta" (incremental ADS) or "sotw" (state-of-the-world ADS).

    Raises BootstrapError for an argument the sidecar could not start or connect with."""
    _check_arguments(node_id, xds_servers, node_cluster, admin)
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


def _address(listen: str) -> Address:
    host, port = parse_listen(listen)
    return Address(socket_address=SocketAddress(address=host, port_value=port))
