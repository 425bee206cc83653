"""The Envoy types kafka-xds speaks exist in envoy-data-plane and round-trip through it."""

from __future__ import annotations

import pytest
from envoy_data_plane.google.protobuf import Any

from xds.config.model import SidecarSettings, UpstreamTls
from xds.pipeline.plan import PlannedBroker
from xds.pipeline.resources.builder import ResourceBuilder
from xds.pipeline.resources.typed import MESSAGE_TYPES, decoded
from xds.shared.addresses import HostPort
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE


@pytest.mark.parametrize("type_url", [LISTENER_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE, SECRET_TYPE])
def test_resource_types_round_trip_through_any(type_url):
    planned = PlannedBroker("kafka-a", 1, HostPort("127.0.0.10", 9091), HostPort("10.0.0.1", 9094), "az1")
    tls = UpstreamTls(ca_file="/ca", cert_file="/c", key_file="/k")
    built = ResourceBuilder().build([(planned, tls)], SidecarSettings())[0]
    resource = {
        LISTENER_TYPE: built.listener,
        CLUSTER_TYPE: built.cluster,
        ENDPOINT_TYPE: built.endpoints,
        SECRET_TYPE: built.secrets[0],
    }[type_url]
    assert resource.type_url == type_url
    unpacked = Any.parse(bytes(Any(type_url=resource.type_url, value=resource.payload))).unpack()
    assert isinstance(unpacked, MESSAGE_TYPES[type_url])
    assert unpacked.to_dict() == decoded(resource).to_dict()
    assert bytes(unpacked) == resource.payload
