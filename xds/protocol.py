"""One state-of-the-world ADS stream as a pure state machine (no I/O, no clock, no asyncio).

The transport hands it each DiscoveryRequest and each new snapshot; it answers with the responses to
send, in order. Every rule of Envoy's "xDS REST and gRPC protocol" that applies to SotW ADS lives
here, so each one has a unit test (tests/test_protocol.py). The rule ids (S1..S15) are those of
shared/reference/xds-protocol-rules.md.

Flow control follows the protocol's request/response pairing: per type, at most one response is
unacknowledged at a time (the next one waits for the ACK or NACK), which is also what makes
"remove the listener before its cluster" a real guarantee rather than a hope about ordering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

from xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, TYPE_ORDER, BuiltResource
from xds.snapshot import Snapshot, set_version

WILDCARD = "*"
# LDS and CDS responses hold the complete set, where absence means deletion (S7, S9). Other types
# may hold a subset, and omitting a resource deletes nothing, so only new or changed ones are news.
FULL_STATE_TYPES = frozenset({LISTENER_TYPE, CLUSTER_TYPE})
_EMPTY: Mapping[str, BuiltResource] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Response:
    """One DiscoveryResponse to send: its resources are pre-serialized and shared by every stream."""

    type_url: str
    version: str
    nonce: str
    resources: tuple[BuiltResource, ...]


@dataclass(frozen=True, slots=True)
class Nack:
    version: str  # the version the client rejected
    nonce: str
    message: str
    code: int
    at: float


class SyncState(Enum):
    IN_SYNC = "in_sync"  # every requested type ACKed at what the current snapshot says
    PENDING = "pending"  # a response awaits its ACK, or a change is yet to be sent
    NACKED = "nacked"  # the sidecar rejected our latest response of some type


class RequestKind(Enum):
    FIRST = "first"  # the client has no response of this type on this stream (empty nonce)
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"  # answers a response that a newer one has replaced: ignored (S11)


# (nonce names our latest response of that type?, error_detail set?) -> what the request is (S1, S4, S11)
_CLASSIFY: Mapping[tuple[str, bool], RequestKind] = {
    ("empty", False): RequestKind.FIRST,
    ("empty", True): RequestKind.FIRST,
    ("latest", False): RequestKind.ACK,
    ("latest", True): RequestKind.NACK,
    ("other", False): RequestKind.STALE,
    ("other", True): RequestKind.STALE,
}


@dataclass
class TypeState:
    """What one stream knows about one resource type."""

    type_url: str
    requested: bool = False
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    sent_version: str | None = None
    sent_nonce: str | None = None
    sent: Mapping[str, BuiltResource] = field(default_factory=lambda: _EMPTY)
    awaiting_ack: bool = False
    acked_version: str | None = None
    acked: Mapping[str, BuiltResource] = field(default_factory=lambda: _EMPTY)
    nack: Nack | None = None  # the latest NACK, kept for operators after later ACKs
    must_send: frozenset[str] = frozenset()  # names to send even if unchanged (S6, S12)

    @property
    def rejected(self) -> bool:
        """Whether the client's answer to our latest response was a NACK."""
        return self.nack is not None and self.nack.version == self.sent_version and not self.awaiting_ack


class StreamProtocol:
    """The protocol state of one ADS stream. Feed it requests and snapshots; send what it returns."""

    def __init__(self) -> None:
        self.node: Node | None = None
        self.types: dict[str, TypeState] = {type_url: TypeState(type_url) for type_url in TYPE_ORDER}
        self.ignored_types: set[str] = set()
        self._nonces = 0

    def receive(self, request: DiscoveryRequest, snapshot: Snapshot | None, now: float) -> list[Response]:
        """Take one request; return the responses it makes due, possibly none."""
        if self.node is None and request.node is not None:
            self.node = request.node  # S2: only the first request is sure to carry the node
        state = self.types.get(request.type_url)
        if state is None:
            self.ignored_types.add(request.type_url)  # a type this server does not serve
            return []
        kind = self._classify(state, request)
        if kind is RequestKind.STALE:
            return []
        if kind is RequestKind.ACK:
            state.awaiting_ack = False
            state.acked_version = request.version_info
            state.acked = state.sent
        elif kind is RequestKind.NACK:
            state.awaiting_ack = False
            detail = request.error_detail
            assert detail is not None
            state.nack = Nack(
                state.sent_version or "", request.response_nonce, detail.message, detail.code, now
            )
            if request.version_info:
                state.acked_version = request.version_info  # the client stays on its last good version
        self._subscribe(state, request)
        if kind is RequestKind.FIRST:
            self._resume(state, request, snapshot)
        return self._pump(snapshot)

    def snapshot_changed(self, snapshot: Snapshot | None) -> list[Response]:
        """A new snapshot was published: return what this stream must now be sent."""
        return self._pump(snapshot)

    def sync_state(self, snapshot: Snapshot | None) -> SyncState:
        """Where this sidecar stands against `snapshot`, for operators (does not change any state)."""
        requested = [state for state in self.types.values() if state.requested]
        if any(state.rejected for state in requested):
            return SyncState.NACKED
        if snapshot is None:
            return SyncState.PENDING
        for state in requested:
            if state.awaiting_ack or state.acked_version != set_version(
                self._desired(state, snapshot).values()
            ):
                return SyncState.PENDING
        return SyncState.IN_SYNC

    def _classify(self, state: TypeState, request: DiscoveryRequest) -> RequestKind:
        if not request.response_nonce:
            nonce = "empty"
        elif request.response_nonce == state.sent_nonce:
            nonce = "latest"
        else:
            nonce = "other"
        return _CLASSIFY[(nonce, request.error_detail is not None)]

    def _subscribe(self, state: TypeState, request: DiscoveryRequest) -> None:
        """S6: `*`, or an empty first request (legacy), means wildcard; an empty list after names
        unsubscribes everything. Newly requested names are sent even if the client had them before."""
        names = frozenset(request.resource_names)
        first = not state.requested
        state.requested = True
        if WILDCARD in names:
            wildcard = True
            names -= {WILDCARD}
        elif not names:
            wildcard = first or (state.wildcard and not state.names)
        else:
            wildcard = False
        if not wildcard:
            state.must_send |= names - (frozenset() if state.wildcard else state.names)
        state.wildcard, state.names = wildcard, names

    def _resume(self, state: TypeState, request: DiscoveryRequest, snapshot: Snapshot | None) -> None:
        """S3: a client reconnecting with the version we would send now already has it: skip resending."""
        if snapshot is None or not request.version_info or state.sent_version is not None:
            return
        desired = self._desired(state, snapshot)
        if set_version(desired.values()) == request.version_info:
            state.sent_version = state.acked_version = request.version_info
            state.sent = state.acked = MappingProxyType(desired)
            state.must_send = frozenset()

    def _pump(self, snapshot: Snapshot | None) -> list[Response]:
        """Whatever is due, in make-before-break order: clusters, endpoints, listeners (S13)."""
        if snapshot is None:
            return []  # nothing is pushed before every source has synced once
        responses: list[Response] = []
        for type_url in TYPE_ORDER:
            state = self.types[type_url]
            if not state.requested:
                continue
            desired = self._desired(state, snapshot)
            version = set_version(desired.values())
            if state.type_url in FULL_STATE_TYPES:
                due = version != state.sent_version
            else:
                due = any(
                    (sent := state.sent.get(name)) is None or sent.version != resource.version
                    for name, resource in desired.items()
                )
            due = due or bool(state.must_send & desired.keys())
            if not due:
                continue
            if state.awaiting_ack or not (state.wildcard or state.names):
                # A type later in the order must not overtake this pending change (S13).
                if state.awaiting_ack:
                    break
                continue
            responses.append(self._send(state, version, desired))
        return responses

    def _desired(self, state: TypeState, snapshot: Snapshot) -> dict[str, BuiltResource]:
        """What this stream should have of one type now.

        LDS and CDS hold the complete set (absence means deletion, S7 and S9); EDS holds what is
        subscribed and exists (S10: names that do not exist yet are remembered, sent when they appear).
        """
        available = dict(snapshot.resources(state.type_url))
        if state.type_url in (CLUSTER_TYPE, ENDPOINT_TYPE):
            # S13: a cluster (and its endpoints) stays while a listener the client may still have uses it.
            for name in self._clusters_in_use() - snapshot.resources(CLUSTER_TYPE).keys():
                kept = state.sent.get(name)
                if kept is not None:
                    available[name] = kept
        elif state.type_url == LISTENER_TYPE:
            self._hold_unready_listeners(state, available)
        if state.wildcard:
            return available
        return {name: available[name] for name in sorted(state.names) if name in available}

    def _hold_unready_listeners(self, state: TypeState, available: dict[str, BuiltResource]) -> None:
        """S12/S13: a new listener goes out only once its clusters were accepted and sent their
        endpoints, so no connection lands on a cluster that is still warming; until then the client
        keeps the listener's previous version or does not get it yet. The first LDS response of a
        stream holds nothing back: the client may have those listeners, and absence would delete them."""
        if state.sent_version is None:
            return
        clusters, endpoints = self.types[CLUSTER_TYPE], self.types[ENDPOINT_TYPE]
        for name, listener in list(available.items()):
            previous = state.sent.get(name)
            if previous is not None and previous.references == listener.references:
                continue
            if all(ref in clusters.acked and ref in endpoints.sent for ref in listener.references):
                continue
            if previous is not None:
                available[name] = previous
            else:
                del available[name]

    def _clusters_in_use(self) -> frozenset[str]:
        listeners = self.types[LISTENER_TYPE]
        in_use: set[str] = set()
        for sent in (listeners.sent, listeners.acked):
            for listener in sent.values():
                in_use |= listener.references
        return frozenset(in_use)

    def _send(self, state: TypeState, version: str, desired: Mapping[str, BuiltResource]) -> Response:
        if state.type_url == CLUSTER_TYPE:
            # S12: a new or changed cluster warms only when its endpoints arrive: send them after it.
            changed = {
                name
                for name, resource in desired.items()
                if (before := state.sent.get(name)) is None or before.version != resource.version
            }
            endpoints = self.types[ENDPOINT_TYPE]
            endpoints.must_send |= changed
        self._nonces += 1
        nonce = str(self._nonces)
        state.sent_version, state.sent_nonce = version, nonce
        state.sent = MappingProxyType(dict(desired))
        state.awaiting_ack = True
        state.must_send -= desired.keys()
        return Response(state.type_url, version, nonce, tuple(desired.values()))
