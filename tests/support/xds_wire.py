"""Typed views of what the wire-level protocol produces, for assertions (envoy-data-plane decodes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import betterproto2
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import UpstreamTlsContext
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from envoy_data_plane.google.rpc import Status

from xds.pipeline.resources.typed import decode
from xds.serving.protocol import DeltaRequest, SotwRequest
from xds.serving.protocol.messages import parse_delta, parse_sotw


@dataclass
class Decoded:
    """A response as a client sees it."""

    type_url: str
    version: str
    nonce: str
    resources: dict[str, betterproto2.Message] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # incremental: per-resource versions
    removed: list[str] = field(default_factory=list)
    raw: bytes = b""  # the response as sent

    @property
    def names(self) -> list[str]:
        return list(self.resources)


def resource_name(message: betterproto2.Message) -> str:
    if isinstance(message, ClusterLoadAssignment):
        return message.cluster_name
    name = getattr(message, "name", "")
    assert isinstance(name, str)
    return name


def secrets_used(cluster: betterproto2.Message) -> set[str]:
    """The names of the SDS secrets a Cluster's TLS context takes, as Envoy subscribes to them."""
    assert isinstance(cluster, Cluster)
    if cluster.transport_socket is None or cluster.transport_socket.typed_config is None:
        return set()
    context = cluster.transport_socket.typed_config.unpack()
    assert isinstance(context, UpstreamTlsContext) and context.common_tls_context is not None
    common = context.common_tls_context
    names = {config.name for config in common.tls_certificate_sds_secret_configs}
    if common.validation_context_sds_secret_config is not None:
        names.add(common.validation_context_sds_secret_config.name)
    combined = common.combined_validation_context  # with broker names to verify
    if combined is not None and combined.validation_context_sds_secret_config is not None:
        names.add(combined.validation_context_sds_secret_config.name)
    return names


def decode_sotw(data: bytes) -> Decoded:
    response = DiscoveryResponse.parse(data)
    decoded = Decoded(response.type_url, response.version_info, response.nonce, raw=data)
    for packed in response.resources:
        assert packed.type_url == response.type_url
        message = decode(packed.type_url, packed.value)
        name = resource_name(message)
        assert name not in decoded.resources, f"{name} twice in one response"
        decoded.resources[name] = message
    return decoded


def decode_delta(data: bytes) -> Decoded:
    response = DeltaDiscoveryResponse.parse(data)
    decoded = Decoded(response.type_url, response.system_version_info, response.nonce, raw=data)
    for resource in response.resources:
        assert resource.resource is not None and resource.resource.type_url == response.type_url
        message = decode(response.type_url, resource.resource.value)
        assert resource_name(message) == resource.name
        assert resource.name not in decoded.resources, f"{resource.name} twice in one response"
        decoded.resources[resource.name] = message
        decoded.versions[resource.name] = resource.version
    decoded.removed = list(response.removed_resources)
    return decoded


def sotw_request(
    type_url: str,
    names: list[str] | None = None,
    version: str = "",
    nonce: str = "",
    error: str | None = None,
    node: Node | None = None,
) -> SotwRequest:
    """A DiscoveryRequest as a client encodes it, parsed as the server parses it."""
    message = DiscoveryRequest(
        type_url=type_url,
        resource_names=names or [],
        version_info=version,
        response_nonce=nonce,
        error_detail=Status(code=3, message=error) if error else None,
        node=node,
    )
    return parse_sotw(bytes(message))


def delta_request(
    type_url: str,
    subscribe: list[str] | None = None,
    unsubscribe: list[str] | None = None,
    initial: Mapping[str, str] | None = None,
    nonce: str = "",
    error: str | None = None,
    node: Node | None = None,
) -> DeltaRequest:
    """A DeltaDiscoveryRequest as a client encodes it, parsed as the server parses it."""
    message = DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=subscribe or [],
        resource_names_unsubscribe=unsubscribe or [],
        initial_resource_versions=dict(initial or {}),
        response_nonce=nonce,
        error_detail=Status(code=3, message=error) if error else None,
        node=node,
    )
    return parse_delta(bytes(message))
