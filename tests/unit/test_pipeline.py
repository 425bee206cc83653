"""The pure stages: address plan, removal grace, resources, snapshots, and the controller."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from xds.config.model import BrokerNames, Config, KafkaCluster, SidecarSettings, UpstreamTls, parse_config
from xds.debug.render import REDACTED, redact, render_snapshot
from xds.pipeline.controller import Controller
from xds.pipeline.grace import GraceState
from xds.pipeline.metrics import Metrics
from xds.pipeline.plan import BrokerStatus, PlannedBroker, plan_cluster, upstream_names
from xds.pipeline.publisher import Publisher
from xds.pipeline.resolve import HostResolver, Resolution
from xds.pipeline.resources.builder import BrokerResources, ResourceBuilder
from xds.pipeline.resources.inputs import resource_name
from xds.pipeline.resources.typed import decoded
from xds.pipeline.snapshot import InconsistentSnapshot, Snapshot
from xds.pipeline.topology import Broker, SourceState, Topology
from xds.shared.addresses import HostPort
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE

TLS = UpstreamTls(ca_file="/etc/ca.pem", cert_file="/etc/client.pem", key_file="/etc/client.key")


def cluster(**overrides: Any) -> KafkaCluster:
    raw = {
        "name": "kafka-a",
        "loopback_ip": "127.0.0.10",
        "port_base": 9090,
        "upstream_listener": "MESH",
        "client_listener": "CLIENT",
        "removal_grace_seconds": 300,
        "static": {"brokers": []},
        **overrides,
    }
    return parse_config({"xds": {"tls": None}, "upstream_tls": None, "kafka_clusters": [raw]}).kafka_clusters[
        0
    ]


def broker(
    broker_id: int, mesh: str = "10.0.0.1", client: str | None = None, rack: str | None = "az1"
) -> Broker:
    listeners = {"MESH": HostPort(mesh, 9094)}
    if client is not None:
        host, port = client.rsplit(":", 1)
        listeners["CLIENT"] = HostPort(host, int(port))
    return Broker.create(broker_id, listeners, rack)


def synced(*brokers: Broker) -> Topology:
    return Topology.create("kafka-a", "static", SourceState.SYNCED, brokers)


# Address plan -------------------------------------------------------------------------------------


def test_broker_port_is_port_base_plus_id_unless_overridden():
    plain = cluster()
    assert plain.broker_port(1) == 9091
    assert plain.broker_port(0) == 9090
    overridden = cluster(broker_ports={1001: 9101}, max_broker_id=10)
    assert overridden.broker_port(1001) == 9101


def test_broker_id_beyond_the_range_gets_no_port_and_is_skipped_with_reason():
    small = cluster(max_broker_id=10)
    plan = plan_cluster(small, synced(broker(1), broker(11)), GraceState(300))
    assert [planned.broker_id for planned in plan.brokers] == [1]
    assert plan.skipped[0].broker_id == 11
    assert "no port" in plan.skipped[0].reason


def test_plan_is_deterministic_and_sorted():
    topology = synced(broker(3), broker(1), broker(2))
    first = plan_cluster(cluster(), topology, GraceState(300))
    second = plan_cluster(cluster(), topology, GraceState(300))
    assert first == second
    assert [(p.broker_id, str(p.listen)) for p in first.brokers] == [
        (1, "127.0.0.10:9091"),
        (2, "127.0.0.10:9092"),
        (3, "127.0.0.10:9093"),
    ]


def test_broker_without_the_upstream_listener_is_skipped_and_others_kept():
    odd = Broker.create(2, {"INTERNAL": HostPort("10.0.0.2", 9092)})
    plan = plan_cluster(cluster(), synced(broker(1), odd), GraceState(300))
    assert [planned.broker_id for planned in plan.brokers] == [1]
    assert "no 'MESH' listener" in plan.skipped[0].reason
    assert "INTERNAL" in plan.skipped[0].reason


def test_dns_upstream_uses_its_resolved_address_and_keeps_the_name_for_tls():
    resolved = {"kafka-0.kafka": Resolution("kafka-0.kafka", "10.0.0.7", 1.0)}
    plan = plan_cluster(cluster(), synced(broker(1, mesh="kafka-0.kafka")), GraceState(300), resolved)
    assert plan.brokers[0].upstream == HostPort("10.0.0.7", 9094)
    assert plan.brokers[0].server_name == "kafka-0.kafka"


def test_unresolved_dns_upstream_is_skipped_with_the_lookup_error():
    failed = {"kafka-0.kafka": Resolution("kafka-0.kafka", None, 1.0, "cannot resolve kafka-0.kafka: nope")}
    plan = plan_cluster(
        cluster(), synced(broker(1, mesh="kafka-0.kafka"), broker(2)), GraceState(300), failed
    )
    assert [planned.broker_id for planned in plan.brokers] == [2]
    assert plan.skipped[0].reason == "cannot resolve kafka-0.kafka: nope"
    assert upstream_names(cluster(), synced(broker(1, mesh="kafka-0.kafka"), broker(2))) == {"kafka-0.kafka"}


async def test_resolver_follows_a_name_and_keeps_the_last_answer_when_lookups_fail():
    now = [0.0]
    resolver = HostResolver(refresh_seconds=30, timeout_seconds=5, clock=lambda: now[0])
    answers = await resolver.resolve(["localhost"])
    assert answers["localhost"].address == "127.0.0.1"
    assert resolver.next_refresh == 30
    missing = (await resolver.resolve(["localhost", "no-such-broker.invalid"]))["no-such-broker.invalid"]
    assert missing.address is None
    assert "no-such-broker.invalid" in (missing.error or "")


def test_upstream_port_replaces_the_registered_port_on_the_upstream_host():
    mesh_advertises_loopback = Broker.create(
        1, {"INTERNAL": HostPort("10.0.0.1", 9092), "MESH": HostPort("127.0.0.10", 9091)}
    )
    config = cluster(upstream_listener="INTERNAL", upstream_port=9094, client_listener="MESH")
    plan = plan_cluster(config, synced(mesh_advertises_loopback), GraceState(300))
    assert plan.brokers[0].upstream == HostPort("10.0.0.1", 9094)
    assert plan.mismatches == ()


def test_advertised_client_listener_is_checked_against_the_plan():
    topology = synced(broker(1, client="127.0.0.10:9091"), broker(2, client="10.0.0.2:9092"), broker(3))
    plan = plan_cluster(cluster(), topology, GraceState(300))
    assert [planned.broker_id for planned in plan.brokers] == [1, 2, 3]  # served anyway
    mismatched = {mismatch.broker_id: mismatch for mismatch in plan.mismatches}
    assert set(mismatched) == {2, 3}
    assert mismatched[2].advertised == HostPort("10.0.0.2", 9092)
    assert mismatched[3].advertised is None
    assert "bypass the sidecar" in mismatched[2].describe()


# Removal grace ------------------------------------------------------------------------------------


def test_departed_broker_keeps_its_listener_without_endpoint_until_grace_ends():
    config = cluster(removal_grace_seconds=300)
    grace = GraceState(300).advance(synced(broker(1), broker(2)), now=1000)
    grace = grace.advance(synced(broker(1)), now=1010)
    plan = plan_cluster(config, synced(broker(1)), grace)
    departed = [planned for planned in plan.brokers if planned.broker_id == 2][0]
    assert departed.status is BrokerStatus.IN_GRACE
    assert departed.upstream is None
    assert departed.remove_at == 1310
    assert grace.next_deadline == 1310
    later = grace.advance(synced(broker(1)), now=1311)
    assert [planned.broker_id for planned in plan_cluster(config, synced(broker(1)), later).brokers] == [1]


def test_broker_coming_back_within_grace_is_live_again():
    grace = GraceState(300).advance(synced(broker(1)), now=0)
    grace = grace.advance(synced(), now=1)
    grace = grace.advance(synced(broker(1, mesh="10.0.0.9")), now=2)
    assert grace.departed == ()


def test_stale_topology_is_no_evidence_of_departure():
    grace = GraceState(300).advance(synced(broker(1)), now=0)
    stale = Topology.create("kafka-a", "zookeeper", SourceState.STALE, ())
    assert grace.advance(stale, now=5).departed == ()


def test_went_stale_keeps_the_brokers():
    topology = synced(broker(1), broker(2))
    stale = topology.went_stale("session lost", now=42.0)
    assert stale.brokers == topology.brokers
    assert (stale.state, stale.error, stale.stale_since) == (SourceState.STALE, "session lost", 42.0)
    assert stale.went_stale("still lost", now=50.0).stale_since == 42.0


# Resources ----------------------------------------------------------------------------------------


def planned(broker_id: int = 1, upstream: str | None = "10.0.0.1", rack: str | None = "az1") -> PlannedBroker:
    return PlannedBroker(
        "kafka-a",
        broker_id,
        HostPort("127.0.0.10", 9090 + broker_id),
        HostPort(upstream, 9094) if upstream else None,
        rack,
    )


def test_resources_are_named_cluster_slash_broker_id():
    assert resource_name(planned(7)) == "kafka-a/broker-7"


def test_listener_forwards_to_its_cluster_on_the_planned_address():
    built = ResourceBuilder().build([(planned(1), TLS)], SidecarSettings())[0]
    listener = decoded(built.listener).to_dict()
    assert listener["address"]["socketAddress"] == {"address": "127.0.0.10", "portValue": 9091}
    proxy = listener["filterChains"][0]["filters"][0]["typedConfig"]
    assert proxy["cluster"] == "kafka-a/broker-1"
    assert proxy["idleTimeout"] == "3600s"
    assert built.listener.references == {"kafka-a/broker-1"}


def test_cluster_is_eds_with_mtls_and_kafka_friendly_connection_settings():
    built = ResourceBuilder().build([(planned(1), TLS)], SidecarSettings())[0]
    cluster_dict = decoded(built.cluster).to_dict()
    assert cluster_dict["type"] == "EDS"
    assert cluster_dict["edsClusterConfig"]["edsConfig"]["ads"] == {}
    assert cluster_dict["connectTimeout"] == "5s"
    assert cluster_dict["upstreamConnectionOptions"]["tcpKeepalive"]["keepaliveTime"] == 60
    tls = cluster_dict["transportSocket"]["typedConfig"]
    context = tls["commonTlsContext"]
    assert context["tlsCertificateSdsSecretConfigs"][0]["name"] == "kafka-a/client-certificate"
    assert context["validationContextSdsSecretConfig"]["name"] == "kafka-a/trusted-ca"
    certificate, trusted_ca = (decoded(secret).to_dict() for secret in built.secrets)
    assert certificate["tlsCertificate"]["certificateChain"] == {"filename": "/etc/client.pem"}
    assert certificate["tlsCertificate"]["privateKey"] == {"filename": "/etc/client.key"}
    assert trusted_ca["validationContext"]["trustedCa"] == {"filename": "/etc/ca.pem"}
    assert "sni" not in tls  # an IP literal is no server name (RFC 6066)


def test_sni_is_the_brokers_dns_name_when_it_registered_one():
    named = PlannedBroker(
        "kafka-a",
        1,
        HostPort("127.0.0.10", 9091),
        HostPort("10.0.0.7", 9094),
        None,
        server_name="kafka-0.kafka.svc",
    )
    built = ResourceBuilder().build([(named, TLS)], SidecarSettings())[0]
    assert decoded(built.cluster).to_dict()["transportSocket"]["typedConfig"]["sni"] == "kafka-0.kafka.svc"


NAMED_TLS = TLS.model_copy(
    update={
        "broker_names": BrokerNames(
            dns=("{broker_id}.{cluster}.svc",),
            uri=("spiffe://example.org/ns/kafka/sa/{cluster}/broker-{broker_id}",),
        )
    }
)


def _validation(built: BrokerResources) -> dict[str, Any]:
    common: dict[str, Any] = decoded(built.cluster).to_dict()["transportSocket"]["typedConfig"][
        "commonTlsContext"
    ]
    return common


def test_each_brokers_cluster_verifies_the_names_rendered_for_its_id_and_the_ca_still_comes_by_sds():
    one, two = ResourceBuilder().build(
        [(planned(1), NAMED_TLS), (planned(2, "10.0.0.2"), NAMED_TLS)], SidecarSettings()
    )
    for built, broker_id in ((one, 1), (two, 2)):
        combined = _validation(built)["combinedValidationContext"]
        assert combined["defaultValidationContext"]["matchTypedSubjectAltNames"] == [
            {"sanType": "DNS", "matcher": {"exact": f"{broker_id}.kafka-a.svc"}},
            {
                "sanType": "URI",
                "matcher": {"exact": f"spiffe://example.org/ns/kafka/sa/kafka-a/broker-{broker_id}"},
            },
        ]
        assert combined["validationContextSdsSecretConfig"]["name"] == "kafka-a/trusted-ca"
        assert "validationContextSdsSecretConfig" not in _validation(built)
        assert built.cluster.references == {"kafka-a/client-certificate", "kafka-a/trusted-ca"}
    assert one.secrets == two.secrets  # one trusted-CA Secret for the whole Kafka cluster


def test_with_verify_broker_names_false_the_cluster_only_names_the_trusted_ca_secret():
    off = TLS.model_copy(update={"verify_broker_names": False})
    (built,) = ResourceBuilder().build([(planned(1), off)], SidecarSettings())
    context = _validation(built)
    assert context["validationContextSdsSecretConfig"]["name"] == "kafka-a/trusted-ca"
    assert "combinedValidationContext" not in context


def test_moving_a_broker_with_verified_names_changes_only_its_endpoints():
    builder = ResourceBuilder()
    (before,) = builder.build([(planned(1), NAMED_TLS)], SidecarSettings())
    (after,) = builder.build([(planned(1, "10.0.0.9"), NAMED_TLS)], SidecarSettings())
    assert after.cluster is before.cluster  # the names come from the id, not the address
    assert after.listener is before.listener
    assert after.secrets == before.secrets
    assert after.endpoints.version != before.endpoints.version


def test_a_new_name_template_changes_the_clusters_and_not_the_secrets():
    builder = ResourceBuilder()
    (before,) = builder.build([(planned(1), NAMED_TLS)], SidecarSettings())
    renamed = NAMED_TLS.model_copy(
        update={"broker_names": BrokerNames(dns=("kafka-{broker_id}.{cluster}.svc",))}
    )
    (after,) = builder.build([(planned(1), renamed)], SidecarSettings())
    assert after.cluster.version != before.cluster.version
    assert (after.listener, after.endpoints, after.secrets) == (
        before.listener,
        before.endpoints,
        before.secrets,
    )


def test_plain_tcp_cluster_has_no_transport_socket():
    built = ResourceBuilder().build([(planned(1), None)], SidecarSettings())[0]
    assert "transportSocket" not in decoded(built.cluster).to_dict()


def test_endpoints_carry_the_rack_as_locality_zone():
    built = ResourceBuilder().build([(planned(1, rack="euw1-az2"), TLS)], SidecarSettings())[0]
    assignment = decoded(built.endpoints).to_dict()
    group = assignment["endpoints"][0]
    assert group["locality"] == {"zone": "euw1-az2"}
    address = group["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]
    assert address == {"address": "10.0.0.1", "portValue": 9094}


def test_broker_in_grace_has_no_endpoints():
    built = ResourceBuilder().build([(planned(1, upstream=None), TLS)], SidecarSettings())[0]
    assert decoded(built.endpoints).to_dict().get("endpoints", []) == []


def test_moving_a_broker_changes_only_its_endpoints_and_rebuilds_nothing_else():
    builder = ResourceBuilder()
    before = builder.build([(planned(1), TLS), (planned(2, "10.0.0.2"), TLS)], SidecarSettings())
    after = builder.build([(planned(1, "10.0.0.9"), TLS), (planned(2, "10.0.0.2"), TLS)], SidecarSettings())
    assert after[0].listener is before[0].listener
    assert after[0].cluster is before[0].cluster
    assert after[0].endpoints.version != before[0].endpoints.version
    assert after[1] == before[1]
    built, reused = builder.counts
    assert (built, reused) == (9, 7)  # 6 and the cluster's 2 secrets first, then only broker 1's endpoints


def test_a_new_certificate_path_changes_only_the_secret():
    builder = ResourceBuilder()
    (before,) = builder.build([(planned(1), TLS)], SidecarSettings())
    moved_files = TLS.model_copy(update={"cert_file": "/etc/renewed/client.pem"})
    (after,) = builder.build([(planned(1), moved_files)], SidecarSettings())
    assert (after.listener, after.cluster, after.endpoints) == (
        before.listener,
        before.cluster,
        before.endpoints,
    )
    assert after.secrets[0].version != before.secrets[0].version
    assert after.secrets[1] is before.secrets[1]


def test_builder_forgets_resources_the_last_build_did_not_use():
    builder = ResourceBuilder()
    first = builder.build([(planned(1), TLS), (planned(2, "10.0.0.2"), TLS)], SidecarSettings())
    builder.build([(planned(1), TLS)], SidecarSettings())
    again = builder.build([(planned(1), TLS), (planned(2, "10.0.0.2"), TLS)], SidecarSettings())
    assert again[0].cluster is first[0].cluster
    assert again[1].cluster is not first[1].cluster  # built anew: broker 2 was gone for one build
    assert builder.counts == (11, 10)


def test_versions_are_content_hashes_stable_across_builders():
    one = Snapshot.from_brokers(ResourceBuilder().build([(planned(1), TLS)], SidecarSettings()))
    two = Snapshot.from_brokers(ResourceBuilder().build([(planned(1), TLS)], SidecarSettings()))
    assert one.versions() == two.versions()


# Snapshots ----------------------------------------------------------------------------------------


def test_snapshot_refuses_a_listener_without_its_cluster():
    built = ResourceBuilder().build([(planned(1), TLS)], SidecarSettings())[0]
    with pytest.raises(InconsistentSnapshot, match="missing clusters"):
        Snapshot.of([built.listener, built.endpoints])


def test_snapshot_refuses_a_cluster_without_its_secrets():
    built = ResourceBuilder().build([(planned(1), TLS)], SidecarSettings())[0]
    with pytest.raises(InconsistentSnapshot, match="missing secrets \\['kafka-a/trusted-ca'\\]"):
        Snapshot.of([built.listener, built.cluster, built.endpoints, built.secrets[0]])


def test_snapshot_holds_each_kafka_clusters_secrets_once():
    brokers = ResourceBuilder().build([(planned(1), TLS), (planned(2, "10.0.0.2"), TLS)], SidecarSettings())
    snapshot = Snapshot.from_brokers(brokers)
    assert list(snapshot.resources(SECRET_TYPE)) == ["kafka-a/client-certificate", "kafka-a/trusted-ca"]


def test_snapshot_refuses_a_name_twice():
    built = ResourceBuilder().build([(planned(1), TLS)], SidecarSettings())[0]
    with pytest.raises(InconsistentSnapshot, match="twice"):
        Snapshot.of([built.cluster, built.cluster, built.endpoints])


def test_snapshot_rendering_never_shows_private_key_material():
    inline = {
        "privateKey": {"inlineString": "-----BEGIN PRIVATE KEY-----"},
        "certificateChain": {"filename": "/c"},
    }
    assert redact(inline) == {
        "privateKey": {"inlineString": REDACTED},
        "certificateChain": {"filename": "/c"},
    }
    snapshot = Snapshot.from_brokers(ResourceBuilder().build([(planned(1), TLS)], SidecarSettings()))
    rendered = render_snapshot(snapshot, type_filter="secrets")
    assert list(rendered["types"]) == ["secrets"]
    secret_json = rendered["types"]["secrets"]["resources"]["kafka-a/client-certificate"]["resource"]
    assert "/etc/client.key" in str(secret_json)  # paths are not secrets


def test_redaction_covers_every_secret_field_that_can_hold_key_material():
    secret = {
        "name": "s",
        "tlsCertificate": {
            "certificateChain": {"inlineString": "-----BEGIN CERTIFICATE-----"},
            "privateKey": {"inlineBytes": "a2V5"},
            "password": {"inlineString": "hunter2"},
            "pkcs12": {"inlineBytes": "cGtjczEy"},
        },
        "genericSecret": {"secret": {"inlineString": "token"}},
        "sessionTicketKeys": {"keys": [{"inlineBytes": "a2V5"}, {"filename": "/ticket.key"}]},
    }
    assert redact(secret) == {
        "name": "s",
        "tlsCertificate": {
            "certificateChain": {"inlineString": "-----BEGIN CERTIFICATE-----"},  # public
            "privateKey": {"inlineBytes": REDACTED},
            "password": {"inlineString": REDACTED},
            "pkcs12": {"inlineBytes": REDACTED},
        },
        "genericSecret": {"secret": {"inlineString": REDACTED}},
        "sessionTicketKeys": {"keys": [{"inlineBytes": REDACTED}, {"filename": "/ticket.key"}]},
    }


# Controller ---------------------------------------------------------------------------------------


def controller_config(debounce_ms: int, *clusters: dict[str, Any]) -> Config:
    """A config of static clusters (kafka-a on 127.0.0.10, kafka-b on .11, ...) with `clusters` overrides."""
    return parse_config(
        {
            "upstream_tls": None,
            "xds": {"debounce_ms": debounce_ms, "tls": None},
            "kafka_clusters": [
                {
                    "name": f"kafka-{'abc'[index]}",
                    "loopback_ip": f"127.0.0.{10 + index}",
                    "port_base": 9090,
                    "upstream_listener": "MESH",
                    "static": {"brokers": []},
                    **overrides,
                }
                for index, overrides in enumerate(clusters)
            ],
        }
    )


async def test_controller_publishes_nothing_until_every_source_synced():
    config = controller_config(0, {}, {})
    cache = Publisher()
    controller = Controller(config, cache)
    controller.submit(Topology.create("kafka-a", "static", SourceState.SYNCED, [broker(1)]))
    assert await controller.rebuild() is None
    assert set(controller.waiting()) == {"kafka-b"}
    assert cache.snapshot is None
    controller.submit(Topology.create("kafka-b", "static", SourceState.SYNCED, [broker(1)]))
    report = await controller.rebuild()
    assert report is not None and report.published
    assert cache.snapshot is not None
    assert set(cache.snapshot.resources(LISTENER_TYPE)) == {"kafka-a/broker-1", "kafka-b/broker-1"}


async def test_controller_debounces_a_burst_into_one_publish():
    config = controller_config(200, {})
    cache = Publisher()
    controller = Controller(config, cache)
    task = asyncio.create_task(controller.run())
    try:
        for count in range(1, 31):  # a rolling restart: 30 registrations in quick succession
            controller.submit(synced(*(broker(i, f"10.0.0.{i}") for i in range(1, count + 1))))
            await asyncio.sleep(0.001)
        for _ in range(100):
            if cache.snapshot is not None and len(cache.snapshot.resources(CLUSTER_TYPE)) == 30:
                break
            await asyncio.sleep(0.05)
        assert len(cache.snapshot.resources(ENDPOINT_TYPE)) == 30  # type: ignore[union-attr]
        assert cache.generation <= 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_controller_removes_a_departed_broker_at_its_grace_deadline():
    now = [1000.0]
    config = controller_config(0, {"removal_grace_seconds": 0.3})
    cache = Publisher()
    controller = Controller(config, cache, clock=lambda: now[0])
    controller.submit(synced(broker(1), broker(2)))
    await controller.rebuild()
    controller.submit(synced(broker(1)))
    await controller.rebuild()
    assert cache.snapshot is not None
    assert set(cache.snapshot.resources(LISTENER_TYPE)) == {"kafka-a/broker-1", "kafka-a/broker-2"}
    now[0] += 0.5
    task = asyncio.create_task(controller.run())
    try:
        for _ in range(100):
            if set(cache.snapshot.resources(LISTENER_TYPE)) == {"kafka-a/broker-1"}:
                break
            await asyncio.sleep(0.02)
        assert set(cache.snapshot.resources(LISTENER_TYPE)) == {"kafka-a/broker-1"}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_controller_logs_a_broker_the_plan_leaves_out_once(caplog):
    config = controller_config(0, {"max_broker_id": 5})
    controller = Controller(config, Publisher())
    caplog.set_level(logging.ERROR, logger="kafka_xds")
    controller.submit(synced(broker(1), broker(9)))
    await controller.rebuild()
    controller.submit(synced(broker(1, "10.0.0.5"), broker(9)))
    await controller.rebuild()
    logged = [r.__dict__["fields"] for r in caplog.records if "left out of the plan" in r.getMessage()]
    assert len(logged) == 1, logged
    assert logged[0]["broker"] == 9 and "broker id 9" in logged[0]["reason"]


async def test_source_errors_count_trouble_not_notices():
    metrics = Metrics()
    controller = Controller(controller_config(0, {}), Publisher(), metrics=metrics)

    def errors() -> float:
        value = metrics.registry.get_sample_value("kafka_xds_source_errors_total", {"cluster": "kafka-a"})
        return value or 0.0

    waiting = Topology.create("kafka-a", "static", SourceState.SYNCING, error="waiting for a first answer")
    controller.submit(waiting)
    assert errors() == 0
    controller.submit(synced(broker(1)))
    controller.submit(synced(broker(1)).went_stale("connection refused", 1.0))
    controller.submit(synced(broker(1)).went_stale("timed out", 2.0))
    assert errors() == 2


async def test_an_isolated_change_is_published_at_once_and_a_burst_once_per_window():
    config = controller_config(1500, {})
    cache = Publisher()
    controller = Controller(config, cache)
    task = asyncio.create_task(controller.run())

    async def generation_reaches(generation: int, within: float) -> bool:
        for _ in range(int(within / 0.02)):
            if cache.generation >= generation:
                return True
            await asyncio.sleep(0.02)
        return False

    try:
        controller.submit(synced(broker(1, "10.0.0.1")))
        assert await generation_reaches(1, within=1.0)
        await asyncio.sleep(1.6)  # a quiet window: the next change is isolated
        controller.submit(synced(broker(1, "10.0.0.9")))
        assert await generation_reaches(2, within=1.0)  # not held for the 1.5 s window
        controller.submit(synced(broker(1, "10.0.0.8")))  # within the window: waits for its end
        await asyncio.sleep(0.5)
        assert cache.generation == 2
        assert await generation_reaches(3, within=3.0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
