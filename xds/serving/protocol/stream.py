"""One ADS stream as a pure state machine, shared by both protocol variants (no I/O, no clock).

The transport hands it each parsed request and each new snapshot's `Views`; it answers with
outcomes (`Sent`, `Acked`, `Nacked`, `Ignored`), in order. What both variants share lives here:
subscriptions, nonces and flow control (at most one unacknowledged response per type), what a stream
should have and in which order it gets it. What differs between state of the world and incremental
lives in one place, `Variant` (implemented in sotw.py and delta.py):

| | state of the world (SotW) | incremental (Delta) |
|---|---|---|
| subscription in a request | the complete list of names | names to add and to remove |
| a request with a stale nonce | ignored entirely | its subscription changes still apply |
| Listener / Cluster response | the complete set (absence deletes) | only what changed, plus removals |
| ClusterLoadAssignment / Secret response | only what changed, no removals | what changed, plus removals |
| a subscribed name that does not exist | remembered, sent when it appears | also listed as removed |
| reconnect | version_info: skip resending that version | initial_resource_versions: send the difference |
| first listener response | holds nothing back (absence deletes) | withholds listeners not ready yet |

See docs/protocol.md for every rule and the test that shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Protocol

from xds.serving.protocol.messages import DeltaRequest, ErrorDetail, NodeInfo, SotwRequest
from xds.serving.protocol.views import Body, Served, View, Views
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE, TYPE_ORDER

EMPTY: frozenset[str] = frozenset()
MAX_IGNORED_TYPES = 16  # distinct unknown type URLs remembered per stream
MAX_TYPE_URL_SHOWN = 200


# -- outcomes: what happened, for the transport to send, count and log ----------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    type_url: str
    body: Body
    initial: bool  # the first response of this type on this stream


@dataclass(frozen=True, slots=True)
class Acked:
    type_url: str
    version: str
    nonce: str


@dataclass(frozen=True, slots=True)
class Nacked:
    type_url: str
    rejected_version: str
    kept_version: str | None
    nonce: str
    message: str
    code: int


@dataclass(frozen=True, slots=True)
class Ignored:
    type_url: str
    reason: str


Outcome = Sent | Acked | Nacked | Ignored


class TooManyNames(Exception):
    """A request would make one type's subscription hold more names than the stream may: the stream
    ends (the transport says so with a status). Checked before the request changes anything."""

    def __init__(self, type_url: str, names: int, limit: int) -> None:
        super().__init__(f"{names} resource names of {type_url}; a stream may subscribe to at most {limit}")
        self.type_url, self.names, self.limit = type_url, names, limit


@dataclass(frozen=True, slots=True)
class Nack:
    version: str  # the version the client rejected
    nonce: str
    message: str
    code: int
    at: float


class SyncState(Enum):
    IN_SYNC = "in_sync"  # every requested type acknowledged at what the current snapshot says
    PENDING = "pending"  # a response awaits its ACK, or a change is yet to be sent
    NACKED = "nacked"  # the sidecar rejected our latest response of some type
    IDLE = "idle"  # connected, but has requested nothing yet


@dataclass(frozen=True, slots=True, eq=False)
class Change:
    """What one response carries: resources to (re)send and names the client must drop."""

    upserts: tuple[Served, ...]
    removed: tuple[str, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(served.name for served in self.upserts)


@dataclass(slots=True)
class TypeState:
    """What one stream knows about one resource type."""

    type_url: str
    requested: bool = False
    explicit: bool = False  # subscribed by name (or '*') once: the legacy empty-means-wildcard is over
    wildcard: bool = False
    names: frozenset[str] = EMPTY
    has: View | None = None  # what the client holds (ACKed, resumed or declared); None: unknown
    sent: View | None = None  # what the response awaiting its ACK brings the client to
    last_sent: View | None = None  # what the latest response brought, answered or not
    reported_version: str = ""  # the version the client last said it holds (state of the world)
    sent_nonce: str = ""
    sent_serial: int = 0  # of the latest response of this type on this stream (0: none yet)
    rejected: View | None = None  # what the client NACKed: never sent again
    nack: Nack | None = None  # the latest NACK, kept for operators after later ACKs
    must_send: frozenset[str] = EMPTY  # send these even if the client holds them (re-subscribed, warming)
    must_remove: frozenset[str] = EMPTY  # incremental: list these as removed (wildcard + name dropped)

    @property
    def awaiting_ack(self) -> bool:
        return self.sent is not None

    @property
    def acked_version(self) -> str | None:
        """The version the client holds: what it ACKed, or else what it reported (e.g. on a NACK)."""
        if self.has is not None and self.has.version:
            return self.has.version
        return self.reported_version or None

    @property
    def sent_version(self) -> str | None:
        return self.last_sent.version if self.last_sent is not None else None

    @property
    def is_rejected(self) -> bool:
        """Whether the client's answer to our latest response was a NACK."""
        return self.rejected is not None and self.sent is None


class Variant(Protocol):
    """What differs between state of the world and incremental (see the table above)."""

    name: str
    holds_first_listeners: bool

    def subscribe(
        self,
        stream: StreamProtocol,
        state: TypeState,
        request: SotwRequest | DeltaRequest,
        stale: bool,
        views: Views | None,
    ) -> None:
        """Apply what the request says about the subscription (`stale`: it answers a replaced
        response)."""
        ...

    def change(self, state: TypeState, target: View, views: Views) -> Change | None: ...

    def body(self, state: TypeState, target: View, change: Change, views: Views) -> Body: ...


class StreamProtocol:
    """The protocol state of one ADS stream. Feed it requests and snapshots; act on what it returns."""

    def __init__(
        self, variant: Variant, scope: frozenset[str] | None = None, max_names: int | None = None
    ) -> None:
        self.variant = variant
        self.scope = scope  # the Kafka clusters this sidecar may see; None: all
        self.max_names = max_names  # per type: names subscribed (or declared held); None: no limit
        self.node: NodeInfo | None = None
        self.types: dict[str, TypeState] = {type_url: TypeState(type_url) for type_url in TYPE_ORDER}
        self.ignored_types: dict[str, int] = {}
        self.ignored_overflow = 0

    # -- inputs ---------------------------------------------------------------------------------

    def receive(self, request: SotwRequest | DeltaRequest, views: Views | None, now: float) -> list[Outcome]:
        """Take one request; return what it caused, including the responses now due."""
        if self.node is None and request.node is not None:
            self.node = request.node  # only the first request is sure to carry the node
        state = self.types.get(request.type_url)
        if state is None:
            self._ignore_type(request.type_url)
            return [Ignored(request.type_url[:MAX_TYPE_URL_SHOWN], "type not served")]
        kind = self._classify(state, request.response_nonce, request.error)
        outcomes: list[Outcome] = []
        if kind in ("ack", "nack"):
            outcomes.append(self._acknowledge(state, kind, request.response_nonce, request.error, now))
        self.variant.subscribe(self, state, request, kind == "stale", views)
        outcomes.extend(self._pump(views))
        return outcomes

    def publish(self, views: Views | None) -> list[Outcome]:
        """A new snapshot was published: return what this stream must now be sent."""
        return list(self._pump(views))

    def sync_state(self, views: Views | None) -> SyncState:
        """Where this sidecar stands against the current snapshot (changes nothing the client sees)."""
        requested = [state for state in self.types.values() if state.requested]
        if not requested:
            return SyncState.IDLE
        if any(state.is_rejected for state in requested):
            return SyncState.NACKED
        if views is None:
            return SyncState.PENDING
        for state in requested:
            if state.awaiting_ack or state.has is None or state.must_send or state.must_remove:
                return SyncState.PENDING
            if self.target(state, views).version != state.has.version:
                return SyncState.PENDING
        return SyncState.IN_SYNC

    # -- what a request answers ------------------------------------------------------------------

    def _classify(self, state: TypeState, nonce: str, error: ErrorDetail | None) -> str:
        """'ack', 'nack', 'stale' or 'request', from the nonce a request answers.

        Nonces belong to one stream: a request cannot be stale (or an ACK) on a stream that has sent
        nothing of its type yet, whatever nonce it carries (clients re-send the last nonce of an
        earlier stream after reconnecting)."""
        if state.sent_serial == 0 or not nonce:
            return "request"
        if nonce != state.sent_nonce:
            return "stale"
        if state.sent is None:
            return "request"  # answers a response already acknowledged: a subscription update
        return "nack" if error is not None else "ack"

    def _acknowledge(
        self, state: TypeState, kind: str, nonce: str, error: ErrorDetail | None, now: float
    ) -> Outcome:
        """An ACK moves the client to what was sent; a NACK keeps it where it was and records why."""
        sent = state.sent
        assert sent is not None
        state.sent = None
        if kind == "ack":
            state.has = sent
            state.rejected = None
            return Acked(state.type_url, sent.version, nonce)
        assert error is not None
        state.rejected = sent
        state.nack = Nack(sent.version, nonce, error.message, error.code, now)
        return Nacked(state.type_url, sent.version, state.acked_version, nonce, error.message, error.code)

    def check_names(self, state: TypeState, names: int) -> None:
        """Raise TooManyNames when `names` is more than one type's subscription may hold."""
        if self.max_names is not None and names > self.max_names:
            raise TooManyNames(state.type_url, names, self.max_names)

    def _ignore_type(self, type_url: str) -> None:
        shown = type_url[:MAX_TYPE_URL_SHOWN]
        if shown in self.ignored_types:
            self.ignored_types[shown] += 1
        elif len(self.ignored_types) < MAX_IGNORED_TYPES:
            self.ignored_types[shown] = 1
        else:
            self.ignored_overflow += 1

    # -- what is due, in make-before-break order ------------------------------------------------

    def _pump(self, views: Views | None) -> list[Outcome]:
        """Whatever is due, in order: secrets, clusters, endpoints, listeners. A type whose response awaits
        its ACK sends nothing more, and a later type never overtakes a pending change of an earlier
        one."""
        if views is None:
            return []  # nothing is pushed before every source has synced once
        outcomes: list[Outcome] = []
        for type_url in TYPE_ORDER:
            state = self.types[type_url]
            if not state.requested:
                continue  # order only what the client subscribes to
            target = self.target(state, views)
            if state.sent is not None:
                if target.version != state.sent.version or state.must_send or state.must_remove:
                    break  # more is due once the client answers; later types wait for it
                continue
            if state.must_send or state.must_remove:
                self._bound_pending(state, target)
            if state.rejected is not None and target.version == state.rejected.version:
                continue  # the client rejected exactly this: only new content is sent
            change = self.variant.change(state, target, views)
            if change is None:
                if (
                    state.has is not None
                    and state.has is not target
                    and state.rejected is None
                    and not state.must_send
                    and not state.must_remove
                ):
                    state.has = target  # the client holds exactly this already: share the view
                continue
            outcomes.append(self._send(state, target, change, views))
        return outcomes

    def _bound_pending(self, state: TypeState, target: View) -> None:
        """Names to (re)send or remove never outgrow the current subscription."""
        subscribed = state.names | target.resources.keys() | target.absent
        state.must_send &= subscribed
        if state.must_remove and not state.wildcard:
            state.must_remove &= state.names | target.absent

    def _send(self, state: TypeState, target: View, change: Change, views: Views) -> Sent:
        body = self.variant.body(state, target, change, views)
        initial = state.sent_serial == 0
        state.last_sent = target
        state.sent_nonce, state.sent_serial = body.nonce, body.serial
        if state.must_send:
            state.must_send = state.must_send - change.names - frozenset(change.removed)
        state.must_remove = EMPTY
        if state.type_url == CLUSTER_TYPE and change.upserts:
            # A new or changed cluster warms only when its endpoints arrive: send them after it, even
            # if they did not change.
            endpoints = self.types[ENDPOINT_TYPE]
            changed = views.memo(("changed", state.has, target), lambda: _changed(state.has, target))
            if changed:
                endpoints.must_send = changed if not endpoints.must_send else endpoints.must_send | changed
        state.sent = target
        return Sent(state.type_url, body, initial)

    def target(self, state: TypeState, views: Views) -> View:
        """What this stream should have of one type now: the shared view of its subscription, with
        the two per-stream rules of make-before-break applied when they matter."""
        base = views.target(state.type_url, self.scope, state.wildcard, state.names)
        if state.type_url in (SECRET_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE):
            return self._keep_in_use(state, base, views)
        if state.type_url != LISTENER_TYPE:
            return base
        if state.has is None and self.variant.holds_first_listeners:
            return self._hold_unready_listeners(state, base, views)
        if state.has is not None and state.has.version != base.version:
            return self._hold_unready_listeners(state, base, views)
        return base

    def _keep_in_use(self, state: TypeState, base: View, views: Views) -> View:
        """A cluster (and its endpoints) stays while a listener the client may still have uses it; a
        secret, while a cluster it may still have uses it."""
        kind = SECRET_TYPE if state.type_url == SECRET_TYPE else CLUSTER_TYPE
        users = self.types[CLUSTER_TYPE if kind == SECRET_TYPE else LISTENER_TYPE]
        has, sent = users.has, users.sent
        if has is None and sent is None:
            return base
        # Streams in the same state hold the same view objects: one computation for all of them.
        missing = views.memo(
            ("missing", kind, has, sent, self.scope),
            lambda: _missing(has, sent, views.scoped(kind, self.scope)),
        )
        if not missing or (not state.wildcard and not (missing & state.names)):
            return base
        wanted = missing if state.wildcard else missing & state.names
        kept: dict[str, Served] = {}
        retained: set[str] = set()
        for name in sorted(wanted):
            served = _held_resource(state, name)
            if served is not None:
                kept[name] = served
            else:
                retained.add(name)
        key = ("kept", base, tuple(kept.values()), frozenset(retained))
        return views.memo(key, lambda: _with(base, kept, frozenset(retained)))

    def _hold_unready_listeners(self, state: TypeState, base: View, views: Views) -> View:
        """A new listener (or one forwarding elsewhere) goes out only once the clusters it uses were
        accepted and sent their endpoints and secrets, so no connection lands on a cluster still
        warming; until then the client keeps the listener's previous version, or does not get it
        yet. Only the types the client subscribes to are waited for.

        What is held depends only on views and on what the client holds of each type, so streams in
        the same state share one answer (and the encoded response that follows from it)."""
        others = tuple(
            (other.requested, other.has, other.sent, other.must_send)
            for type_url, other in self.types.items()
            if type_url != LISTENER_TYPE
        )
        key = ("held", base, state.has, others)
        return views.memo(key, lambda: self._held(state, base, views))

    def _held(self, state: TypeState, base: View, views: Views) -> View:
        clusters, endpoints, secrets = (
            self.types[CLUSTER_TYPE],
            self.types[ENDPOINT_TYPE],
            self.types[SECRET_TYPE],
        )
        available = views.scoped(CLUSTER_TYPE, self.scope)
        has = state.has
        held: dict[str, Served | None] = {}
        for name, listener in base.resources.items():
            previous = has.resources.get(name) if has is not None else None
            if has is not None and has.versions.get(name) == listener.version:
                continue
            if previous is not None and previous.references == listener.references:
                continue
            if all(
                _ready(reference, clusters, endpoints, secrets, available)
                for reference in listener.references
            ):
                continue
            held[name] = previous
        if not held:
            return base
        resources = {name: served for name, served in base.resources.items() if name not in held}
        resources.update({name: served for name, served in held.items() if served is not None})
        view = View(base.type_url, MappingProxyType(dict(sorted(resources.items()))), base.absent)
        view.withheld = frozenset(held)
        return view


def _uses(held: View) -> frozenset[str]:
    """What the resources a client holds reference. Of the clusters it declares on an incremental
    reconnect only names and versions are known, not the secrets they use: none are kept for them
    (resources gone entirely leave in the order the client re-subscribes)."""
    if held.type_url == CLUSTER_TYPE and not held.resources:
        return EMPTY
    return held.references


def _missing(has: View | None, sent: View | None, available: Mapping[str, Served]) -> frozenset[str]:
    """What the resources a client holds or was sent use that `available` no longer has."""
    in_use = frozenset().union(*(_uses(view) for view in (has, sent) if view is not None))
    return frozenset(name for name in in_use if name not in available)


def news(has: View, target: View, must_send: frozenset[str]) -> tuple[Served, ...]:
    """The resources of `target` to send a client holding `has`: new, changed, or due again."""
    held = has.versions
    return tuple(
        served
        for name, served in target.resources.items()
        if held.get(name) != served.version or name in must_send
    )


def _changed(has: View | None, target: View) -> frozenset[str]:
    """Names in `target` that are new or differ from what the client holds."""
    if has is None:
        return frozenset(target.resources)
    held = has.versions
    return frozenset(name for name, served in target.resources.items() if held.get(name) != served.version)


def _ready(
    cluster: str,
    clusters: TypeState,
    endpoints: TypeState,
    secrets: TypeState,
    available: Mapping[str, Served],
) -> bool:
    if clusters.requested and (clusters.has is None or cluster not in clusters.has.versions):
        return False
    if endpoints.requested and not _sent(cluster, endpoints):
        return False
    if secrets.requested:
        held = _held_resource(clusters, cluster)  # its secrets are those of the cluster it gets
        used = held if held is not None else available.get(cluster)
        if used is not None and not all(_sent(secret, secrets) for secret in used.references):
            return False
    return True


def _sent(name: str, state: TypeState) -> bool:
    """Whether the client was sent the resource, or holds it, and is not due to get it again."""
    if name in state.must_send:
        return False
    return any(name in view.versions for view in (state.has, state.sent) if view is not None)


def _held_resource(state: TypeState, name: str) -> Served | None:
    for view in (state.sent, state.has):
        if view is not None and name in view.resources:
            return view.resources[name]
    return None


def _with(base: View, kept: Mapping[str, Served], retained: frozenset[str]) -> View:
    resources = dict(base.resources)
    resources.update(kept)
    absent = base.absent - kept.keys() - retained
    return View(base.type_url, MappingProxyType(dict(sorted(resources.items()))), absent, retained)
