"""xDS requests and responses at the wire level: strict parsing of what the server reads, and encoding
of what it sends, without a typed message in between.

The server needs a handful of fields of each request, so it reads exactly those from the protobuf
wire format (validating every tag, length and UTF-8 string on the way) instead of building a
validated typed message per ACK, which was the largest cost of serving many sidecars. Identical
request bytes (every sidecar with the same subscription ACKs the same shared response with the same
bytes) are parsed once: see `RequestParser`.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from xds.shared import wire

WILDCARD = "*"
# A resource name (or declared version) longer than this ends its stream: kafka-xds serves none longer
# than about 90 bytes (`<kafka cluster>/broker-<id>`), and names are what a stream keeps.
MAX_NAME_BYTES = 1024
_R = TypeVar("_R", "SotwRequest", "DeltaRequest")
_EMPTY_NAMES: frozenset[str] = frozenset()


class MalformedRequest(ValueError):
    """Bytes that are not a valid DiscoveryRequest / DeltaDiscoveryRequest."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the server keeps of a request's `Node`: who the sidecar says it is (not an identity)."""

    id: str
    cluster: str = ""
    user_agent_name: str = ""
    user_agent_version: str = ""

    @property
    def envoy_version(self) -> str:
        return self.user_agent_version


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class SotwRequest:
    """A state-of-the-world DiscoveryRequest, reduced to what the protocol uses."""

    type_url: str
    version_info: str = ""
    resource_names: frozenset[str] = _EMPTY_NAMES
    response_nonce: str = ""
    error: ErrorDetail | None = None
    node: NodeInfo | None = None


@dataclass(frozen=True, slots=True)
class DeltaRequest:
    """An incremental DeltaDiscoveryRequest, reduced to what the protocol uses."""

    type_url: str
    subscribe: frozenset[str] = _EMPTY_NAMES
    unsubscribe: frozenset[str] = _EMPTY_NAMES
    initial_versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    response_nonce: str = ""
    error: ErrorDetail | None = None
    node: NodeInfo | None = None


# -- reading ----------------------------------------------------------------------------------------

_VARINT, _LEN = wire.VARINT, wire.LENGTH_DELIMITED


def _text(data: bytes, start: int, end: int, what: str) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest(f"{what}: a string field is not valid UTF-8") from None


def _expect(wire_type: int, expected: int, number: int, what: str) -> None:
    if wire_type != expected:
        raise MalformedRequest(f"{what}: field {number} has wire type {wire_type}, expected {expected}")


def _error_detail(data: bytes, start: int, end: int) -> ErrorDetail:
    code, message = 0, ""
    for number, wire_type, first, last in wire.fields(data, start, end, "error_detail"):
        if number == 1:
            _expect(wire_type, _VARINT, number, "error_detail")
            code = first if first < 1 << 31 else first - (1 << 64)  # int32, negative as 10-byte varint
        elif number == 2:
            _expect(wire_type, _LEN, number, "error_detail")
            message = _text(data, first, last, "error_detail.message")
    return ErrorDetail(code, message)


def _node(data: bytes, start: int, end: int) -> NodeInfo:
    node_id = cluster = agent = version = ""
    for number, wire_type, first, last in wire.fields(data, start, end, "node"):
        if number in (1, 2, 6, 7):
            _expect(wire_type, _LEN, number, "node")
            text = _text(data, first, last, "node")
            if number == 1:
                node_id = text
            elif number == 2:
                cluster = text
            elif number == 6:
                agent = text
            else:
                version = text
        elif number == 8:  # user_agent_build_version: BuildVersion { version: SemanticVersion }
            _expect(wire_type, _LEN, number, "node")
            version = _semantic_version(data, first, last) or version
    return NodeInfo(node_id, cluster, agent, version)


def _semantic_version(data: bytes, start: int, end: int) -> str:
    for number, wire_type, first, last in wire.fields(data, start, end, "node.user_agent_build_version"):
        if number == 1 and wire_type == _LEN:
            parts = [0, 0, 0]
            for part, part_type, value, _ in wire.fields(data, first, last, "semantic version"):
                if 1 <= part <= 3 and part_type == _VARINT:
                    parts[part - 1] = value
            return ".".join(str(part) for part in parts)
    return ""


# What the server reads of each request, by field number: (name, kind). Everything else is checked
# for well-formedness and skipped.
_TEXT, _TEXTS, _NODE, _ERROR, _VERSIONS = "text", "texts", "node", "error", "versions"
_SOTW_FIELDS = {
    1: ("version_info", _TEXT),
    2: ("node", _NODE),
    3: ("resource_names", _TEXTS),
    4: ("type_url", _TEXT),
    5: ("response_nonce", _TEXT),
    6: ("error", _ERROR),
}
_DELTA_FIELDS = {
    1: ("node", _NODE),
    2: ("type_url", _TEXT),
    3: ("subscribe", _TEXTS),
    4: ("unsubscribe", _TEXTS),
    5: ("initial_versions", _VERSIONS),
    6: ("response_nonce", _TEXT),
    7: ("error", _ERROR),
}


def _read(data: bytes, what: str, spec: Mapping[int, tuple[str, str]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    try:
        for number, wire_type, start, end in wire.fields(data, what=what):
            field_spec = spec.get(number)
            if field_spec is None:
                continue
            name, kind = field_spec
            _expect(wire_type, _LEN, number, what)
            if kind == _TEXT:
                found[name] = _text(data, start, end, what)
            elif kind == _TEXTS:
                _check_length(end - start, what)
                found.setdefault(name, []).append(_text(data, start, end, what))
            elif kind == _NODE:
                found[name] = _node(data, start, end)
            elif kind == _ERROR:
                found[name] = _error_detail(data, start, end)
            else:
                key, value = _map_entry(data, start, end)
                found.setdefault(name, {})[key] = value
    except wire.WireFormatError as err:
        raise MalformedRequest(str(err)) from None
    if not found.get("type_url"):
        raise MalformedRequest(f"{what}: type_url is required on an aggregated (ADS) stream")
    return found


def _check_length(length: int, what: str) -> None:
    if length > MAX_NAME_BYTES:
        raise MalformedRequest(
            f"{what}: a resource name of {length} bytes; kafka-xds serves none longer than {MAX_NAME_BYTES}"
        )


def _map_entry(data: bytes, start: int, end: int) -> tuple[str, str]:
    key = value = ""
    for number, wire_type, first, last in wire.fields(data, start, end, "initial_resource_versions"):
        if number in (1, 2):
            _expect(wire_type, _LEN, number, "initial_resource_versions")
            _check_length(last - first, "initial_resource_versions")
            text = _text(data, first, last, "initial_resource_versions")
            if number == 1:
                key = text
            else:
                value = text
    return key, value


def parse_sotw(data: bytes) -> SotwRequest:
    """Parse a DiscoveryRequest; raise MalformedRequest for anything that is not one."""
    found = _read(data, "DiscoveryRequest", _SOTW_FIELDS)
    return SotwRequest(
        found["type_url"],
        found.get("version_info", ""),
        frozenset(found.get("resource_names", ())),
        found.get("response_nonce", ""),
        found.get("error"),
        found.get("node"),
    )


def parse_delta(data: bytes) -> DeltaRequest:
    """Parse a DeltaDiscoveryRequest; raise MalformedRequest for anything that is not one."""
    found = _read(data, "DeltaDiscoveryRequest", _DELTA_FIELDS)
    return DeltaRequest(
        found["type_url"],
        frozenset(found.get("subscribe", ())),
        frozenset(found.get("unsubscribe", ())),
        MappingProxyType(found.get("initial_versions", {})),
        found.get("response_nonce", ""),
        found.get("error"),
        found.get("node"),
    )


class RequestParser:
    """Parses requests, once per distinct byte string.

    Every sidecar that received the same shared response ACKs it with the same bytes (same version,
    nonce and names), so a broker move to N sidecars costs one parse, not N. Requests that carry a
    node (one per stream) are not kept. Bounded by entries and by bytes held: the raw bytes and the
    parsed copy (its names are most of it)."""

    def __init__(self, max_entries: int = 512, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._sotw: OrderedDict[bytes, tuple[SotwRequest, int]] = OrderedDict()
        self._delta: OrderedDict[bytes, tuple[DeltaRequest, int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.held_bytes = 0
        self.hits = 0
        self.parses = 0

    def sotw(self, data: bytes) -> SotwRequest:
        found = self._sotw.get(data)
        if found is not None:
            self._sotw.move_to_end(data)
            self.hits += 1
            return found[0]
        self.parses += 1
        request = parse_sotw(data)
        if request.node is None:
            self._keep(self._sotw, data, request)
        return request

    def delta(self, data: bytes) -> DeltaRequest:
        found = self._delta.get(data)
        if found is not None:
            self._delta.move_to_end(data)
            self.hits += 1
            return found[0]
        self.parses += 1
        request = parse_delta(data)
        if request.node is None and not request.initial_versions:
            self._keep(self._delta, data, request)
        return request

    def _keep(self, cache: OrderedDict[bytes, tuple[_R, int]], data: bytes, request: _R) -> None:
        if len(data) > self._max_bytes // 8:
            return  # its parsed copy is larger still
        size = _held_size(data, request)
        if size > self._max_bytes // 8:
            return
        cache[data] = (request, size)
        self.held_bytes += size
        while self.held_bytes > self._max_bytes or len(self._sotw) + len(self._delta) > self._max_entries:
            if len(self._sotw) >= len(self._delta):
                _, (_, dropped) = self._sotw.popitem(last=False)
            else:
                _, (_, dropped) = self._delta.popitem(last=False)
            self.held_bytes -= dropped


_CACHE_ENTRY_BYTES = 200  # an OrderedDict entry with its links, and the (request, size) pair


def _held_size(data: bytes, request: SotwRequest | DeltaRequest) -> int:
    """The bytes a cached request holds: the raw bytes and the parsed copy, strings included (a cached
    request carries no node and no declared versions)."""
    texts: tuple[str, ...]
    if isinstance(request, SotwRequest):
        texts = (request.type_url, request.version_info, request.response_nonce)
        name_sets: tuple[frozenset[str], ...] = (request.resource_names,)
    else:
        texts = (request.type_url, request.response_nonce)
        name_sets = (request.subscribe, request.unsubscribe)
    size = _CACHE_ENTRY_BYTES + sys.getsizeof(data) + sys.getsizeof(request) + sum(map(sys.getsizeof, texts))
    if request.error is not None:
        size += sys.getsizeof(request.error) + sys.getsizeof(request.error.message)
    for names in name_sets:
        if names:
            size += sys.getsizeof(names) + sum(map(sys.getsizeof, names))
    return size


# -- writing ----------------------------------------------------------------------------------------


def any_message(type_url: str, payload: bytes) -> bytes:
    """A google.protobuf.Any holding `payload` (already a serialized message of `type_url`)."""
    return wire.optional_string(1, type_url) + (wire.length_delimited(2, payload) if payload else b"")


def control_plane(identifier: str) -> bytes:
    """A ControlPlane message, as DiscoveryResponse field 6 / DeltaDiscoveryResponse field 7 hold."""
    return wire.optional_string(1, identifier)


def sotw_response(
    type_url: str, version: str, resource_entries: Iterable[bytes], nonce: str, control_plane_bytes: bytes
) -> bytes:
    """A DiscoveryResponse. Each entry is a resource already encoded as field 2 (`sotw_entry`)."""
    return b"".join(
        (
            wire.optional_string(1, version),
            *resource_entries,
            wire.optional_string(4, type_url),
            wire.optional_string(5, nonce),
            wire.length_delimited(6, control_plane_bytes) if control_plane_bytes else b"",
        )
    )


def delta_response(
    type_url: str,
    system_version: str,
    resource_entries: Iterable[bytes],
    removed: Iterable[str],
    nonce: str,
    control_plane_bytes: bytes,
) -> bytes:
    """A DeltaDiscoveryResponse. Each entry is a Resource already encoded as field 2 (`delta_entry`)."""
    return b"".join(
        (
            wire.optional_string(1, system_version),
            *resource_entries,
            wire.optional_string(4, type_url),
            wire.optional_string(5, nonce),
            *(wire.length_delimited(6, name.encode()) for name in removed),
            wire.length_delimited(7, control_plane_bytes) if control_plane_bytes else b"",
        )
    )


def sotw_entry(type_url: str, payload: bytes) -> bytes:
    """One resource as DiscoveryResponse.resources (field 2): an Any."""
    return wire.length_delimited(2, any_message(type_url, payload))


def delta_entry(type_url: str, name: str, version: str, payload: bytes) -> bytes:
    """One resource as DeltaDiscoveryResponse.resources (field 2): a Resource{version, resource, name}."""
    resource = (
        wire.optional_string(1, version)
        + wire.length_delimited(2, any_message(type_url, payload))
        + wire.optional_string(3, name)
    )
    return wire.length_delimited(2, resource)
