"""The state-of-the-world ADS state machine, one rule per test (see docs/protocol.md).

No I/O here: requests in, outcomes out. Requests are encoded as Envoy encodes them and parsed as the
server parses them; responses are decoded with envoy-data-plane, as a client would.
"""

from __future__ import annotations

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
    SotwSidecar,
    World,
    ack,
    nack,
    name,
    only,
    responses,
    secret_names,
    sotw_stream,
    types_of,
)
from tests.support.xds_wire import sotw_request as request
from xds.serving.protocol import Acked, Ignored, Nacked, Sent, Sotw, StreamProtocol, SyncState, TooManyNames

# Basic protocol, node -----------------------------------------------------------------------------


def test_every_response_carries_a_new_nonce():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    first = only(stream.receive(request(CDS), views, NOW))
    second = only(stream.receive(request(LDS), views, NOW))
    assert first.nonce and second.nonce and first.nonce != second.nonce


def test_nonces_of_two_servers_never_match():
    one, two = World(), World()
    one.nonces.prefix, two.nonces.prefix = "aa", "bb"
    first = only(sotw_stream().receive(request(CDS), one.views({1: "10.0.0.1"}), NOW))
    second = only(sotw_stream().receive(request(CDS), two.views({1: "10.0.0.1"}), NOW))
    assert first.version == second.version and first.nonce != second.nonce


def test_node_of_the_first_request_is_remembered():
    stream = sotw_stream()
    stream.receive(request(CDS, node=Node(id="app-1", cluster="payments")), None, NOW)
    stream.receive(request(LDS), None, NOW)
    assert stream.node is not None and (stream.node.id, stream.node.cluster) == ("app-1", "payments")


def test_nothing_is_sent_before_the_first_snapshot():
    stream = sotw_stream()
    assert stream.receive(request(CDS), None, NOW) == []
    assert stream.publish(None) == []
    first = only(stream.publish(World().views({1: "10.0.0.1"})), CDS)
    assert first.names == [name(1)]


# ACK / NACK and versions --------------------------------------------------------------------------


def test_ack_records_the_acked_version():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    response = only(stream.receive(request(CDS), views, NOW))
    assert stream.receive(ack(response), views, NOW) == [Acked(CDS, response.version, response.nonce)]
    state = stream.types[CDS]
    assert state.acked_version == response.version and not state.awaiting_ack and state.nack is None


def test_versions_belong_to_each_type_not_to_the_stream():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    clusters = only(stream.receive(request(CDS), views, NOW))
    listeners = only(stream.receive(request(LDS), views, NOW))
    assert clusters.version == views.snapshot.versions[CDS]
    assert listeners.version == views.snapshot.versions[LDS]
    assert clusters.version != listeners.version


def test_nack_is_detected_by_error_detail_and_keeps_the_last_good_version():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    good = only(stream.receive(request(CDS), views, NOW))
    stream.receive(ack(good), views, NOW)
    bad_views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    bad = only(stream.publish(bad_views))

    outcomes = stream.receive(nack(bad, last_good=good.version, message="bad cluster"), bad_views, NOW)

    assert outcomes == [Nacked(CDS, bad.version, good.version, bad.nonce, "bad cluster", 3)]
    state = stream.types[CDS]
    assert state.acked_version == good.version
    assert state.nack is not None
    assert (state.nack.version, state.nack.message, state.nack.at) == (bad.version, "bad cluster", NOW)
    assert state.is_rejected


def test_rejected_version_is_not_resent():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    rejected = only(stream.receive(request(CDS), views, NOW))
    assert responses(stream.receive(nack(rejected, last_good=""), views, NOW)) == []
    assert stream.publish(world.views({1: "10.0.0.1"})) == []  # the same content published again
    assert stream.receive(request(CDS, nonce=rejected.nonce, error="still bad"), views, NOW) == []


def test_new_content_after_a_nack_is_sent():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    rejected = only(stream.receive(request(CDS), views, NOW))
    stream.receive(nack(rejected, last_good=""), views, NOW)
    fixed_views = world.views({1: "10.0.0.1", 3: "10.0.0.3"})
    fixed = only(stream.publish(fixed_views))
    assert fixed.version != rejected.version
    assert stream.types[CDS].nack is not None  # kept for operators until replaced
    stream.receive(ack(fixed), fixed_views, NOW)
    assert not stream.types[CDS].is_rejected


def test_reconnect_with_the_current_version_is_not_resent():
    world = World()
    views = world.views({1: "10.0.0.1"})
    stream = sotw_stream()  # a new stream, e.g. after the control plane restarted
    versions = views.snapshot.versions
    assert stream.receive(request(CDS, version=versions[CDS]), views, NOW) == []
    assert stream.receive(request(LDS, version=versions[LDS]), views, NOW) == []
    assert stream.types[CDS].acked_version == versions[CDS]
    assert stream.sync_state(views) is SyncState.IN_SYNC


def test_reconnect_with_an_old_version_gets_the_current_one():
    world = World()
    old = world.views({1: "10.0.0.1"})
    new = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    response = only(sotw_stream().receive(request(CDS, version=old.snapshot.versions[CDS]), new, NOW))
    assert response.version == new.snapshot.versions[CDS]


def test_reconnect_with_current_version_but_new_names_gets_them():
    world = World()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    only_one = only(sotw_stream().receive(request(EDS, [name(1)]), views, NOW))
    both = request(EDS, [name(1), name(2)], version=only_one.version)
    assert only(sotw_stream().receive(both, views, NOW)).names == [name(1), name(2)]


def test_a_nonce_from_an_earlier_stream_is_a_first_request():
    """Envoy before late 2023 re-sends the last nonce of the previous stream when it reconnects."""
    world = World()
    views = world.views({1: "10.0.0.1"})
    stream = sotw_stream()
    reconnect = request(CDS, version="an-old-version", nonce="other-replica-7", node=Node(id="app-1"))
    assert only(stream.receive(reconnect, views, NOW)).names == [name(1)]
    assert stream.sync_state(views) is SyncState.PENDING


def test_a_nack_of_a_response_from_an_earlier_stream_is_a_first_request():
    world = World()
    views = world.views({1: "10.0.0.1"})
    stream = sotw_stream()
    reconnect = request(CDS, nonce="earlier-3", error="that one was bad")
    assert only(stream.receive(reconnect, views, NOW)).names == [name(1)]
    assert stream.types[CDS].nack is None


def test_a_stream_that_requested_nothing_is_idle_not_in_sync():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    assert stream.sync_state(views) is SyncState.IDLE
    stream.receive(request("type.googleapis.com/some.other.Type", node=Node(id="app-1")), views, NOW)
    assert stream.sync_state(views) is SyncState.IDLE


def test_stream_in_sync_once_every_requested_type_is_acked_at_the_current_view():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}))
    sidecar.connect()
    assert stream.sync_state(sidecar.views) is SyncState.IN_SYNC
    moved = world.views({1: "10.0.0.9"})
    assert stream.sync_state(moved) is SyncState.PENDING


# When to send an update ---------------------------------------------------------------------------


def test_identical_snapshot_sends_nothing():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}))
    sidecar.connect()
    assert sidecar.publish(world.views({1: "10.0.0.1"})) == []


def test_only_the_moved_brokers_endpoints_are_sent_when_it_moves():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3"}))
    sidecar.connect()
    sent = sidecar.publish(world.views({1: "10.0.0.1", 2: "10.0.0.9", 3: "10.0.0.3"}))
    assert [(response.type_url, response.names) for response in sent] == [(EDS, [name(2)])]


def test_endpoint_subset_carries_the_version_of_the_whole_subscription():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1", 2: "10.0.0.2"}))
    sidecar.connect()
    moved = world.views({1: "10.0.0.1", 2: "10.0.0.9"})
    (endpoints,) = sidecar.publish(moved)
    reconnect = request(EDS, [name(1), name(2)], version=endpoints.version)
    assert sotw_stream().receive(reconnect, moved, NOW) == []  # that version means both, as they are now


# Which resources: wildcard, names, resubscription -------------------------------------------------


def test_empty_first_request_is_a_wildcard_subscription():
    world, stream = World(), sotw_stream()
    response = only(stream.receive(request(CDS), world.views({1: "10.0.0.1", 2: "10.0.0.2"}), NOW))
    assert stream.types[CDS].wildcard
    assert response.names == [name(1), name(2)]


def test_star_is_a_wildcard_subscription():
    world, stream = World(), sotw_stream()
    response = only(stream.receive(request(EDS, ["*"]), world.views({1: "10.0.0.1", 2: "10.0.0.2"}), NOW))
    assert stream.types[EDS].wildcard
    assert response.names == [name(1), name(2)]


def test_star_and_a_name_then_the_name_alone_leaves_the_wildcard():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    first = only(stream.receive(request(EDS, ["*", name(1)]), views, NOW))
    assert stream.types[EDS].wildcard and stream.types[EDS].names == {name(1)}
    stream.receive(ack(first, [name(1)]), views, NOW)
    assert not stream.types[EDS].wildcard and stream.types[EDS].names == {name(1)}


def test_empty_list_after_a_star_unsubscribes_everything():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    first = only(stream.receive(request(CDS, ["*"]), views, NOW))
    stream.receive(ack(first, []), views, NOW)
    assert not stream.types[CDS].wildcard and stream.types[CDS].names == frozenset()


def test_newly_requested_name_is_sent_even_if_nothing_changed():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    first = only(stream.receive(request(EDS, [name(1)]), views, NOW))
    second = only(stream.receive(ack(first, [name(1), name(2)]), views, NOW))
    assert second.names == [name(2)]


def test_resubscribing_a_name_sent_before_sends_it_again():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    first = only(stream.receive(request(EDS, [name(1), name(2)]), views, NOW))
    assert responses(stream.receive(ack(first, [name(1)]), views, NOW)) == []  # dropping a name is no news
    again = only(stream.receive(ack(first, [name(1), name(2)]), views, NOW))
    assert again.names == [name(2)]


def test_empty_list_after_named_subscriptions_unsubscribes_everything():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    first = only(stream.receive(request(EDS, [name(1)]), views, NOW))
    assert responses(stream.receive(ack(first, []), views, NOW)) == []
    state = stream.types[EDS]
    assert not state.wildcard and state.names == frozenset()
    assert stream.publish(world.views({1: "10.0.0.5"})) == []


def test_requested_name_that_does_not_exist_yet_is_sent_when_it_appears():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    first = only(stream.receive(request(EDS, [name(1), name(7)]), views, NOW))
    assert first.names == [name(1)]
    stream.receive(ack(first, [name(1), name(7)]), views, NOW)
    later = only(stream.publish(world.views({1: "10.0.0.1", 7: "10.0.0.7"})))
    assert later.names == [name(7)]


def test_dropped_subscription_names_are_forgotten():
    """A stream's state is bounded by its current subscription, however many names it dropped."""
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    last = only(stream.receive(request(EDS, [name(1)]), views, NOW))
    for round_ in range(20):
        names = [f"gone-{round_}-{index}" for index in range(500)] + [name(1)]
        stream.receive(ack(last, names), views, NOW)
    stream.receive(ack(last, [name(1)]), views, NOW)
    state = stream.types[EDS]
    assert state.names == {name(1)}
    assert state.must_send <= {name(1)}
    stream.publish(world.views({1: "10.0.0.2"}))
    assert state.must_send <= {name(1)}


def test_a_subscription_beyond_the_name_limit_ends_the_stream():
    world, stream = World(), StreamProtocol(Sotw(), max_names=3)
    views = world.views({1: "10.0.0.1"})
    stream.receive(request(EDS, ["*", "a", "b", "c"]), views, NOW)  # `*` is not a name
    with pytest.raises(TooManyNames) as raised:
        stream.receive(request(EDS, ["a", "b", "c", "d"]), views, NOW)
    assert (raised.value.type_url, raised.value.names, raised.value.limit) == (EDS, 4, 3)
    assert stream.types[EDS].names == {"a", "b", "c"}


def test_names_no_longer_asked_for_are_not_due_while_a_response_awaits_its_ack():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    stream.receive(request(EDS, [name(1)]), views, NOW)  # answered, never ACKed
    for round_ in range(20):
        stream.receive(
            request(EDS, [name(1), *(f"gone-{round_}-{index}" for index in range(500))]), views, NOW
        )
    stream.receive(request(EDS, [name(1)]), views, NOW)
    state = stream.types[EDS]
    assert state.awaiting_ack and state.names == {name(1)} and state.must_send <= {name(1)}


# Grouping, deleting -------------------------------------------------------------------------------


def test_listeners_and_clusters_are_always_the_complete_set():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1", 2: "10.0.0.2"}))
    sidecar.connect()
    for response in sidecar.publish(world.views({1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3"})):
        if response.type_url in (CDS, LDS):
            assert response.names == [name(1), name(2), name(3)]


def test_endpoints_hold_only_what_is_subscribed():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    assert only(stream.receive(request(EDS, [name(2)]), views, NOW)).names == [name(2)]


def test_a_response_never_names_a_resource_twice():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    response = only(stream.receive(request(EDS, [name(1), name(1), "*"]), views, NOW))
    assert response.names == [name(1)]


def test_removed_listener_is_deleted_by_absence():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1", 2: "10.0.0.2"}))
    sidecar.connect()
    sidecar.publish(world.views({1: "10.0.0.1"}))
    assert sidecar.have[LDS].names == [name(1)]
    assert sidecar.have[CDS].names == [name(1)]


# Ordering and warming (make before break) ---------------------------------------------------------


def test_a_change_goes_clusters_then_endpoints_then_listeners():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}))
    sidecar.connect()
    order = [response.type_url for response in sidecar.publish(world.views({1: "10.0.0.1", 2: "10.0.0.2"}))]
    assert order.index(CDS) < order.index(EDS) < order.index(LDS)


def test_new_listener_waits_until_its_cluster_is_acked_and_has_endpoints():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}))
    sidecar.connect()
    two = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    sent = stream.publish(two)  # no ACK yet: only the clusters may go
    assert types_of(sent) == [CDS]
    (clusters,) = responses(sent)
    assert responses(stream.receive(ack(clusters), two, NOW)) == []  # ACKed, but no endpoints sent yet
    eds = sidecar.have[EDS]
    endpoints, listeners = responses(
        stream.receive(request(EDS, [name(1), name(2)], eds.version, eds.nonce), two, NOW)
    )
    assert (endpoints.type_url, endpoints.names) == (EDS, [name(2)])
    assert (listeners.type_url, listeners.names) == (LDS, [name(1), name(2)])


def test_new_listeners_reach_a_client_that_subscribes_only_to_listeners():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    first = only(stream.receive(request(LDS), views, NOW))
    stream.receive(ack(first), views, NOW)
    added = only(stream.publish(world.views({1: "10.0.0.1", 2: "10.0.0.2"})), LDS)
    assert added.names == [name(1), name(2)]


def test_new_listener_needs_no_endpoints_from_a_client_that_does_not_subscribe_to_them():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    for type_url in (CDS, LDS):
        stream.receive(ack(only(stream.receive(request(type_url), views, NOW))), views, NOW)
    two = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    clusters = only(stream.publish(two), CDS)
    listeners = only(stream.receive(ack(clusters), two, NOW), LDS)
    assert listeners.names == [name(1), name(2)]


def test_changed_cluster_gets_its_endpoints_again_to_finish_warming():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}))
    sidecar.connect()
    endpoints_before = sidecar.have[EDS].version
    # Same brokers, different TLS settings: the cluster changes, its endpoints do not.
    sent = sidecar.publish(world.views({1: "10.0.0.1"}, tls=TLS))
    assert [response.type_url for response in sent] == [CDS, EDS, SDS]  # and the secrets it now uses
    assert sent[1].names == [name(1)] and sent[1].version == endpoints_before


def test_listener_is_removed_before_its_cluster():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1", 2: "10.0.0.2"}))
    sidecar.connect()
    one = world.views({1: "10.0.0.1"})
    sent = stream.publish(one)
    assert types_of(sent) == [LDS]  # cluster 2 stays while listener 2 may still be there
    (listeners,) = responses(sent)
    assert listeners.names == [name(1)]
    clusters = only(stream.receive(ack(listeners), one, NOW), CDS)
    assert clusters.names == [name(1)]


def test_cluster_stays_while_the_listener_removal_is_rejected():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1", 2: "10.0.0.2"}))
    sidecar.connect()
    good_listeners = sidecar.have[LDS]
    one = world.views({1: "10.0.0.1"})
    listeners = only(stream.publish(one), LDS)
    assert responses(stream.receive(nack(listeners, good_listeners.version), one, NOW)) == []
    clusters = stream.types[CDS].has
    assert clusters is not None and name(2) in clusters.resources


def test_a_later_type_does_not_overtake_a_pending_cluster_change():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}))
    sidecar.connect()
    two = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    clusters = only(stream.publish(two), CDS)  # not ACKed yet
    three = world.views({1: "10.0.0.5", 2: "10.0.0.2", 3: "10.0.0.3"})
    assert stream.publish(three) == []  # clusters must go first, and CDS awaits its ACK
    assert types_of(stream.receive(ack(clusters), three, NOW))[0] == CDS


def test_at_most_one_unacknowledged_response_per_type():
    world, stream = World(), sotw_stream()
    first = only(stream.receive(request(EDS, [name(1)]), world.views({1: "10.0.0.1"}), NOW))
    moved = world.views({1: "10.0.0.2"})
    assert stream.publish(moved) == []
    second = only(stream.receive(ack(first, [name(1)]), moved, NOW))
    assert second.version != first.version


def test_first_listener_response_holds_nothing_back():
    world = World()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    stream = sotw_stream()  # reconnect: the client may already have both listeners
    response = only(stream.receive(request(LDS, version="some-old-version"), views, NOW))
    assert response.names == [name(1), name(2)]


def test_broker_in_grace_keeps_listener_and_cluster_with_no_endpoints():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}))
    sidecar.connect()
    (endpoints,) = sidecar.publish(world.views({1: None}))
    assert endpoints.type_url == EDS
    assert endpoints.resources[name(1)].endpoints == []  # type: ignore[attr-defined]


# Secrets (SDS): what clusters use comes first, stays while in use ---------------------------------


def test_secrets_hold_only_what_changed_not_the_complete_set():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}, tls=TLS))
    sidecar.connect()
    assert sidecar.have[SDS].names == secret_names()
    sent = sidecar.publish(world.views({1: "10.0.0.1"}, tls=RENEWED_TLS))  # a new certificate path
    assert [(response.type_url, response.names) for response in sent] == [
        (SDS, ["kafka-a/client-certificate"])
    ]


def test_a_change_goes_secrets_then_clusters_then_endpoints_then_listeners():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}, tls=TLS))
    sidecar.connect()
    sent = sidecar.publish(world.views({1: "10.0.0.1", 2: "10.0.0.2"}, tls=RENEWED_TLS))
    assert [response.type_url for response in sent] == [SDS, CDS, EDS, LDS]


def test_new_listener_waits_until_the_secrets_of_its_cluster_were_sent():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}, tls=TLS))
    sidecar.connect()
    both = world.views({1: "10.0.0.1"}, tls=TLS, extra={"kafka-b": {1: "10.0.1.1"}})
    clusters = only(stream.publish(both), CDS)
    assert responses(stream.receive(ack(clusters), both, NOW)) == []
    eds, sds = sidecar.have[EDS], sidecar.have[SDS]
    endpoints_request = request(EDS, [name(1), name(1, "kafka-b")], eds.version, eds.nonce)
    endpoints = only(stream.receive(endpoints_request, both, NOW))  # its secrets were not sent yet
    assert (endpoints.type_url, endpoints.names) == (EDS, [name(1, "kafka-b")])
    secrets_request = request(SDS, secret_names() + secret_names("kafka-b"), sds.version, sds.nonce)
    secrets, listeners = responses(stream.receive(secrets_request, both, NOW))
    assert (secrets.type_url, secrets.names) == (SDS, secret_names("kafka-b"))
    assert (listeners.type_url, listeners.names) == (LDS, [name(1), name(1, "kafka-b")])


def test_new_listener_needs_no_secrets_from_a_client_that_does_not_subscribe_to_them():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"}, tls=TLS)
    for type_url in (CDS, LDS):
        stream.receive(ack(only(stream.receive(request(type_url), views, NOW))), views, NOW)
    both = world.views({1: "10.0.0.1"}, tls=TLS, extra={"kafka-b": {1: "10.0.1.1"}})
    clusters = only(stream.publish(both), CDS)
    listeners = only(stream.receive(ack(clusters), both, NOW), LDS)
    assert listeners.names == [name(1), name(1, "kafka-b")]


def test_a_secret_stays_while_a_cluster_the_client_may_hold_uses_it():
    world, stream = World(), sotw_stream()
    sidecar = SotwSidecar(stream, world.views({1: "10.0.0.1"}, tls=TLS, extra={"kafka-b": {1: "10.0.1.1"}}))
    sidecar.connect()
    only_a = world.views({1: "10.0.0.1"}, tls=TLS)
    secrets = stream.types[SDS]

    def kept() -> bool:
        return set(secret_names("kafka-b")) <= stream.target(secrets, only_a).resources.keys()

    listeners = only(stream.publish(only_a), LDS)  # kafka-b's listener leaves first
    assert kept()
    clusters = only(stream.receive(ack(listeners), only_a, NOW), CDS)
    assert kept()  # the client may still hold kafka-b's cluster until it answers
    stream.receive(ack(clusters), only_a, NOW)
    assert not kept()


# Stale nonces, one sequence per type ---------------------------------------------------------------


def test_request_with_a_stale_nonce_is_ignored():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    first = only(stream.receive(request(EDS, [name(1)]), views, NOW))
    stream.receive(ack(first, [name(1)]), views, NOW)
    moved = world.views({1: "10.0.0.2"})
    second = only(stream.publish(moved))
    stale = request(EDS, [name(1), name(2)], version=first.version, nonce=first.nonce)
    assert stream.receive(stale, moved, NOW) == []
    state = stream.types[EDS]
    assert state.names == {name(1)} and state.awaiting_ack and state.sent_nonce == second.nonce


def test_each_type_is_its_own_sequence_on_one_stream():
    world, stream = World(), sotw_stream()
    views = world.views({1: "10.0.0.1"})
    clusters = only(stream.receive(request(CDS), views, NOW))
    listeners = only(stream.receive(request(LDS), views, NOW))
    # ACKing the listeners says nothing about the clusters, which still await their own ACK.
    stream.receive(ack(listeners), views, NOW)
    assert stream.types[CDS].awaiting_ack and not stream.types[LDS].awaiting_ack
    stream.receive(ack(clusters), views, NOW)
    assert not stream.types[CDS].awaiting_ack


def test_types_this_server_does_not_serve_are_ignored_and_bounded():
    stream = sotw_stream()
    views = World().views({1: "10.0.0.1"})
    route_type = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    assert stream.receive(request(route_type, ["r"]), views, NOW) == [Ignored(route_type, "type not served")]
    for index in range(200):
        stream.receive(request(f"type.googleapis.com/junk.{index}." + "x" * 1000), views, NOW)
    assert route_type in stream.ignored_types
    assert len(stream.ignored_types) <= 16 and stream.ignored_overflow == 200 - 15
    assert all(len(type_url) <= 200 for type_url in stream.ignored_types)


# Sharing: one computation for every stream with the same subscription ---------------------------


def test_streams_with_the_same_subscription_share_one_encoded_response():
    world = World()
    views = world.views({1: "10.0.0.1", 2: "10.0.0.2"})
    first, second = sotw_stream(), sotw_stream()
    (one,) = first.receive(request(CDS), views, NOW)
    (two,) = second.receive(request(CDS), views, NOW)
    assert isinstance(one, Sent) and isinstance(two, Sent)
    assert one.body is two.body  # the same bytes object, nonce included
