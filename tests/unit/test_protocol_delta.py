"""The incremental (Delta) ADS state machine, one rule per test (see docs/protocol.md).

Same harness as tests/unit/test_protocol.py: requests encoded as Envoy encodes them, responses decoded
as a client would. What both variants share (ordering, warming, NACKs) is tested here again in its
incremental form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from envoy_data_plane.envoy.config.core.v3 import Node

from tests.support.protocol_world import (
    CDS,
    EDS,
    LDS,
    NOW,
    RENEWED_TLS,
    SDS,
    TLS,
    DeltaSidecar,
    World,
    delta_ack,
    delta_stream,
    name,
    only,
    responses,
    secret_names,
    types_of,
)
from tests.support.xds_wire import Decoded
from tests.support.xds_wire import delta_request as request
from xds.serving.protocol import Acked, Delta, Nacked, Outcome, Sent, StreamProtocol, SyncState, TooManyNames


def sent(outcomes: Sequence[Outcome]) -> list[Decoded]:
    return responses(outcomes, delta=True)


def one(outcomes: Sequence[Outcome], type_url: str | None = None) -> Decoded:
    return only(outcomes, type_url, delta=True)


def connected(world: World, brokers: Mapping[int, str | None]) -> DeltaSidecar:
    sidecar = DeltaSidecar(delta_stream(), world.views(brokers))
    sidecar.connect()
    return sidecar


# Nonces, ACK/NACK, versions -----------------------------------------------------------------------


def test_every_response_has_a_nonce_and_the_type_version_as_system_version_info():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    response = one(stream.receive(request(CDS, ["*"]), views, NOW))
    assert response.nonce and response.version == views.snapshot.versions[CDS]


def test_each_resource_carries_its_own_content_hash_as_version():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    response = one(stream.receive(request(CDS, ["*"]), views, NOW))
    served = views.snapshot.resources(CDS)
    assert response.versions == {resource: served[resource].version for resource in served}


def test_ack_and_nack_are_told_apart_by_error_detail():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    first = one(stream.receive(request(CDS, ["*"]), views, NOW))
    assert stream.receive(delta_ack(first), views, NOW) == [Acked(CDS, first.version, first.nonce)]
    moved = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    second = one(stream.publish(moved), CDS)
    outcome = stream.receive(request(CDS, nonce=second.nonce, error="no"), moved, NOW)
    assert outcome == [Nacked(CDS, second.version, first.version, second.nonce, "no", 3)]


def test_a_nacked_version_is_never_resent():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    rejected = one(stream.receive(request(CDS, ["*"]), views, NOW))
    stream.receive(request(CDS, nonce=rejected.nonce, error="bad"), views, NOW)
    assert stream.publish(world.views({1: "10.0.0.1"})) == []
    assert stream.receive(request(CDS, nonce=rejected.nonce, error="bad"), views, NOW) == []
    assert stream.sync_state(views) is SyncState.NACKED


def test_new_content_after_a_nack_is_sent():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    rejected = one(stream.receive(request(CDS, ["*"]), views, NOW))
    stream.receive(request(CDS, nonce=rejected.nonce, error="bad"), views, NOW)
    fixed = one(stream.publish(world.views({1: "10.0.0.1", 2: "10.0.0.2"})))
    assert fixed.names == [name(1), name(2)]  # the client holds nothing it accepted


def test_nothing_is_sent_before_the_first_snapshot():
    stream = delta_stream()
    assert stream.receive(request(CDS, ["*"]), None, NOW) == []
    assert one(stream.publish(World().views({1: "10.0.0.1"})), CDS).names == [name(1)]


def test_a_nonce_from_an_earlier_stream_is_a_first_request():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    response = one(stream.receive(request(CDS, ["*"], nonce="earlier-9", node=Node(id="a")), views, NOW))
    assert response.names == [name(1)]


# Wildcard and names -------------------------------------------------------------------------------


def test_an_empty_first_request_is_a_wildcard_subscription():
    world, stream = World(), delta_stream()
    response = one(stream.receive(request(CDS), world.views({1: "10.0.0.1", 2: "10.0.0.2"}), NOW))
    assert stream.types[CDS].wildcard and response.names == [name(1), name(2)]


def test_the_first_wildcard_response_goes_out_even_when_empty():
    world, stream = World(), delta_stream()
    response = one(stream.receive(request(CDS, ["*"]), world.views({}), NOW))
    assert response.names == [] and response.removed == []


def test_a_name_subscribed_alongside_the_wildcard_keeps_the_wildcard():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    first = one(stream.receive(request(CDS, ["*"]), views, NOW))
    stream.receive(delta_ack(first), views, NOW)
    stream.receive(request(CDS, [name(1)]), views, NOW)
    assert stream.types[CDS].wildcard and stream.types[CDS].names == {name(1)}


def test_unsubscribing_the_wildcard_keeps_the_named_subscriptions():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    first = one(stream.receive(request(CDS, ["*", name(1)]), views, NOW))
    stream.receive(delta_ack(first), views, NOW)
    stream.receive(request(CDS, unsubscribe=["*"]), views, NOW)
    state = stream.types[CDS]
    assert not state.wildcard and state.names == {name(1)}
    assert stream.publish(world.views({1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3"})) == []


def test_unsubscribing_the_last_name_is_not_a_wildcard():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    first = one(stream.receive(request(EDS, [name(1)]), views, NOW))
    stream.receive(delta_ack(first), views, NOW)
    assert stream.receive(request(EDS, unsubscribe=[name(1)]), views, NOW) == []
    assert not stream.types[EDS].wildcard and stream.types[EDS].names == frozenset()
    assert stream.publish(world.views({1: "10.0.0.9", 2: "10.0.0.2"})) == []


def test_subscription_changes_apply_even_with_a_stale_nonce():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    first = one(stream.receive(request(EDS, [name(1)]), views, NOW))
    stream.receive(delta_ack(first), views, NOW)
    moved = world.views({1: "10.0.0.9", 2: "10.0.0.2"})
    second = one(stream.publish(moved))
    stale = request(EDS, [name(2)], nonce=first.nonce)
    assert stream.receive(stale, moved, NOW) == []  # not an ACK, and the response still awaits one
    assert stream.types[EDS].names == {name(1), name(2)}
    third = one(stream.receive(delta_ack(second), moved, NOW)[1:])
    assert third.names == [name(2)]


def test_a_resubscribed_name_is_sent_even_if_the_client_has_it():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    first = one(stream.receive(request(EDS, [name(1)]), views, NOW))
    stream.receive(delta_ack(first), views, NOW)
    again = one(stream.receive(request(EDS, [name(1)]), views, NOW))
    assert again.names == [name(1)] and again.removed == []


def test_a_name_that_does_not_exist_is_reported_removed_then_sent_when_it_appears():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    first = one(stream.receive(request(EDS, [name(1), name(7)]), views, NOW))
    assert (first.names, first.removed) == ([name(1)], [name(7)])
    stream.receive(delta_ack(first), views, NOW)
    later = one(stream.publish(world.views({1: "10.0.0.1", 7: "10.0.0.7"})))
    assert (later.names, later.removed) == ([name(7)], [])


def test_a_resubscribed_wildcard_resends_everything_it_covers():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    first = one(stream.receive(request(CDS, ["*"]), views, NOW))
    stream.receive(delta_ack(first), views, NOW)
    again = one(stream.receive(request(CDS, ["*"]), views, NOW))
    assert (again.names, again.removed) == ([name(1), name(2)], [])


def test_wildcard_plus_name_dropping_the_name_resends_it_when_the_wildcard_covers_it():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    first = one(stream.receive(request(CDS, ["*", name(1)]), views, NOW))
    stream.receive(delta_ack(first), views, NOW)
    again = one(stream.receive(request(CDS, unsubscribe=[name(1)]), views, NOW))
    assert (again.names, again.removed) == ([name(1)], [])


def test_wildcard_plus_name_dropping_a_name_it_does_not_cover_lists_it_removed():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    first = one(stream.receive(request(CDS, ["*", "elsewhere/broker-1"]), views, NOW))
    stream.receive(delta_ack(first), views, NOW)
    dropped = one(stream.receive(request(CDS, unsubscribe=["elsewhere/broker-1"]), views, NOW))
    assert (dropped.names, dropped.removed) == ([], ["elsewhere/broker-1"])


def test_dropped_names_are_forgotten():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    last = one(stream.receive(request(EDS, [name(1)]), views, NOW))
    stream.receive(delta_ack(last), views, NOW)
    for round_ in range(20):
        names = [f"gone-{round_}-{index}" for index in range(500)]
        for response in sent(stream.receive(request(EDS, names), views, NOW)):
            stream.receive(delta_ack(response), views, NOW)
        for response in sent(stream.receive(request(EDS, unsubscribe=names), views, NOW)):
            stream.receive(delta_ack(response), views, NOW)
    state = stream.types[EDS]
    assert state.names == {name(1)} and not state.must_send and not state.must_remove
    assert state.has is not None and set(state.has.versions) | set(state.has.absent) <= {name(1)}


def test_subscriptions_beyond_the_name_limit_end_the_stream():
    world, stream = World(), StreamProtocol(Delta(), max_names=3)
    views = world.views({1: "10.0.0.1"})
    stream.receive(request(EDS, ["a", "b"]), views, NOW)
    stream.receive(request(EDS, ["c"], ["a"]), views, NOW)
    stream.receive(request(EDS, ["*"]), views, NOW)  # `*` is not a name
    with pytest.raises(TooManyNames) as raised:
        stream.receive(request(EDS, ["d", "e"]), views, NOW)
    assert (raised.value.type_url, raised.value.names, raised.value.limit) == (EDS, 4, 3)
    assert stream.types[EDS].names == {"b", "c"}


def test_what_is_due_never_outgrows_the_subscription_while_a_response_awaits_its_ack():
    world, stream = World(), StreamProtocol(Delta(), max_names=1000)
    views = world.views({1: "10.0.0.1"})
    stream.receive(request(EDS, [name(1)]), views, NOW)  # answered, never ACKed
    for round_ in range(20):
        names = [f"invented-{round_}-{index}" for index in range(500)]
        stream.receive(request(EDS, names), views, NOW)
        stream.receive(request(EDS, unsubscribe=names), views, NOW)
    state = stream.types[EDS]
    assert state.awaiting_ack and state.names == {name(1)}
    assert not state.must_send and not state.must_remove


def test_removals_due_count_against_the_name_limit():
    """With a wildcard, a dropped name is due to be listed as removed: while a response awaits its
    ACK those pile up, and count as names the stream holds."""
    world, stream = World(), StreamProtocol(Delta(), max_names=1000)
    views = world.views({1: "10.0.0.1"})
    stream.receive(request(EDS, ["*"]), views, NOW)  # answered, never ACKed
    names = [f"invented-{index}" for index in range(600)]
    stream.receive(request(EDS, names), views, NOW)
    stream.receive(request(EDS, unsubscribe=names), views, NOW)
    assert len(stream.types[EDS].must_remove) == 600
    with pytest.raises(TooManyNames):
        stream.receive(request(EDS, [f"more-{index}" for index in range(600)]), views, NOW)


def test_declared_versions_beyond_the_name_limit_end_the_stream():
    world, stream = World(), StreamProtocol(Delta(), max_names=3)
    declared = {f"invented-{index}": "v1" for index in range(4)}
    with pytest.raises(TooManyNames):
        stream.receive(request(EDS, ["*"], initial=declared), world.views({1: "10.0.0.1"}), NOW)


# Only what changed --------------------------------------------------------------------------------


def test_a_broker_move_sends_one_cluster_load_assignment():
    world = World()
    sidecar = connected(world, {broker: f"10.0.0.{broker}" for broker in range(1, 31)})
    moved = {broker: f"10.0.0.{broker}" for broker in range(1, 31)} | {7: "10.0.9.7"}
    updates = sidecar.publish(world.views(moved))
    assert [(response.type_url, response.names, response.removed) for response in updates] == [
        (EDS, [name(7)], [])
    ]


def test_an_unchanged_snapshot_sends_nothing():
    world = World()
    sidecar = connected(world, {1: "10.0.0.1"})
    assert sidecar.publish(world.views({1: "10.0.0.1"})) == []


def test_a_removed_broker_leaves_listener_first_then_cluster_and_endpoints():
    world = World()
    sidecar = connected(world, {1: "10.0.0.1", 2: "10.0.0.2"})
    updates = sidecar.publish(world.views({1: "10.0.0.1"}))
    assert [(response.type_url, response.names, response.removed) for response in updates] == [
        (LDS, [], [name(2)]),
        (CDS, [], [name(2)]),
        (EDS, [], [name(2)]),
    ]
    assert {type_url: sidecar.held[type_url] for type_url in (CDS, EDS, LDS)} == {
        type_url: {name(1): sidecar.stream.types[type_url].has.versions[name(1)]}  # type: ignore[union-attr]
        for type_url in (CDS, EDS, LDS)
    }


def test_the_cluster_stays_while_the_listener_removal_awaits_its_ack():
    world = World()
    sidecar = connected(world, {1: "10.0.0.1", 2: "10.0.0.2"})
    stream = sidecar.stream
    one_broker = world.views({1: "10.0.0.1"})
    listeners = one(stream.publish(one_broker), LDS)
    assert listeners.removed == [name(2)]
    assert stream.publish(one_broker) == []  # the cluster is still in use until the client answers
    clusters = sent(stream.receive(delta_ack(listeners), one_broker, NOW))
    assert [(response.type_url, response.removed) for response in clusters] == [
        (CDS, [name(2)]),
        (EDS, [name(2)]),
    ]


def test_a_change_goes_clusters_then_endpoints_then_listeners():
    world = World()
    sidecar = connected(world, {1: "10.0.0.1"})
    updates = sidecar.publish(world.views({1: "10.0.0.1", 2: "10.0.0.2"}))
    assert [(response.type_url, response.names) for response in updates] == [
        (CDS, [name(2)]),
        (EDS, [name(2)]),
        (LDS, [name(2)]),
    ]


def test_a_new_listener_waits_for_its_cluster_ack_and_endpoints():
    world = World()
    sidecar = connected(world, {1: "10.0.0.1"})
    stream = sidecar.stream
    two = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    outcomes = stream.publish(two)
    assert types_of(outcomes) == [CDS]
    clusters = one(outcomes)
    assert sent(stream.receive(delta_ack(clusters), two, NOW)) == []  # no endpoints for it yet
    endpoints, listeners = sent(stream.receive(request(EDS, [name(2)]), two, NOW))
    assert (endpoints.type_url, endpoints.names) == (EDS, [name(2)])
    assert (listeners.type_url, listeners.names) == (LDS, [name(2)])


def test_a_changed_cluster_gets_its_endpoints_again_to_finish_warming():
    world = World()
    sidecar = connected(world, {1: "10.0.0.1"})
    updates = sidecar.publish(world.views({1: "10.0.0.1"}, tls=TLS))
    assert [(response.type_url, response.names) for response in updates] == [
        (CDS, [name(1)]),
        (EDS, [name(1)]),
        (SDS, secret_names()),  # the client subscribes to the secrets the cluster now uses
    ]


def test_listeners_reach_a_client_that_subscribes_only_to_listeners():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1"})
    first = one(stream.receive(request(LDS, ["*"]), views, NOW))
    assert first.names == [name(1)]
    stream.receive(delta_ack(first), views, NOW)
    assert one(stream.publish(world.views({1: "10.0.0.1", 2: "10.0.0.2"}))).names == [name(2)]


# Secrets (SDS) ------------------------------------------------------------------------------------


def test_a_new_certificate_path_sends_only_that_secret():
    world = World()
    sidecar = DeltaSidecar(delta_stream(), world.views({1: "10.0.0.1", 2: "10.0.0.2"}, tls=TLS))
    sidecar.connect()
    assert sidecar.held[SDS].keys() == set(secret_names())
    updates = sidecar.publish(world.views({1: "10.0.0.1", 2: "10.0.0.2"}, tls=RENEWED_TLS))
    assert [(response.type_url, response.names, response.removed) for response in updates] == [
        (SDS, ["kafka-a/client-certificate"], [])
    ]


def test_a_new_listener_waits_for_the_secrets_of_its_cluster():
    world = World()
    sidecar = DeltaSidecar(delta_stream(), world.views({1: "10.0.0.1"}, tls=TLS))
    sidecar.connect()
    stream = sidecar.stream
    both = world.views({1: "10.0.0.1"}, tls=TLS, extra={"kafka-b": {1: "10.0.1.1"}})
    clusters = one(stream.publish(both), CDS)
    assert sent(stream.receive(delta_ack(clusters), both, NOW)) == []
    endpoints = one(stream.receive(request(EDS, [name(1, "kafka-b")]), both, NOW))  # no secrets yet
    assert (endpoints.type_url, endpoints.names) == (EDS, [name(1, "kafka-b")])
    secrets, listeners = sent(stream.receive(request(SDS, secret_names("kafka-b")), both, NOW))
    assert (secrets.type_url, secrets.names) == (SDS, secret_names("kafka-b"))
    assert (listeners.type_url, listeners.names) == (LDS, [name(1, "kafka-b")])


def test_a_secret_stays_while_a_cluster_the_client_may_hold_uses_it():
    world = World()
    sidecar = DeltaSidecar(
        delta_stream(), world.views({1: "10.0.0.1"}, tls=TLS, extra={"kafka-b": {1: "10.0.1.1"}})
    )
    sidecar.connect()
    stream = sidecar.stream
    only_a = world.views({1: "10.0.0.1"}, tls=TLS)
    listeners = one(stream.publish(only_a), LDS)  # kafka-b's listener leaves first; its secrets stay
    clusters, endpoints = sent(stream.receive(delta_ack(listeners), only_a, NOW))
    assert (clusters.type_url, clusters.removed) == (CDS, [name(1, "kafka-b")])
    assert sent(stream.receive(delta_ack(endpoints), only_a, NOW)) == []  # the cluster awaits its ACK
    secrets = one(stream.receive(delta_ack(clusters), only_a, NOW), SDS)
    assert (secrets.names, secrets.removed) == ([], secret_names("kafka-b"))


# Reconnect ----------------------------------------------------------------------------------------


def test_reconnect_with_every_current_version_sends_nothing():
    world = World()
    sidecar = connected(world, {1: "10.0.0.1", 2: "10.0.0.2"})
    held = {type_url: dict(versions) for type_url, versions in sidecar.held.items()}
    again = DeltaSidecar(delta_stream(), sidecar.views)
    again.connect(initial=held)
    assert again.log == []
    assert again.stream.sync_state(again.views) is SyncState.IN_SYNC


def test_reconnect_gets_only_what_differs_and_removals_for_what_is_gone():
    world = World()
    sidecar = connected(world, {1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3"})
    held = {type_url: dict(versions) for type_url, versions in sidecar.held.items()}
    later = world.views({1: "10.0.0.1", 2: "10.0.0.9"})  # 2 moved and 3 left while it was away
    again = DeltaSidecar(delta_stream(), later)
    again.connect(initial=held)
    summary = [(response.type_url, response.names, response.removed) for response in again.log]
    # What is gone entirely goes in the order the client re-subscribes (here clusters first): until
    # its listener request arrives the server cannot know which listeners it still holds.
    assert summary == [(CDS, [], [name(3)]), (EDS, [name(2)], [name(3)]), (LDS, [], [name(3)])]


# Sharing ------------------------------------------------------------------------------------------


def test_streams_in_the_same_state_share_one_encoded_response():
    world = World()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    first, second = DeltaSidecar(delta_stream(), views), DeltaSidecar(delta_stream(), views)
    first.connect()
    second.connect()
    moved = world.views({1: "10.0.0.9", 2: "10.0.0.2"})
    (one_,) = first.stream.publish(moved)
    (two,) = second.stream.publish(moved)
    assert isinstance(one_, Sent) and isinstance(two, Sent)
    assert one_.body is two.body


def test_a_first_listener_response_waits_for_its_clusters_instead_of_going_out_empty():
    world, stream = World(), delta_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    clusters = one(stream.receive(request(CDS, ["*"], node=Node(id="app-1")), views, NOW))
    assert stream.receive(request(LDS, ["*"]), views, NOW) == []  # nothing ready yet: nothing, not empty
    listeners = one(stream.receive(delta_ack(clusters), views, NOW))  # no endpoints asked for: ready
    assert (listeners.type_url, listeners.names) == (LDS, [name(1), name(2)])
