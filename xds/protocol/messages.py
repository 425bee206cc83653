"""xDS requests and responses at the wire level: strict parsing of what the server reads, and encoding
of what it sends, without a typed message in between.

The server needs a handful of fields of each request, so it reads exactly those from the protobuf
wire format (validating every tag, length and UTF-8 string on the way) instead of building a
validated typed message per ACK, which was the largest cost of serving many sidecars. Identical
request bytes (every sidecar with the same subscription ACKs the same shared response with the same
bytes) are parsed once: see `RequestParser`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from xds import wire

WILDCARD = "*"
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

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5


def _fields(data: bytes | memoryview, what: str) -> Iterable[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) for each field of one message; strict."""
    position, end = 0, len(data)
    while position < end:
        tag, position = _varint(data, position, what)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise MalformedRequest(f"{what}: field number 0 at byte {position}")
        if wire_type == _VARINT:
            value, position = _varint(data, position, what)
            yield number, wire_type, value, position
        elif wire_type == _LEN:
            length, position = _varint(data, position, what)
            if position + length > end:
                raise MalformedRequest(f"{what}: field {number} runs past the end of the message")
            yield number, wire_type, position, position + length
            position += length
        elif wire_type == _I64:
            position += 8
            if position > end:
                raise MalformedRequest(f"{what}: field {number} is truncated")
            yield number, wire_type, position - 8, position
        elif wire_type == _I32:
            position += 4
            if position > end:
                raise MalformedRequest(f"{what}: field {number} is truncated")
            yield number, wire_type, position - 4, position
        else:  # groups are long deprecated and never used by xDS; 6 and 7 do not exist
            raise MalformedRequest(f"{what}: field {number} has unsupported wire type {wire_type}")


def _varint(data: bytes | memoryview, position: int, what: str) -> tuple[int, int]:
    result = shift = 0
    end = len(data)
    while True:
        if position >= end:
            raise MalformedRequest(f"{what}: truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift >= 64:
            raise MalformedRequest(f"{what}: varint longer than 10 bytes")


def _text(data: bytes, start: int, end: int, what: str) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest(f"{what}: a string field is not valid UTF-8") from None


def _expect(wire_type: int, expected: int, number: int, what: str) -> None:
    if wire_type != expected:
        raise MalformedRequest(f"{what}: field {number} has wire type {wire_type}, expected {expected}")


def _error_detail(data: bytes) -> ErrorDetail:
    code, message = 0, ""
    for number, wire_type, start, end in _fields(data, "error_detail"):
        if number == 1:
            _expect(wire_type, _VARINT, number, "error_detail")
            code = start if start < 1 << 31 else start - (1 << 64)  # int32, negative as 10-byte varint
        elif number == 2:
            _expect(wire_type, _LEN, number, "error_detail")
            message = _text(data, start, end, "error_detail.message")
    return ErrorDetail(code, message)


def _node(data: bytes) -> NodeInfo:
    node_id = cluster = agent = version = ""
    for number, wire_type, start, end in _fields(data, "node"):
        if number in (1, 2, 6, 7):
            _expect(wire_type, _LEN, number, "node")
            text = _text(data, start, end, "node")
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
            version = _semantic_version(data[start:end]) or version
    return NodeInfo(node_id, cluster, agent, version)


def _semantic_version(data: bytes) -> str:
    for number, wire_type, start, end in _fields(data, "node.user_agent_build_version"):
        if number == 1 and wire_type == _LEN:
            parts = [0, 0, 0]
            for part, part_type, value, _ in _fields(data[start:end], "semantic version"):
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
    for number, wire_type, start, end in _fields(data, what):
        field_spec = spec.get(number)
        if field_spec is None:
            continue
        name, kind = field_spec
        _expect(wire_type, _LEN, number, what)
        if kind == _TEXT:
            found[name] = _text(data, start, end, what)
        elif kind == _TEXTS:
            found.setdefault(name, []).append(_text(data, start, end, what))
        elif kind == _NODE:
            found[name] = _node(data[start:end])
        elif kind == _ERROR:
            found[name] = _error_detail(data[start:end])
        else:
            key, value = _map_entry(data[start:end])
            found.setdefault(name, {})[key] = value
    if not found.get("type_url"):
        raise MalformedRequest(f"{what}: type_url is required on an aggregated (ADS) stream")
    return found


def _map_entry(data: bytes) -> tuple[str, str]:
    key = value = ""
    for number, wire_type, start, end in _fields(data, "initial_resource_versions"):
        if number in (1, 2):
            _expect(wire_type, _LEN, number, "initial_resource_versions")
            text = _text(data, start, end, "initial_resource_versions")
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
    node (one per stream) are not kept. Bounded by entries and by bytes held."""

    def __init__(self, max_entries: int = 512, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._sotw: OrderedDict[bytes, SotwRequest] = OrderedDict()
        self._delta: OrderedDict[bytes, DeltaRequest] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self.hits = 0
        self.parses = 0

    def sotw(self, data: bytes) -> SotwRequest:
        found = self._sotw.get(data)
        if found is not None:
            self._sotw.move_to_end(data)
            self.hits += 1
            return found
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
            return found
        self.parses += 1
        request = parse_delta(data)
        if request.node is None and not request.initial_versions:
            self._keep(self._delta, data, request)
        return request

    def _keep(self, cache: OrderedDict[bytes, _R], data: bytes, request: _R) -> None:
        if len(data) > self._max_bytes // 8:
            return
        cache[data] = request
        self._bytes += len(data)
        while self._bytes > self._max_bytes or len(self._sotw) + len(self._delta) > self._max_entries:
            if len(self._sotw) >= len(self._delta):
                old, _ = self._sotw.popitem(last=False)
            else:
                old, _ = self._delta.popitem(last=False)
            self._bytes -= len(old)


# -- writing ----------------------------------------------------------------------------------------


def text_field(number: int, value: str) -> bytes:
    """A string field, left out when empty (as protobuf's default)."""
    return wire.string(number, value) if value else b""


def any_message(type_url: str, payload: bytes) -> bytes:
    """A google.protobuf.Any holding `payload` (already a serialized message of `type_url`)."""
    return text_field(1, type_url) + (wire.length_delimited(2, payload) if payload else b"")


def control_plane(identifier: str) -> bytes:
    """A ControlPlane message, as DiscoveryResponse field 6 / DeltaDiscoveryResponse field 7 hold."""
    return text_field(1, identifier)


def sotw_response(
    type_url: str, version: str, resource_entries: Iterable[bytes], nonce: str, control_plane_bytes: bytes
) -> bytes:
    """A DiscoveryResponse. Each entry is a resource already encoded as field 2 (`sotw_entry`)."""
    return b"".join(
        (
            text_field(1, version),
            *resource_entries,
            text_field(4, type_url),
            text_field(5, nonce),
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
            text_field(1, system_version),
            *resource_entries,
            text_field(4, type_url),
            text_field(5, nonce),
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
        text_field(1, version)
        + wire.length_delimited(2, any_message(type_url, payload))
        + text_field(3, name)
    )
    return wire.length_delimited(2, resource)
