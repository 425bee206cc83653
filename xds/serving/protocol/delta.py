"""Incremental (Delta) ADS: what differs from state of the world (see stream.py)."""

from __future__ import annotations

from xds.serving.protocol.messages import WILDCARD, DeltaRequest, SotwRequest, delta_response
from xds.serving.protocol.stream import Change, StreamProtocol, TypeState, news
from xds.serving.protocol.views import Body, View, Views


class Delta:
    name = "delta"
    holds_first_listeners = True  # absence deletes nothing here, so a new listener can wait

    def subscribe(
        self,
        stream: StreamProtocol,
        state: TypeState,
        request: SotwRequest | DeltaRequest,
        stale: bool,
        views: Views | None,
    ) -> None:
        assert isinstance(request, DeltaRequest)
        # Subscription changes are honoured even when the nonce is stale.
        first = not state.requested
        _subscribe(stream, state, request, views)
        if first and request.initial_versions:
            declared = View.declared(state.type_url, request.initial_versions)
            state.has = declared if state.wildcard else declared.restricted(state.names)

    def change(self, state: TypeState, target: View, views: Views) -> Change | None:
        has = state.has
        if has is None:
            if not (state.wildcard or state.names):
                return None  # subscribed to nothing
            if target.withheld:
                return None  # a first response goes out complete: not empty now and whole later
            # The first response goes out even when empty: the client waits for it to initialise.
            return views.memo(
                ("delta-initial", target),
                lambda: Change(tuple(target.resources.values()), tuple(sorted(target.absent))),
            )
        must_send, must_remove = state.must_send, state.must_remove
        change = views.memo(
            ("delta-news", has, target, must_send, must_remove),
            lambda: _news(has, target, must_send, must_remove),
        )
        return change if change.upserts or change.removed else None

    def body(self, state: TypeState, target: View, change: Change, views: Views) -> Body:
        return views.body(
            ("delta-body", target, change), lambda: _encode(target, change, views), state.sent_serial
        )


def _subscribe(stream: StreamProtocol, state: TypeState, request: DeltaRequest, views: Views | None) -> None:
    """`*` subscribes to everything, and (legacy) so does a stream that never subscribed by name.
    Names add and drop one by one; a name (or `*`) subscribed again is sent again even if unchanged;
    with a wildcard, a dropped name is resent (if the wildcard covers it) or listed as removed, so the
    client knows whether to keep it. What is due to be sent or removed never outgrows the
    subscription, even while a response awaits its ACK; the names and the removals due count against
    the stream's limit."""
    first = not state.requested
    subscribe, unsubscribe = request.subscribe, request.unsubscribe
    wildcard = state.wildcard or WILDCARD in subscribe or (first and not subscribe and not unsubscribe)
    if WILDCARD in unsubscribe:
        wildcard = False
    named = subscribe - {WILDCARD}
    dropped = unsubscribe - {WILDCARD}
    names = (state.names | named) - dropped if named or dropped else state.names
    must_send, must_remove = state.must_send, state.must_remove
    if dropped and must_send:
        must_send = must_send - dropped
    # A name subscribed again is sent again, but not one the client declares it holds on reconnect:
    # the difference between what it declares and what it should have goes out anyway.
    resend = named - request.initial_versions.keys() if request.initial_versions else named
    if WILDCARD in subscribe and views is not None and (state.has is not None or state.sent is not None):
        # `*` subscribed again resends everything it covers, as a name subscribed again does (a first
        # request has been sent nothing; what it declares to hold gets only the difference).
        resend = resend | _every_name(views, state.type_url, stream.scope)
    if resend:
        must_send = resend if not must_send else must_send | resend
    if dropped and wildcard:
        available = views.scoped(state.type_url, stream.scope) if views is not None else {}
        covered = frozenset(name for name in dropped if name in available)
        if covered:
            must_send |= covered
        uncovered = (dropped - covered) & state.names  # a name never subscribed needs no removal
        if uncovered:
            must_remove |= uncovered
    if named and must_remove:
        must_remove = must_remove - named
    declared = len(request.initial_versions) if first else 0
    stream.check_names(state, max(len(names) + len(must_remove), declared))
    state.requested = True
    if subscribe:
        state.explicit = True
    state.wildcard, state.names = wildcard, names
    state.must_send, state.must_remove = must_send, must_remove
    if state.has is not None and not wildcard and (dropped or WILDCARD in unsubscribe):
        state.has = state.has.restricted(names)  # the client forgets what it dropped: so do we


def _every_name(views: Views, type_url: str, scope: frozenset[str] | None) -> frozenset[str]:
    """The names a wildcard covers, one shared set per type and scope."""
    return views.memo(("names", type_url, scope), lambda: frozenset(views.scoped(type_url, scope)))


def _news(has: View, target: View, must_send: frozenset[str], must_remove: frozenset[str]) -> Change:
    held = has.versions
    upserts = news(has, target, must_send)
    removed = {name for name in held if name not in target.resources and name not in target.retained}
    removed |= target.absent - has.absent
    removed |= must_send & target.absent
    removed |= {name for name in must_remove if name not in target.resources}
    return Change(upserts, tuple(sorted(removed)))


def _encode(target: View, change: Change, views: Views) -> Body:
    serial, nonce = views.nonces.next()
    data = delta_response(
        target.type_url,
        target.version,
        (served.delta_entry for served in change.upserts),
        change.removed,
        nonce,
        views.control_plane,
    )
    return Body(data, nonce, serial, target.version, len(change.upserts), len(change.removed))
