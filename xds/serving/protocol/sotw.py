"""State of the world (SotW) ADS: what differs from the incremental variant (see stream.py)."""

from __future__ import annotations

from xds.serving.protocol.messages import WILDCARD, DeltaRequest, SotwRequest, sotw_response
from xds.serving.protocol.stream import EMPTY, Change, StreamProtocol, TypeState, news
from xds.serving.protocol.views import Body, View, Views
from xds.shared.resource_types import CLUSTER_TYPE, LISTENER_TYPE

# Listener and Cluster responses hold the complete set, where absence means deletion. Other types may
# hold a subset, and omitting a resource deletes nothing, so only new or changed ones are news.
FULL_STATE_TYPES = frozenset({LISTENER_TYPE, CLUSTER_TYPE})


class Sotw:
    name = "sotw"
    holds_first_listeners = False  # absence from a complete listener set would delete the listener

    def subscribe(
        self,
        stream: StreamProtocol,
        state: TypeState,
        request: SotwRequest | DeltaRequest,
        stale: bool,
        views: Views | None,
    ) -> None:
        assert isinstance(request, SotwRequest)
        if stale:
            return  # answers a response a newer one replaced: the newer one's answer will follow
        if request.version_info:
            state.reported_version = request.version_info
        first = not state.requested
        names = request.resource_names
        stream.check_names(state, len(names) - (WILDCARD in names))
        _subscribe(state, names)
        if first and request.version_info and views is not None:
            _resume(stream, state, request.version_info, views)

    def change(self, state: TypeState, target: View, views: Views) -> Change | None:
        has = state.has
        if state.type_url in FULL_STATE_TYPES:
            if (
                has is not None
                and has.version == target.version
                and not (state.must_send & target.resources.keys())
            ):
                return None
            return views.memo(("sotw-full", target), lambda: Change(tuple(target.resources.values())))
        if has is None:
            if not target.resources:
                return None  # names that do not exist yet are remembered, sent when they appear
            return views.memo(("sotw-full", target), lambda: Change(tuple(target.resources.values())))
        must_send = state.must_send
        change = views.memo(
            ("sotw-news", has, target, must_send), lambda: Change(news(has, target, must_send))
        )
        return change if change.upserts else None

    def body(self, state: TypeState, target: View, change: Change, views: Views) -> Body:
        return views.body(
            ("sotw-body", target, change), lambda: _encode(target, change, views), state.sent_serial
        )


def _subscribe(state: TypeState, names: frozenset[str]) -> None:
    """`*`, or an empty list while the client never named a resource (legacy), means wildcard; an
    empty list after names unsubscribes everything. Newly requested names are sent even if the
    client had them before."""
    state.requested = True
    if WILDCARD in names:
        wildcard, explicit = True, names - {WILDCARD}
        state.explicit = True
    elif names:
        wildcard, explicit = False, names
        state.explicit = True
    else:
        wildcard, explicit = not state.explicit, EMPTY
    if state.must_send and explicit is not state.names:
        state.must_send -= state.names - explicit  # no longer asked for: not due either
    added = explicit - state.names
    if added:
        state.must_send = added if not state.must_send else state.must_send | added
    state.wildcard, state.names = wildcard, explicit


def _resume(stream: StreamProtocol, state: TypeState, version: str, views: Views) -> None:
    """A client reconnecting with the version we would send now already has it: skip resending.
    Safe because the version is a hash of exactly the names and contents it subscribes to."""
    target = stream.target(state, views)
    if target.version == version:
        state.has = target
        state.must_send = EMPTY


def _encode(target: View, change: Change, views: Views) -> Body:
    serial, nonce = views.nonces.next()
    data = sotw_response(
        target.type_url,
        target.version,
        (served.sotw_entry for served in change.upserts),
        nonce,
        views.control_plane,
    )
    return Body(data, nonce, serial, target.version, len(change.upserts), 0)
