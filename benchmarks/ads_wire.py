"""Just enough protobuf for the ADS load generator: hand-encoded xDS requests, and responses read
down to the few fields it checks. No betterproto here: the generator must cost far less than the
server it loads, so requests are built from pre-encoded parts and identical resource bytes (every
stream of one push gets the same ones) are decoded once per load process.

Field numbers (envoy-data-plane's envoy.service.discovery.v3 and friends):
  DiscoveryRequest       version_info 1, node 2, resource_names 3, type_url 4, response_nonce 5
  DiscoveryResponse      version_info 1, resources 2 (Any), type_url 4, nonce 5
  DeltaDiscoveryRequest  node 1, type_url 2, resource_names_subscribe 3, resource_names_unsubscribe 4,
                         initial_resource_versions 5 (map: key 1, value 2), response_nonce 6
  DeltaDiscoveryResponse system_version_info 1, resources 2 (Resource), type_url 4, nonce 5,
                         removed_resources 6;  Resource: version 1, resource 2 (Any), name 3
  Any                    type_url 1, value 2;  Node: id 1, cluster 2, user_agent_name 6
  Cluster, Listener      name 1;  ClusterLoadAssignment: cluster_name 1, endpoints 2
  LocalityLbEndpoints.lb_endpoints 2 -> LbEndpoint.endpoint 1 -> Endpoint.address 1
    -> Address.socket_address 1 -> SocketAddress.address 2
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from xds.shared import wire
from xds.shared.resource_types import ENDPOINT_TYPE

_CACHE_SIZE = 64  # decoded resource sets kept per load process: a few versions of each type
_ENDPOINT_PATH = (2, 2, 1, 1, 1)  # endpoints, lb_endpoints, endpoint, address, socket_address
_string = wire.optional_string


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(number, start, end) of every length-delimited field in data[start:end]; others are skipped."""
    for number, wire_type, value_start, value_end in wire.fields(data, start, end):
        if wire_type == wire.LENGTH_DELIMITED:
            yield number, value_start, value_end


def _first(data: bytes, start: int, end: int, number: int) -> tuple[int, int] | None:
    for found, value_start, value_end in _fields(data, start, end):
        if found == number:
            return value_start, value_end
    return None


def _text(data: bytes, span: tuple[int, int] | None) -> str:
    return "" if span is None else data[span[0] : span[1]].decode()


@dataclass(frozen=True, slots=True)
class Resources:
    """What the generator checks of one response's resources, in the order they came."""

    names: tuple[str, ...]
    versions: tuple[str, ...] = ()  # delta only: each Resource's version
    addresses: Mapping[str, frozenset[str]] = field(default_factory=dict)  # EDS: name -> endpoint IPs


@dataclass(frozen=True, slots=True)
class Response:
    """A DiscoveryResponse or DeltaDiscoveryResponse, as far as the generator reads it."""

    type_url: str
    version_info: str  # system_version_info for delta
    nonce: str
    resources: Resources
    removed: tuple[str, ...] = ()  # delta only


class ResponseReader:
    """Reads responses; remembers the last few decoded resource sets by their exact bytes."""

    def __init__(self) -> None:
        self._decoded: dict[tuple[bool, str, bytes], Resources] = {}
        self._responses: dict[tuple[bool, bytes], Response] = {}

    def sotw(self, data: bytes) -> Response:
        return self._whole(data, delta=False)

    def delta(self, data: bytes) -> Response:
        return self._whole(data, delta=True)

    def _whole(self, data: bytes, delta: bool) -> Response:
        # A server that shares one encoded response between streams sends the very same bytes
        # (nonce included) to many of them: walking thousands of resource fields once per stream
        # would make the generator, not the server, the bottleneck.
        key = (delta, data)
        found = self._responses.get(key)
        if found is None:
            found = self._responses[key] = self._read(data, delta)
            while len(self._responses) > _CACHE_SIZE:
                del self._responses[next(iter(self._responses))]
        return found

    def _read(self, data: bytes, delta: bool) -> Response:
        version = type_url = nonce = ""
        spans: list[tuple[int, int]] = []
        removed: list[str] = []
        for number, start, end in _fields(data, 0, len(data)):
            if number == 2:
                spans.append((start, end))
            elif number == 1:
                version = data[start:end].decode()
            elif number == 4:
                type_url = data[start:end].decode()
            elif number == 5:
                nonce = data[start:end].decode()
            elif number == 6 and delta:
                removed.append(data[start:end].decode())
        key = (delta, type_url, data[spans[0][0] : spans[-1][1]] if spans else b"")
        resources = self._decoded.get(key)
        if resources is None:
            resources = _resources(data, spans, type_url, delta)
            self._decoded[key] = resources
            while len(self._decoded) > _CACHE_SIZE:
                del self._decoded[next(iter(self._decoded))]
        return Response(type_url, version, nonce, resources, tuple(removed))


def _resources(data: bytes, spans: list[tuple[int, int]], type_url: str, delta: bool) -> Resources:
    names: list[str] = []
    versions: list[str] = []
    addresses: dict[str, frozenset[str]] = {}
    for start, end in spans:
        any_span: tuple[int, int] | None = (start, end)
        if delta:  # a Resource wrapping the Any
            version = name_span = any_span = None
            for number, value_start, value_end in _fields(data, start, end):
                if number == 1:
                    version = (value_start, value_end)
                elif number == 2:
                    any_span = (value_start, value_end)
                elif number == 3:
                    name_span = (value_start, value_end)
            names.append(_text(data, name_span))
            versions.append(_text(data, version))
        if any_span is None:
            continue  # a delta Resource without a body: it exists, its content is not sent
        value = _first(data, any_span[0], any_span[1], 2)
        if value is None:
            raise wire.WireFormatError(f"a {type_url} resource without a value")
        name = _text(data, _first(data, value[0], value[1], 1))
        if not delta:
            names.append(name)
        if type_url == ENDPOINT_TYPE:
            addresses[name] = frozenset(_endpoint_ips(data, value[0], value[1]))
    return Resources(tuple(names), tuple(versions), addresses)


def _endpoint_ips(data: bytes, start: int, end: int, depth: int = 0) -> Iterator[str]:
    """Every SocketAddress.address under a ClusterLoadAssignment's endpoints."""
    if depth == len(_ENDPOINT_PATH):
        yield _text(data, _first(data, start, end, 2))
        return
    for number, value_start, value_end in _fields(data, start, end):
        if number == _ENDPOINT_PATH[depth]:
            yield from _endpoint_ips(data, value_start, value_end, depth + 1)


def node(node_id: str, cluster: str, user_agent: str = "kafka-xds-loadgen") -> bytes:
    """An encoded envoy.config.core.v3.Node."""
    return _string(1, node_id) + _string(2, cluster) + _string(6, user_agent)


class SotwRequests:
    """DiscoveryRequests. The subscription part (type and names) is encoded once per distinct
    subscription and shared: most streams of a process subscribe to the same names."""

    def __init__(self) -> None:
        self._subscriptions: dict[tuple[str, tuple[str, ...]], bytes] = {}

    def subscription(self, type_url: str, names: tuple[str, ...]) -> bytes:
        key = (type_url, names)
        encoded = self._subscriptions.get(key)
        if encoded is None:
            encoded = b"".join(_string(3, name) for name in names) + _string(4, type_url)
            self._subscriptions[key] = encoded
            while len(self._subscriptions) > _CACHE_SIZE:
                del self._subscriptions[next(iter(self._subscriptions))]
        return encoded

    @staticmethod
    def request(subscription: bytes, version: str = "", nonce: str = "", node_bytes: bytes = b"") -> bytes:
        node_field = wire.length_delimited(2, node_bytes) if node_bytes else b""
        return _string(1, version) + node_field + subscription + _string(5, nonce)


def delta_request(
    type_url: str,
    subscribe: Iterable[str] = (),
    unsubscribe: Iterable[str] = (),
    initial_versions: Mapping[str, str] | None = None,
    nonce: str = "",
    node_bytes: bytes = b"",
) -> bytes:
    """A DeltaDiscoveryRequest (an ACK is just the type and the nonce)."""
    parts = [wire.length_delimited(1, node_bytes) if node_bytes else b"", _string(2, type_url)]
    parts.extend(_string(3, name) for name in subscribe)
    parts.extend(_string(4, name) for name in unsubscribe)
    for name, version in (initial_versions or {}).items():
        parts.append(wire.length_delimited(5, _string(1, name) + _string(2, version)))
    parts.append(_string(6, nonce))
    return b"".join(parts)
