"""The ADS load generator's hand-made protobuf agrees with envoy-data-plane's messages."""

from __future__ import annotations

from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
    Resource,
)
from envoy_data_plane.google.protobuf import Any

from benchmarks.ads_wire import ResponseReader, SotwRequests, delta_request, node
from xds.config.model import SidecarSettings, UpstreamTls
from xds.pipeline.plan import PlannedBroker
from xds.pipeline.resources.builder import ResourceBuilder
from xds.shared.addresses import HostPort
from xds.shared.resource import Resource as BuiltResource
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE


def _any(resource: BuiltResource) -> Any:
    return Any(type_url=resource.type_url, value=resource.payload)


def _brokers(*hosts: str):
    tls = UpstreamTls(ca_file="/ca", cert_file="/c", key_file="/k")
    planned = [
        (PlannedBroker("kafka-a", i + 1, HostPort("127.0.0.10", 9091 + i), HostPort(host, 9094), "az1"), tls)
        for i, host in enumerate(hosts)
    ]
    return ResourceBuilder().build(planned, SidecarSettings())


def test_a_sotw_request_parses_as_envoys_discovery_request():
    requests = SotwRequests()
    subscription = requests.subscription(ENDPOINT_TYPE, ("kafka-a/broker-1", "kafka-a/broker-2"))
    encoded = SotwRequests.request(subscription, "v7", "42", node("load-3", "load"))

    request = DiscoveryRequest.parse(encoded)

    assert (request.version_info, request.response_nonce, request.type_url) == ("v7", "42", ENDPOINT_TYPE)
    assert request.resource_names == ["kafka-a/broker-1", "kafka-a/broker-2"]
    assert request.node is not None
    assert (request.node.id, request.node.cluster) == ("load-3", "load")


def test_a_delta_request_parses_as_envoys_delta_discovery_request():
    encoded = delta_request(
        ENDPOINT_TYPE, ["kafka-a/broker-2"], ["kafka-a/broker-1"], {"kafka-a/broker-3": "abc"}, "9"
    )

    request = DeltaDiscoveryRequest.parse(encoded)

    assert request.type_url == ENDPOINT_TYPE
    assert request.resource_names_subscribe == ["kafka-a/broker-2"]
    assert request.resource_names_unsubscribe == ["kafka-a/broker-1"]
    assert request.initial_resource_versions == {"kafka-a/broker-3": "abc"}
    assert request.response_nonce == "9"


def test_a_sotw_cluster_response_yields_the_cluster_names_version_and_nonce():
    built = _brokers("10.0.0.1", "10.0.0.2")
    response = DiscoveryResponse(
        version_info="v1", resources=[_any(b.cluster) for b in built], type_url=CLUSTER_TYPE, nonce="5"
    )

    read = ResponseReader().sotw(bytes(response))

    assert (read.type_url, read.version_info, read.nonce) == (CLUSTER_TYPE, "v1", "5")
    assert read.resources.names == ("kafka-a/broker-1", "kafka-a/broker-2")


def test_a_sotw_endpoint_response_yields_each_clusters_endpoint_ips():
    built = _brokers("10.0.0.1", "10.0.0.2")
    response = DiscoveryResponse(resources=[_any(b.endpoints) for b in built], type_url=ENDPOINT_TYPE)

    read = ResponseReader().sotw(bytes(response))

    assert read.resources.addresses == {
        "kafka-a/broker-1": frozenset({"10.0.0.1"}),
        "kafka-a/broker-2": frozenset({"10.0.0.2"}),
    }


def test_responses_that_differ_only_in_nonce_share_one_decoding():
    built = _brokers("10.0.0.1")
    reader = ResponseReader()
    first = reader.sotw(bytes(DiscoveryResponse(resources=[_any(built[0].cluster)], nonce="1")))
    second = reader.sotw(bytes(DiscoveryResponse(resources=[_any(built[0].cluster)], nonce="2")))

    assert second.resources is first.resources
    assert (first.nonce, second.nonce) == ("1", "2")


def test_a_delta_response_yields_names_versions_removals_and_endpoint_ips():
    built = _brokers("10.0.0.1")
    endpoints = built[0].endpoints
    response = DeltaDiscoveryResponse(
        system_version_info="s1",
        resources=[Resource(name=endpoints.name, version=endpoints.version, resource=_any(endpoints))],
        type_url=ENDPOINT_TYPE,
        nonce="3",
        removed_resources=["kafka-a/broker-9"],
    )

    read = ResponseReader().delta(bytes(response))

    assert (read.type_url, read.version_info, read.nonce) == (ENDPOINT_TYPE, "s1", "3")
    assert read.resources.names == ("kafka-a/broker-1",)
    assert read.resources.versions == (endpoints.version,)
    assert read.resources.addresses == {"kafka-a/broker-1": frozenset({"10.0.0.1"})}
    assert read.removed == ("kafka-a/broker-9",)
