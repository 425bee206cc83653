"""The wire encoders write exactly the bytes envoy-data-plane's typed messages serialize to.

Cases are generated: a grid over the axes that change a message's shape (TLS, SNI, rack, grace,
host kinds, file paths and their directories, settings at varint and rounding boundaries) plus a
seeded random sample of names, hosts, ports, paths and settings. The seed is fixed, so every run
checks the same cases, and a failure names the inputs that broke.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import betterproto2
import pytest

from xds.config.model import BrokerNames, SidecarSettings, SubjectAltName, UpstreamTls
from xds.pipeline.plan import PlannedBroker
from xds.pipeline.resources import encode
from xds.pipeline.resources.builder import ResourceBuilder
from xds.pipeline.resources.encode import (
    encode_certificate,
    encode_cluster,
    encode_endpoints,
    encode_listener,
    encode_trusted_ca,
)
from xds.pipeline.resources.inputs import (
    CertificateInputs,
    ClusterInputs,
    EndpointInputs,
    ListenerInputs,
    TlsSecrets,
    TrustedCaInputs,
    resource_name,
    watched_directory,
)
from xds.pipeline.resources.typed import (
    TYPED_ENCODERS,
    decode,
    decoded,
    typed_certificate,
    typed_cluster,
    typed_endpoints,
    typed_listener,
    typed_trusted_ca,
)
from xds.shared import wire
from xds.shared.addresses import HostPort
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE

T = TypeVar("T")
SEED = 20240611
RANDOM_CASES = 150

BROKER_IDS = (0, 1, 127, 128, 16384, 2**31 - 1, 2**63 - 1, 10**30)
PORTS = (0, 1, 127, 128, 9092, 16383, 16384, 65535, 2**32 - 1)
HOSTS = (
    "127.0.0.10",
    "0.0.0.0",
    "255.255.255.255",
    "::1",
    "::",
    "2001:db8::8a2e:370:7334",
    "fe80::1%eth0",
    "::ffff:10.0.0.1",
    "kafka-0.kafka.svc.cluster.local",
    "localhost",
    "",
)
SECONDS = (
    1e-6,
    4e-7,  # rounds to no time at all: an empty Duration
    5e-7,  # half a microsecond: timedelta rounds half to even
    1.5e-6,
    0.1,
    0.25,
    0.999999,
    1.0,
    1.0000005,
    5,
    59.9999995,
    600,
    3600,
    86400.5,
    1e9 + 0.123456,
    2**53 / 1e6,
    8.6e13,  # near timedelta's limit (999999999 days)
)
COUNTS = (0, 1, 3, 127, 128, 16384, 2**31, 2**32 - 1)
RACKS = (None, "", "az1", "euw1-az2", "zone ü 日本", "r" * 200)
SERVER_NAMES = (None, "", "kafka-0.kafka.svc", "b" * 300)
BROKER_NAME_SETS: tuple[tuple[SubjectAltName, ...], ...] = (
    (),  # verify_broker_names: false
    (SubjectAltName("dns", "1.kafka-a.svc"),),
    (SubjectAltName("dns", "*.kafka-a.svc"), SubjectAltName("uri", "spiffe://example.org/ns/kafka/broker-1")),
    (SubjectAltName("uri", "urn:ü日本🚀"), SubjectAltName("uri", "u" * 300), SubjectAltName("dns", "")),
)
TLS_SETTINGS = (
    None,
    UpstreamTls(ca_file="/etc/ca.pem", cert_file="/etc/client.pem", key_file="/etc/client.key"),
    UpstreamTls(ca_file="", cert_file="", key_file=""),
    UpstreamTls(ca_file="/ç/ä.pem", cert_file="/🚀/c.pem", key_file="/k" * 100),
)
KAFKA_CLUSTERS = ("kafka-a", "k", "", "a" * 63, "b" * 200)
SECRETS = (None, *(TlsSecrets.of(kafka) for kafka in KAFKA_CLUSTERS))
PATHS = (
    "/etc/kafka-tls/tls.crt",  # a Kubernetes Secret volume: a link to ..data/tls.crt
    "/etc/kafka-tls/..data/tls.crt",
    "/tls.crt",
    "tls.crt",  # relative: Envoy's working directory
    "certs/tls.crt",
    "/etc/kafka-tls/",
    "",
    "/ç/ä/🚀.pem",
    "/" + "d/" * 100 + "c.pem",
)
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._/~:@%+ éü日本🚀"


def sidecar(
    connect: float = 5.0, idle: float = 3600.0, probes: int = 3, time: int = 60, interval: int = 10
) -> SidecarSettings:
    """Settings as the encoders see them, including values config validation would refuse."""
    return SidecarSettings.model_construct(
        connect_timeout_seconds=connect,
        idle_timeout_seconds=idle,
        keepalive_probes=probes,
        keepalive_time_seconds=time,
        keepalive_interval_seconds=interval,
    )


SIDECARS = (
    SidecarSettings(),
    sidecar(connect=0.25, idle=600.5, probes=1, time=1, interval=1),
    sidecar(connect=1e9 + 0.5, idle=8.6e13, probes=2**32 - 1, time=16384, interval=128),
    sidecar(connect=4e-7, idle=1e-6, probes=0, time=0, interval=0),
)


def name_of(cluster: str, broker_id: int) -> str:
    return resource_name(PlannedBroker(cluster, broker_id, HostPort("127.0.0.1", 1), None, None))


def random_text(rng: random.Random, longest: int) -> str:
    length = rng.choice((0, 1, rng.randrange(2, 20), rng.randrange(20, longest)))
    return "".join(rng.choice(_NAME_CHARS) for _ in range(length))


def random_name(rng: random.Random) -> str:
    cluster = rng.choice(("kafka-a", "k", "a" * 63, random_text(rng, 200)))
    return name_of(cluster, rng.choice((*BROKER_IDS, rng.randrange(10**6))))


def random_host(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return str(ipaddress.IPv4Address(rng.getrandbits(32)))
    if kind == 1:
        return str(ipaddress.IPv6Address(rng.getrandbits(128)))
    if kind == 2:
        return ".".join(random_text(rng, 64).replace(".", "") or "x" for _ in range(rng.randrange(1, 5)))
    return rng.choice(HOSTS)


def random_host_port(rng: random.Random) -> HostPort:
    return HostPort(random_host(rng), rng.choice((*PORTS, rng.randrange(65536))))


def random_seconds(rng: random.Random) -> float:
    return rng.choice((*SECONDS, rng.uniform(0, 1e6), rng.randrange(10**12) / 10 ** rng.randrange(10)))


def random_sidecar(rng: random.Random) -> SidecarSettings:
    return sidecar(
        random_seconds(rng), random_seconds(rng), rng.choice(COUNTS), rng.choice(COUNTS), rng.choice(COUNTS)
    )


def random_secrets(rng: random.Random) -> TlsSecrets | None:
    if rng.random() < 0.25:
        return None
    return TlsSecrets.of(rng.choice((*KAFKA_CLUSTERS, random_text(rng, 200))))


def random_path(rng: random.Random) -> str:
    return rng.choice((*PATHS, random_text(rng, 300)))


def cases(grid: Iterable[T], sample: Callable[[random.Random], T]) -> list[T]:
    rng = random.Random(SEED)
    return [*grid, *(sample(rng) for _ in range(RANDOM_CASES))]


LISTENER_CASES = cases(
    (
        ListenerInputs("kafka-a", name_of("kafka-a", broker_id), HostPort(host, port), seconds)
        for broker_id, host, port, seconds in zip(
            itertools.cycle(BROKER_IDS),
            itertools.cycle(HOSTS),
            itertools.cycle(PORTS),
            SECONDS * 8,
            strict=False,
        )
    ),
    lambda rng: ListenerInputs("kafka-a", random_name(rng), random_host_port(rng), random_seconds(rng)),
)
CLUSTER_CASES = cases(
    (
        ClusterInputs("kafka-a", name_of("kafka-a", broker_id), server_name, secrets, settings, names)
        for (secrets, server_name, settings, names), broker_id in zip(
            itertools.product(SECRETS, SERVER_NAMES, SIDECARS, BROKER_NAME_SETS),
            itertools.cycle(BROKER_IDS),
            strict=False,
        )
    ),
    lambda rng: ClusterInputs(
        "kafka-a",
        random_name(rng),
        rng.choice((None, "", random_host(rng))),
        random_secrets(rng),
        random_sidecar(rng),
        tuple(
            SubjectAltName(rng.choice(("dns", "uri")), random_text(rng, 300)) for _ in range(rng.randrange(4))
        ),
    ),
)
CERTIFICATE_CASES = cases(
    (
        CertificateInputs(kafka, TlsSecrets.of(kafka).certificate, cert_file, key_file)
        for (cert_file, key_file), kafka in zip(
            itertools.product(PATHS, PATHS), itertools.cycle(KAFKA_CLUSTERS), strict=False
        )
    ),
    lambda rng: CertificateInputs("kafka-a", random_text(rng, 200), random_path(rng), random_path(rng)),
)
TRUSTED_CA_CASES = cases(
    (
        TrustedCaInputs(kafka, TlsSecrets.of(kafka).trusted_ca, ca_file)
        for ca_file, kafka in itertools.product(PATHS, KAFKA_CLUSTERS)
    ),
    lambda rng: TrustedCaInputs("kafka-a", random_text(rng, 200), random_path(rng)),
)
ENDPOINT_CASES = cases(
    (
        EndpointInputs("kafka-a", name_of("kafka-a", broker_id), upstream, rack)
        for (upstream, rack), broker_id in zip(
            itertools.product(
                (None, *(HostPort(host, port) for host, port in zip(HOSTS, PORTS * 2, strict=False))), RACKS
            ),
            itertools.cycle(BROKER_IDS),
            strict=False,
        )
    ),
    lambda rng: EndpointInputs(
        "kafka-a",
        random_name(rng),
        None if rng.random() < 0.2 else random_host_port(rng),
        rng.choice((*RACKS, random_text(rng, 300))),
    ),
)
KINDS: dict[str, tuple[Sequence[Any], Callable[[Any], betterproto2.Message], Callable[[Any], bytes]]] = {
    "listener": (LISTENER_CASES, typed_listener, encode_listener),
    "cluster": (CLUSTER_CASES, typed_cluster, encode_cluster),
    "endpoints": (ENDPOINT_CASES, typed_endpoints, encode_endpoints),
    "certificate": (CERTIFICATE_CASES, typed_certificate, encode_certificate),
    "trusted_ca": (TRUSTED_CA_CASES, typed_trusted_ca, encode_trusted_ca),
}


def assert_same_bytes(
    cases: Sequence[T], typed: Callable[[T], betterproto2.Message], fast: Callable[[T], bytes]
) -> None:
    for inputs in cases:
        expected, written = bytes(typed(inputs)), fast(inputs)
        if written != expected:
            at = next(
                (
                    index
                    for index, pair in enumerate(zip(expected, written, strict=False))
                    if pair[0] != pair[1]
                ),
                min(len(expected), len(written)),
            )
            raise AssertionError(
                f"{inputs!r}: bytes differ from offset {at} "
                f"(typed {len(expected)} bytes: {expected[at : at + 16]!r}..., "
                f"encoder {len(written)} bytes: {written[at : at + 16]!r}...)"
            )


@pytest.mark.parametrize("kind", KINDS)
def test_encoder_writes_the_bytes_of_the_typed_message(kind):
    cases, typed, fast = KINDS[kind]
    assert_same_bytes(cases, typed, fast)


@pytest.mark.parametrize("kind", KINDS)
def test_a_one_byte_change_in_an_encoder_is_caught(kind):
    cases, typed, fast = KINDS[kind]

    def off_by_one_byte(inputs: Any) -> bytes:
        written = bytearray(fast(inputs))
        written[len(written) // 2] ^= 0x01
        return bytes(written)

    assert len(cases) > RANDOM_CASES
    with pytest.raises(AssertionError, match="bytes differ"):
        assert_same_bytes(cases, typed, off_by_one_byte)


def test_a_changed_constant_in_the_listener_encoder_is_caught(monkeypatch):
    monkeypatch.setattr(encode, "_OUTBOUND", wire.int64(16, 1))  # INBOUND: one byte apart
    with pytest.raises(AssertionError, match="bytes differ"):
        assert_same_bytes(LISTENER_CASES, typed_listener, encode_listener)


@pytest.mark.parametrize(
    ("kind", "inputs"),
    [
        ("listener", ListenerInputs("k", "k/broker-1", HostPort("127.0.0.1", 2**32), 1.0)),
        ("listener", ListenerInputs("k", "k/broker-1", HostPort("127.0.0.1", -1), 1.0)),
        ("listener", ListenerInputs("k", "k/broker-1", HostPort("127.0.0.1", 1), 1e15)),
        ("listener", ListenerInputs("k", "k/broker-1", HostPort("127.0.0.1", 1), float("nan"))),
        ("cluster", ClusterInputs("k", "k/broker-1", None, None, sidecar(probes=2**32))),
        ("cluster", ClusterInputs("k", "k/broker-1", None, None, sidecar(connect=float("inf")))),
        ("endpoints", EndpointInputs("k", "k/broker-1", HostPort("10.0.0.1", 2**32), None)),
        ("endpoints", EndpointInputs("k", "k/broker-1\ud800", HostPort("10.0.0.1", 1), None)),
        ("certificate", CertificateInputs("k", "k/client-certificate", "/c\ud800.pem", "/k.pem")),
        ("trusted_ca", TrustedCaInputs("k", "k/trusted-ca", "/ca\ud800/ca.pem")),
    ],
)
def test_inputs_the_typed_model_refuses_the_encoder_refuses_too(kind, inputs):
    _, typed, fast = KINDS[kind]
    with pytest.raises((ValueError, OverflowError)):
        bytes(typed(inputs))
    with pytest.raises((ValueError, OverflowError)):
        fast(inputs)


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 255, 16383, 16384, 2**21, 2**28, 2**32 - 1, 2**35, 2**63 - 1, 2**64 - 1]
)
def test_varint_matches_betterproto(value):
    assert wire.varint(value) == betterproto2.encode_varint(value)


@pytest.mark.parametrize("value", [-1, -128, -(2**31), -(2**63), 2**63 - 1])
def test_int64_field_matches_betterproto_for_negative_and_extreme_values(value):
    assert wire.int64(3, value) == betterproto2.encode_varint(3 << 3) + betterproto2.encode_varint(value)


@pytest.mark.parametrize("value", [-1, 2**64])
def test_varint_refuses_what_64_bits_cannot_hold(value):
    with pytest.raises(ValueError, match="out of range"):
        wire.varint(value)


def plan(broker_count: int) -> list[tuple[PlannedBroker, UpstreamTls | None]]:
    plain_tls = TLS_SETTINGS[1]
    named_tls = plain_tls.model_copy(update={"broker_names": BrokerNames(dns=("{broker_id}.{cluster}.svc",))})
    return [
        (
            PlannedBroker(
                f"kafka-{broker_id % 2}",
                broker_id,
                HostPort("127.0.0.10", 9090 + broker_id),
                None if broker_id == 3 else HostPort(f"10.0.0.{broker_id}", 9094),
                f"az{broker_id % 3}" if broker_id % 4 else None,
                server_name=f"kafka-{broker_id}.svc" if broker_id % 2 else None,
            ),
            None if broker_id == 5 else named_tls if broker_id % 3 else plain_tls,
        )
        for broker_id in range(broker_count)
    ]


def test_builder_on_either_path_builds_the_same_resources():
    fields = ("type_url", "name", "version", "payload", "references", "kafka_cluster")
    fast = ResourceBuilder().build(plan(8), SidecarSettings())
    typed = ResourceBuilder(TYPED_ENCODERS).build(plan(8), SidecarSettings())
    for ours, reference in zip(fast, typed, strict=True):
        for resource, expected in zip(
            (ours.listener, ours.cluster, ours.endpoints, *ours.secrets),
            (reference.listener, reference.cluster, reference.endpoints, *reference.secrets),
            strict=True,
        ):
            assert [getattr(resource, field) for field in fields] == [
                getattr(expected, field) for field in fields
            ]


def test_version_is_the_hash_of_the_payload():
    built = ResourceBuilder().build(plan(1), SidecarSettings())[0]
    for resource in (built.listener, built.cluster, built.endpoints, *built.secrets):
        assert resource.version == hashlib.sha256(resource.payload).hexdigest()[:16]


def test_resources_know_their_kafka_cluster_and_what_they_reference():
    built = ResourceBuilder().build(plan(2), SidecarSettings())
    for broker_id, broker in enumerate(built):
        kafka = f"kafka-{broker_id % 2}"
        assert {
            resource.kafka_cluster for resource in (broker.listener, broker.cluster, broker.endpoints)
        } | {secret.kafka_cluster for secret in broker.secrets} == {kafka}
        assert broker.listener.references == {f"{kafka}/broker-{broker_id}"}
        assert broker.cluster.references == {f"{kafka}/client-certificate", f"{kafka}/trusted-ca"}
        assert broker.endpoints.references == frozenset()
        assert all(secret.references == frozenset() for secret in broker.secrets)


def test_a_kafka_clusters_brokers_share_its_two_secrets():
    built = ResourceBuilder().build(plan(6), SidecarSettings())
    with_tls = [broker for broker in built if broker.cluster.references]
    assert [secret.name for secret in with_tls[0].secrets] == [
        "kafka-0/client-certificate",
        "kafka-0/trusted-ca",
    ]
    for broker in with_tls:
        same_cluster = next(
            other for other in with_tls if other.listener.kafka_cluster == broker.listener.kafka_cluster
        )
        assert all(a is b for a, b in zip(broker.secrets, same_cluster.secrets, strict=True))
        assert {secret.name for secret in broker.secrets} == broker.cluster.references


def test_a_plain_tcp_cluster_uses_no_secrets():
    built = ResourceBuilder().build(plan(6), SidecarSettings())[5]  # broker 5: no TLS
    assert built.secrets == () and built.cluster.references == frozenset()
    assert "transportSocket" not in decoded(built.cluster).to_dict()


def test_the_cluster_names_its_secrets_and_never_a_file():
    built = ResourceBuilder().build(plan(1), SidecarSettings())[0]
    tls = decoded(built.cluster).to_dict()["transportSocket"]["typedConfig"]["commonTlsContext"]
    ads = {"ads": {}, "resourceApiVersion": "V3"}
    assert tls == {
        "tlsCertificateSdsSecretConfigs": [{"name": "kafka-0/client-certificate", "sdsConfig": ads}],
        "validationContextSdsSecretConfig": {"name": "kafka-0/trusted-ca", "sdsConfig": ads},
    }
    assert b"/etc/" not in built.cluster.payload


def test_secrets_name_the_files_and_the_directory_to_watch():
    tls = UpstreamTls(
        ca_file="/etc/kafka-ca/ca.crt", cert_file="/etc/kafka-tls/tls.crt", key_file="/etc/kafka-tls/tls.key"
    )
    planned = PlannedBroker("kafka-a", 1, HostPort("127.0.0.10", 9091), HostPort("10.0.0.1", 9094), None)
    certificate, trusted_ca = ResourceBuilder().build([(planned, tls)], SidecarSettings())[0].secrets
    assert decoded(certificate).to_dict() == {
        "name": "kafka-a/client-certificate",
        "tlsCertificate": {
            "certificateChain": {"filename": "/etc/kafka-tls/tls.crt"},
            "privateKey": {"filename": "/etc/kafka-tls/tls.key"},
            "watchedDirectory": {"path": "/etc/kafka-tls"},
        },
    }
    assert decoded(trusted_ca).to_dict() == {
        "name": "kafka-a/trusted-ca",
        "validationContext": {
            "trustedCa": {"filename": "/etc/kafka-ca/ca.crt"},
            "watchedDirectory": {"path": "/etc/kafka-ca"},
        },
    }


@pytest.mark.parametrize(
    ("path", "directory"),
    [
        ("/etc/kafka-tls/tls.crt", "/etc/kafka-tls"),  # the link, not ..data where it points
        ("/etc/kafka-tls/..data/tls.crt", "/etc/kafka-tls/..data"),
        ("/tls.crt", "/"),
        ("certs/tls.crt", "certs"),
        ("tls.crt", "."),  # relative to Envoy's working directory, as the file is
    ],
)
def test_the_watched_directory_is_the_files_directory_as_configured(path, directory):
    assert watched_directory(path) == directory


def test_cluster_stats_name_is_its_name_with_dots_for_slashes():
    built = ResourceBuilder().build(plan(3), SidecarSettings())[2]
    cluster = decoded(built.cluster).to_dict()
    assert (cluster["name"], cluster["altStatName"]) == ("kafka-0/broker-2", "kafka-0.broker-2")


@pytest.mark.parametrize("type_url", [LISTENER_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE, SECRET_TYPE])
def test_decode_reads_each_payload_back_into_its_message(type_url):
    built = ResourceBuilder().build(plan(1), SidecarSettings())[0]
    for resource in (built.listener, built.cluster, built.endpoints, *built.secrets):
        if resource.type_url == type_url:
            assert bytes(decoded(resource)) == resource.payload
            assert decoded(resource).to_dict() == decode(type_url, resource.payload).to_dict()


def test_decode_refuses_a_type_it_does_not_know():
    with pytest.raises(ValueError, match="no envoy-data-plane message type"):
        decode("type.googleapis.com/envoy.config.route.v3.RouteConfiguration", b"")
