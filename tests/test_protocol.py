"""The SotW ADS state machine, one rule per test.

Rule ids (S1..S15) are those of shared/reference/xds-protocol-rules.md, which paraphrases Envoy's
"xDS REST and gRPC protocol". No I/O here: requests in, responses out.
"""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from envoy_data_plane.google.rpc import Status

from xds.config import SidecarSettings
from xds.plan import BrokerStatus, PlannedBroker
from xds.protocol import Response, StreamProtocol
from xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ResourceBuilder
from xds.snapshot import Snapshot
from xds.topology import HostPort

CDS, EDS, LDS = CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE
NOW = 1_700_000_000.0


class World:
    """Builds snapshots from `{broker_id: upstream ip}` the way the controller does."""

    def __init__(self) -> None:
        self.builder = ResourceBuilder()

    def snapshot(self, brokers: dict[int, str | None]) -> Snapshot:
        planned = [
            PlannedBroker(
                "kafka-a",
                broker_id,
                HostPort("127.0.0.10", 9090 + broker_id),
                HostPort(ip, 9094) if ip else None,
                "az1",
                BrokerStatus.LIVE if ip else BrokerStatus.IN_GRACE,
            )
            for broker_id, ip in sorted(brokers.items())
        ]
        return Snapshot.from_brokers(self.builder.build([(p, None) for p in planned], SidecarSettings()))


def name(broker_id: int) -> str:
    return f"kafka-a/broker-{broker_id}"


def request(
    type_url: str,
    names: list[str] | None = None,
    version: str = "",
    nonce: str = "",
    error: str | None = None,
    node: Node | None = None,
) -> DiscoveryRequest:
    return DiscoveryRequest(
        type_url=type_url,
        resource_names=names or [],
        version_info=version,
        response_nonce=nonce,
        error_detail=Status(code=3, message=error) if error else None,
        node=node,
    )


def ack(response: Response, names: list[str] | None = None) -> DiscoveryRequest:
    return request(response.type_url, names, version=response.version, nonce=response.nonce)


def nack(response: Response, last_good: str, message: str = "rejected") -> DiscoveryRequest:
    return request(response.type_url, version=last_good, nonce=response.nonce, error=message)


def names_of(response: Response) -> list[str]:
    return [resource.name for resource in response.resources]


def only(responses: list[Response], type_url: str | None = None) -> Response:
    assert len(responses) == 1, responses
    if type_url is not None:
        assert responses[0].type_url == type_url
    return responses[0]


class Sidecar:
    """Answers like Envoy: ACKs every response and subscribes EDS to the clusters it was given."""

    def __init__(self, stream: StreamProtocol, snapshot: Snapshot | None) -> None:
        self.stream = stream
        self.snapshot = snapshot
        self.have: dict[str, Response] = {}
        self.log: list[Response] = []

    def connect(self, versions: dict[str, str] | None = None) -> None:
        versions = versions or {}
        first = request(CDS, version=versions.get(CDS, ""), node=Node(id="app-1"))
        self._handle(self.stream.receive(first, self.snapshot, NOW))
        self._handle(self.stream.receive(request(LDS, version=versions.get(LDS, "")), self.snapshot, NOW))

    def publish(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._handle(self.stream.snapshot_changed(snapshot))

    def _handle(self, responses: list[Response]) -> None:
        queue = list(responses)
        while queue:
            response = queue.pop(0)
            self.log.append(response)
            self.have[response.type_url] = response
            names = None
            if response.type_url == EDS:
                names = sorted(self.stream.types[EDS].names)
            queue.extend(self.stream.receive(ack(response, names), self.snapshot, NOW))
            if response.type_url == CDS:
                wanted = sorted(names_of(response))
                if wanted != sorted(self.stream.types[EDS].names):
                    eds = self.have.get(EDS)
                    follow = request(EDS, wanted, eds.version if eds else "", eds.nonce if eds else "")
                    queue.extend(self.stream.receive(follow, self.snapshot, NOW))


# S1, S2 -------------------------------------------------------------------------------------------


def test_every_response_carries_a_new_nonce():
    world, stream = World(), StreamProtocol()
    first = only(stream.receive(request(CDS), world.snapshot({1: "10.0.0.1"}), NOW))
    second = only(stream.receive(request(LDS), world.snapshot({1: "10.0.0.1"}), NOW))
    assert first.nonce and second.nonce and first.nonce != second.nonce


def test_node_of_the_first_request_is_remembered():
    stream = StreamProtocol()
    stream.receive(request(CDS, node=Node(id="app-1", cluster="payments")), None, NOW)
    stream.receive(request(LDS), None, NOW)
    assert stream.node is not None and stream.node.id == "app-1"


def test_nothing_is_sent_before_the_first_snapshot():
    stream = StreamProtocol()
    assert stream.receive(request(CDS), None, NOW) == []
    assert stream.snapshot_changed(None) == []
    first = only(stream.snapshot_changed(World().snapshot({1: "10.0.0.1"})), CDS)
    assert names_of(first) == [name(1)]


# S3, S4 -------------------------------------------------------------------------------------------


def test_ack_records_the_acked_version():
    world, stream = World(), StreamProtocol()
    snapshot = world.snapshot({1: "10.0.0.1"})
    response = only(stream.receive(request(CDS), snapshot, NOW))
    assert stream.receive(ack(response), snapshot, NOW) == []
    state = stream.types[CDS]
    assert state.acked_version == response.version and not state.awaiting_ack and state.nack is None


def test_versions_belong_to_each_type_not_to_the_stream():
    world, stream = World(), StreamProtocol()
    snapshot = world.snapshot({1: "10.0.0.1"})
    clusters = only(stream.receive(request(CDS), snapshot, NOW))
    listeners = only(stream.receive(request(LDS), snapshot, NOW))
    assert clusters.version == snapshot.version(CDS)
    assert listeners.version == snapshot.version(LDS)
    assert clusters.version != listeners.version


def test_nack_is_detected_by_error_detail_and_keeps_the_last_good_version():
    world, stream = World(), StreamProtocol()
    good = only(stream.receive(request(CDS), world.snapshot({1: "10.0.0.1"}), NOW))
    stream.receive(ack(good), world.snapshot({1: "10.0.0.1"}), NOW)
    bad_snapshot = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    bad = only(stream.snapshot_changed(bad_snapshot))

    stream.receive(nack(bad, last_good=good.version, message="bad cluster"), bad_snapshot, NOW)

    state = stream.types[CDS]
    assert state.acked_version == good.version
    assert state.nack is not None
    assert (state.nack.version, state.nack.message, state.nack.at) == (bad.version, "bad cluster", NOW)
    assert state.rejected


def test_rejected_version_is_not_resent():
    world, stream = World(), StreamProtocol()
    snapshot = world.snapshot({1: "10.0.0.1"})
    rejected = only(stream.receive(request(CDS), snapshot, NOW))
    assert stream.receive(nack(rejected, last_good=""), snapshot, NOW) == []
    assert stream.snapshot_changed(snapshot) == []  # the same content published again
    assert stream.receive(request(CDS, version="", nonce=rejected.nonce), snapshot, NOW) == []


def test_new_content_after_a_nack_is_sent():
    world, stream = World(), StreamProtocol()
    rejected = only(stream.receive(request(CDS), world.snapshot({1: "10.0.0.1"}), NOW))
    stream.receive(nack(rejected, last_good=""), world.snapshot({1: "10.0.0.1"}), NOW)
    fixed = only(stream.snapshot_changed(world.snapshot({1: "10.0.0.1", 3: "10.0.0.3"})))
    assert fixed.version != rejected.version
    assert stream.types[CDS].nack is not None  # kept for operators until replaced
    stream.receive(ack(fixed), world.snapshot({1: "10.0.0.1", 3: "10.0.0.3"}), NOW)
    assert not stream.types[CDS].rejected


def test_reconnect_with_the_current_version_is_not_resent():
    world = World()
    snapshot = world.snapshot({1: "10.0.0.1"})
    stream = StreamProtocol()  # a new stream, e.g. after the control plane restarted
    versions = {CDS: snapshot.version(CDS), LDS: snapshot.version(LDS)}
    assert stream.receive(request(CDS, version=versions[CDS]), snapshot, NOW) == []
    assert stream.receive(request(LDS, version=versions[LDS]), snapshot, NOW) == []
    assert stream.types[CDS].acked_version == versions[CDS]


def test_reconnect_with_an_old_version_gets_the_current_one():
    world = World()
    old = world.snapshot({1: "10.0.0.1"})
    new = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    stream = StreamProtocol()
    response = only(stream.receive(request(CDS, version=old.version(CDS)), new, NOW))
    assert response.version == new.version(CDS)


def test_reconnect_with_current_version_but_new_names_gets_them():
    world = World()
    snapshot = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    stream = StreamProtocol()
    only_one = only(StreamProtocol().receive(request(EDS, [name(1)]), snapshot, NOW))
    response = only(stream.receive(request(EDS, [name(1), name(2)], version=only_one.version), snapshot, NOW))
    assert names_of(response) == [name(1), name(2)]


# S5 -----------------------------------------------------------------------------------------------


def test_identical_snapshot_sends_nothing():
    world, stream = World(), StreamProtocol()
    sidecar = Sidecar(stream, world.snapshot({1: "10.0.0.1"}))
    sidecar.connect()
    sent = len(sidecar.log)
    sidecar.publish(world.snapshot({1: "10.0.0.1"}))
    assert len(sidecar.log) == sent


def test_only_endpoints_are_sent_when_a_broker_moves():
    world, stream = World(), StreamProtocol()
    sidecar = Sidecar(stream, world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"}))
    sidecar.connect()
    before = len(sidecar.log)
    sidecar.publish(world.snapshot({1: "10.0.0.9", 2: "10.0.0.2"}))
    sent = sidecar.log[before:]
    assert [response.type_url for response in sent] == [EDS]


# S6, S10 ------------------------------------------------------------------------------------------


def test_empty_first_request_is_a_wildcard_subscription():
    world, stream = World(), StreamProtocol()
    response = only(stream.receive(request(CDS), world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"}), NOW))
    assert stream.types[CDS].wildcard
    assert names_of(response) == [name(1), name(2)]


def test_star_is_a_wildcard_subscription():
    world, stream = World(), StreamProtocol()
    response = only(stream.receive(request(EDS, ["*"]), world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"}), NOW))
    assert stream.types[EDS].wildcard
    assert names_of(response) == [name(1), name(2)]


def test_newly_requested_name_is_sent_even_if_nothing_changed():
    world, stream = World(), StreamProtocol()
    snapshot = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    first = only(stream.receive(request(EDS, [name(1)]), snapshot, NOW))
    second = only(stream.receive(ack(first, [name(1), name(2)]), snapshot, NOW))
    assert names_of(second) == [name(1), name(2)]


def test_resubscribing_a_name_sent_before_sends_it_again():
    world, stream = World(), StreamProtocol()
    snapshot = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    first = only(stream.receive(request(EDS, [name(1), name(2)]), snapshot, NOW))
    assert stream.receive(ack(first, [name(1)]), snapshot, NOW) == []  # dropping a name is no news
    again = only(stream.receive(ack(first, [name(1), name(2)]), snapshot, NOW))
    assert names_of(again) == [name(1), name(2)]


def test_empty_list_after_named_subscriptions_unsubscribes_everything():
    world, stream = World(), StreamProtocol()
    snapshot = world.snapshot({1: "10.0.0.1"})
    first = only(stream.receive(request(EDS, [name(1)]), snapshot, NOW))
    assert stream.receive(ack(first, []), snapshot, NOW) == []
    state = stream.types[EDS]
    assert not state.wildcard and state.names == frozenset()
    assert stream.snapshot_changed(world.snapshot({1: "10.0.0.5"})) == []


def test_requested_name_that_does_not_exist_yet_is_sent_when_it_appears():
    world, stream = World(), StreamProtocol()
    first = only(stream.receive(request(EDS, [name(1), name(7)]), world.snapshot({1: "10.0.0.1"}), NOW))
    assert names_of(first) == [name(1)]
    stream.receive(ack(first, [name(1), name(7)]), world.snapshot({1: "10.0.0.1"}), NOW)
    later = only(stream.snapshot_changed(world.snapshot({1: "10.0.0.1", 7: "10.0.0.7"})))
    assert names_of(later) == [name(1), name(7)]


# S7, S8, S9 ---------------------------------------------------------------------------------------


def test_listeners_and_clusters_are_always_the_complete_set():
    world, stream = World(), StreamProtocol()
    sidecar = Sidecar(stream, world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"}))
    sidecar.connect()
    before = len(sidecar.log)
    sidecar.publish(world.snapshot({1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3"}))
    for response in sidecar.log[before:]:
        if response.type_url in (CDS, LDS):
            assert names_of(response) == [name(1), name(2), name(3)]


def test_endpoints_hold_only_what_is_subscribed():
    world, stream = World(), StreamProtocol()
    response = only(
        stream.receive(request(EDS, [name(2)]), world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"}), NOW)
    )
    assert names_of(response) == [name(2)]


def test_a_response_never_names_a_resource_twice():
    world, stream = World(), StreamProtocol()
    response = only(
        stream.receive(request(EDS, [name(1), name(1), "*"]), world.snapshot({1: "10.0.0.1"}), NOW)
    )
    assert names_of(response) == [name(1)]


def test_removed_listener_is_deleted_by_absence():
    world, stream = World(), StreamProtocol()
    sidecar = Sidecar(stream, world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"}))
    sidecar.connect()
    sidecar.publish(world.snapshot({1: "10.0.0.1"}))
    assert names_of(sidecar.have[LDS]) == [name(1)]
    assert names_of(sidecar.have[CDS]) == [name(1)]


# S12, S13 -----------------------------------------------------------------------------------------


def test_a_change_goes_clusters_then_endpoints_then_listeners():
    world, stream = World(), StreamProtocol()
    sidecar = Sidecar(stream, world.snapshot({1: "10.0.0.1"}))
    sidecar.connect()
    before = len(sidecar.log)
    sidecar.publish(world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"}))
    order = [response.type_url for response in sidecar.log[before:]]
    assert order.index(CDS) < order.index(EDS) < order.index(LDS)


def test_new_listener_waits_until_its_cluster_is_acked_and_has_endpoints():
    world, stream = World(), StreamProtocol()
    one = world.snapshot({1: "10.0.0.1"})
    sidecar = Sidecar(stream, one)
    sidecar.connect()
    two = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    sent = stream.snapshot_changed(two)  # no ACK yet: only the clusters may go
    assert [response.type_url for response in sent] == [CDS]
    clusters = sent[0]
    assert stream.receive(ack(clusters), two, NOW) == []  # ACKed, but its endpoints were not sent yet
    subscribe = request(EDS, [name(1), name(2)], sidecar.have[EDS].version, sidecar.have[EDS].nonce)
    endpoints, listeners = stream.receive(subscribe, two, NOW)  # on one stream, order is enough
    assert (endpoints.type_url, names_of(endpoints)) == (EDS, [name(1), name(2)])
    assert (listeners.type_url, names_of(listeners)) == (LDS, [name(1), name(2)])


def test_changed_cluster_gets_its_endpoints_again_to_finish_warming():
    world, stream = World(), StreamProtocol()
    sidecar = Sidecar(stream, world.snapshot({1: "10.0.0.1"}))
    sidecar.connect()
    before = len(sidecar.log)
    changed = world.snapshot({1: "10.0.0.1"})
    # Same brokers, different TLS settings: the cluster changes, its endpoints do not.
    tls_world = World()
    from xds.config import UpstreamTls

    tls = UpstreamTls(ca_file="/ca.pem", cert_file="/c.pem", key_file="/k.pem")
    planned = PlannedBroker("kafka-a", 1, HostPort("127.0.0.10", 9091), HostPort("10.0.0.1", 9094), "az1")
    changed = Snapshot.from_brokers(tls_world.builder.build([(planned, tls)], SidecarSettings()))
    assert changed.version(EDS) == sidecar.snapshot.version(EDS)  # type: ignore[union-attr]
    sidecar.publish(changed)
    types = [response.type_url for response in sidecar.log[before:]]
    assert types == [CDS, EDS]


def test_listener_is_removed_before_its_cluster():
    world, stream = World(), StreamProtocol()
    two = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    sidecar = Sidecar(stream, two)
    sidecar.connect()
    one = world.snapshot({1: "10.0.0.1"})
    sent = stream.snapshot_changed(one)
    listeners = only([response for response in sent if response.type_url == LDS])
    assert names_of(listeners) == [name(1)]
    assert all(response.type_url != CDS for response in sent)  # cluster 2 stays while listener 2 may
    clusters = only(stream.receive(ack(listeners), one, NOW), CDS)
    assert names_of(clusters) == [name(1)]


def test_cluster_stays_while_the_listener_removal_is_rejected():
    world, stream = World(), StreamProtocol()
    two = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    sidecar = Sidecar(stream, two)
    sidecar.connect()
    good_listeners = sidecar.have[LDS]
    one = world.snapshot({1: "10.0.0.1"})
    listeners = only([response for response in stream.snapshot_changed(one) if response.type_url == LDS])
    assert stream.receive(nack(listeners, good_listeners.version), one, NOW) == []
    assert name(2) in stream.types[CDS].sent


def test_a_later_type_does_not_overtake_a_pending_cluster_change():
    world, stream = World(), StreamProtocol()
    sidecar = Sidecar(stream, world.snapshot({1: "10.0.0.1"}))
    sidecar.connect()
    two = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    clusters = only(stream.snapshot_changed(two), CDS)  # not ACKed yet
    three = world.snapshot({1: "10.0.0.5", 2: "10.0.0.2", 3: "10.0.0.3"})
    assert stream.snapshot_changed(three) == []  # clusters must go first, and CDS awaits its ACK
    after_ack = stream.receive(ack(clusters), three, NOW)
    assert [response.type_url for response in after_ack][0] == CDS


def test_at_most_one_unacknowledged_response_per_type():
    world, stream = World(), StreamProtocol()
    first = only(stream.receive(request(EDS, [name(1)]), world.snapshot({1: "10.0.0.1"}), NOW))
    assert stream.snapshot_changed(world.snapshot({1: "10.0.0.2"})) == []
    second = only(stream.receive(ack(first, [name(1)]), world.snapshot({1: "10.0.0.2"}), NOW))
    assert second.version != first.version


def test_first_listener_response_holds_nothing_back():
    world = World()
    snapshot = world.snapshot({1: "10.0.0.1", 2: "10.0.0.2"})
    stream = StreamProtocol()  # reconnect: the client may already have both listeners
    response = only(stream.receive(request(LDS, version="some-old-version"), snapshot, NOW))
    assert names_of(response) == [name(1), name(2)]


def test_broker_in_grace_keeps_listener_and_cluster_with_no_endpoints():
    world, stream = World(), StreamProtocol()
    sidecar = Sidecar(stream, world.snapshot({1: "10.0.0.1"}))
    sidecar.connect()
    before = len(sidecar.log)
    sidecar.publish(world.snapshot({1: None}))
    sent = sidecar.log[before:]
    assert [response.type_url for response in sent] == [EDS]
    assignment = sent[0].resources[0].decode()
    assert assignment.endpoints == []  # type: ignore[attr-defined]


# S11, S15 -----------------------------------------------------------------------------------------


def test_request_with_a_stale_nonce_is_ignored():
    world, stream = World(), StreamProtocol()
    snapshot = world.snapshot({1: "10.0.0.1"})
    first = only(stream.receive(request(EDS, [name(1)]), snapshot, NOW))
    stream.receive(ack(first, [name(1)]), snapshot, NOW)
    second = only(stream.snapshot_changed(world.snapshot({1: "10.0.0.2"})))
    stale = request(EDS, [name(1), name(2)], version=first.version, nonce=first.nonce)
    assert stream.receive(stale, world.snapshot({1: "10.0.0.2"}), NOW) == []
    state = stream.types[EDS]
    assert state.names == {name(1)} and state.awaiting_ack and state.sent_nonce == second.nonce


def test_each_type_is_its_own_sequence_on_one_stream():
    world, stream = World(), StreamProtocol()
    snapshot = world.snapshot({1: "10.0.0.1"})
    clusters = only(stream.receive(request(CDS), snapshot, NOW))
    listeners = only(stream.receive(request(LDS), snapshot, NOW))
    # ACKing the listeners says nothing about the clusters, which still await their own ACK.
    stream.receive(ack(listeners), snapshot, NOW)
    assert stream.types[CDS].awaiting_ack and not stream.types[LDS].awaiting_ack
    stream.receive(ack(clusters), snapshot, NOW)
    assert not stream.types[CDS].awaiting_ack


def test_types_this_server_does_not_serve_are_ignored():
    stream = StreamProtocol()
    route_type = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    assert stream.receive(request(route_type, ["r"]), World().snapshot({1: "10.0.0.1"}), NOW) == []
    assert route_type in stream.ignored_types
