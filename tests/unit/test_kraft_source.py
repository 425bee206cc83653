"""The KRaft source's logic: diffing, candidates, stale handling, cluster-id refusal, backoff, config.

A scripted MetadataClient stands in for the network here (the real one, against a real
Kafka-protocol broker, is in test_kraft_e2e.py): each server answers what the test says it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.wait import eventually
from xds.config.model import ConfigError, KraftSettings, parse_config
from xds.kafka.client import make_ssl_context
from xds.kafka.metadata import ClusterMetadata, MetadataBroker, MetadataError, decode_metadata
from xds.pipeline.sources.kraft import KraftSource, backoff_delay
from xds.pipeline.topology import SourceState, Topology
from xds.shared.addresses import HostPort

BOOT = ["10.0.0.1:9094", "10.0.0.2:9094"]


def kraft_config(**kraft: Any) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": "kafka-b",
        "loopback_ip": "127.0.0.11",
        "port_base": 9090,
        "upstream_listener": "MESH",
        "kraft": {"bootstrap_servers": BOOT, **kraft},
    }
    return {"xds": {"tls": None}, "upstream_tls": None, "kafka_clusters": [cluster]}


def meta(
    *brokers: tuple[int, str, int] | tuple[int, str, int, str], cluster_id: str = "c1"
) -> ClusterMetadata:
    return ClusterMetadata(
        cluster_id, brokers[0][0] if brokers else None, tuple(MetadataBroker(*b) for b in brokers)
    )


class ScriptedClient:
    """Answers per server: a ClusterMetadata, or an exception to raise. Unknown servers refuse."""

    def __init__(self) -> None:
        self.answers: dict[str, ClusterMetadata | BaseException] = {}
        self.asked: list[str] = []
        self.closed = False

    async def fetch(self, server: HostPort) -> ClusterMetadata:
        self.asked.append(str(server))
        answer = self.answers.get(str(server), ConnectionRefusedError(111, "Connection refused"))
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True


class Harness:
    def __init__(self, **kraft: Any) -> None:
        self.config = parse_config(kraft_config(**kraft))
        self.client = ScriptedClient()
        self.published: list[Topology] = []
        self.sleeps: list[float] = []
        self.slept = asyncio.Event()
        self.source = KraftSource(
            self.config.kafka_clusters[0],
            client_factory=lambda settings, cluster: self.client,
            clock=lambda: 1000.0,
            rng=lambda: 1.0,
            sleep=self._sleep,
        )
        self.source._publish = self.published.append

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.slept.set()
        await asyncio.sleep(0)

    async def wait_sleeps(self, count: int) -> None:
        while len(self.sleeps) < count:
            self.slept.clear()
            await asyncio.wait_for(self.slept.wait(), 5)

    async def poll(self) -> bool:
        self.client.asked.clear()
        return await self.source.poll_once(self.client)

    @property
    def current(self) -> Topology:
        return self.published[-1]

    def endpoints(self) -> dict[int, str]:
        return {b.broker_id: str(b.endpoint("MESH")) for b in self.current.brokers}


async def test_first_answer_publishes_brokers_with_their_rack_and_the_cluster_id():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094, "az1"), (2, "10.1.0.2", 9094, "az2"))
    assert await h.poll()
    assert h.current.state is SourceState.SYNCED
    assert h.endpoints() == {1: "10.1.0.1:9094", 2: "10.1.0.2:9094"}
    assert [b.rack for b in h.current.brokers] == ["az1", "az2"]
    assert h.current.cluster_id == "c1"


async def test_only_a_real_change_publishes():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((2, "10.1.0.2", 9094), (1, "10.1.0.1", 9094))
    await h.poll()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094), (2, "10.1.0.2", 9094))  # reordered
    await h.poll()
    await h.poll()
    assert len(h.published) == 1
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094), (2, "10.1.0.9", 9094))  # moved
    await h.poll()
    assert len(h.published) == 2
    assert h.endpoints() == {1: "10.1.0.1:9094", 2: "10.1.0.9:9094"}
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094, "az1"), (2, "10.1.0.9", 9094))  # rack
    await h.poll()
    assert len(h.published) == 3


async def test_a_fenced_broker_leaves_the_topology_the_controller_applies_grace():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094), (2, "10.1.0.2", 9094))
    await h.poll()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094))
    await h.poll()
    assert h.endpoints() == {1: "10.1.0.1:9094"}
    assert h.current.state is SourceState.SYNCED


async def test_upstream_port_replaces_the_bootstrap_listeners_port():
    h = Harness(upstream_port=9095)
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094))
    await h.poll()
    assert h.endpoints() == {1: "10.1.0.1:9095"}


async def test_tries_every_bootstrap_server_then_learned_brokers_and_sticks_to_the_one_that_answered():
    h = Harness()
    h.client.answers["10.0.0.2:9094"] = meta((1, "10.1.0.1", 9094), (2, "10.1.0.2", 9094))
    assert await h.poll()
    assert h.client.asked == ["10.0.0.1:9094", "10.0.0.2:9094"]
    await h.poll()
    assert h.client.asked == ["10.0.0.2:9094"]  # the last server that answered goes first
    # Both bootstrap servers go away (a load balancer misconfigured, DNS gone): learned brokers answer.
    h.client.answers = {"10.1.0.2:9094": meta((1, "10.1.0.1", 9094), (2, "10.1.0.2", 9094))}
    assert await h.poll()
    assert h.client.asked == ["10.0.0.2:9094", "10.0.0.1:9094", "10.1.0.1:9094", "10.1.0.2:9094"]
    assert h.current.state is SourceState.SYNCED


async def test_learned_brokers_are_tried_a_few_per_poll_rotating():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta(*((i, f"10.1.0.{i}", 9094) for i in range(1, 8)))
    await h.poll()
    h.client.answers = {}
    await h.poll()
    first = [s for s in h.client.asked if s.startswith("10.1.")]
    await h.poll()
    second = [s for s in h.client.asked if s.startswith("10.1.")]
    assert len(first) == len(second) == 3
    assert not set(first) & set(second)


async def test_unreachable_cluster_keeps_the_last_brokers_marked_stale_with_each_servers_error():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094))
    await h.poll()
    h.client.answers = {"10.0.0.2:9094": TimeoutError()}
    assert not await h.poll()
    stale = h.current
    assert stale.state is SourceState.STALE
    assert stale.stale_since == 1000.0
    assert [b.broker_id for b in stale.brokers] == [1]
    assert "10.0.0.1:9094: connection refused" in (stale.error or "")
    assert "10.0.0.2:9094: timed out" in (stale.error or "")
    h.client.answers["10.0.0.2:9094"] = meta((1, "10.1.0.1", 9094))
    assert await h.poll()
    assert h.current.state is SourceState.SYNCED and h.current.error is None


async def test_never_synced_and_unreachable_stays_syncing_with_the_reason():
    h = Harness()
    assert not await h.poll()
    assert h.current.state is SourceState.SYNCING
    assert not h.current.brokers
    assert "connection refused" in (h.current.error or "")


async def test_an_answer_with_no_brokers_is_not_believed():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094))
    await h.poll()
    h.client.answers = {"10.0.0.1:9094": meta(), "10.1.0.1:9094": meta()}
    assert not await h.poll()
    assert h.current.state is SourceState.STALE
    assert [b.broker_id for b in h.current.brokers] == [1]
    assert "no live brokers" in (h.current.error or "")


async def test_a_kafka_error_answer_is_reported_and_the_next_server_asked():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = MetadataError("SaslAuthenticationFailed: bad password")
    h.client.answers["10.0.0.2:9094"] = meta((1, "10.1.0.1", 9094))
    assert await h.poll()
    assert h.current.state is SourceState.SYNCED


async def test_another_cluster_id_is_refused_and_the_last_brokers_kept():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094), cluster_id="c1")
    await h.poll()
    h.client.answers = {"10.0.0.1:9094": meta((7, "10.9.0.7", 9094), cluster_id="other")}
    assert not await h.poll()
    refused = h.current
    assert refused.state is SourceState.STALE
    assert [b.broker_id for b in refused.brokers] == [1]
    assert "'other' but was 'c1'" in (refused.error or "")
    assert refused.cluster_id == "c1"
    # One server answers for the right cluster again (e.g. the other bootstrap address): followed.
    h.client.answers["10.0.0.2:9094"] = meta((1, "10.1.0.5", 9094), cluster_id="c1")
    assert await h.poll()
    assert h.current.state is SourceState.SYNCED
    assert h.endpoints() == {1: "10.1.0.5:9094"}


async def test_run_backs_off_doubling_capped_and_polls_at_the_interval_once_answered():
    h = Harness(poll_interval_seconds=0.5, max_backoff_seconds=3)
    task = asyncio.create_task(h.source.run(h.published.append))
    await h.wait_sleeps(6)
    assert h.sleeps[:6] == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]  # rng() == 1.0: the top of each jitter range
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094))
    count = len(h.sleeps)
    await h.wait_sleeps(count + 3)
    assert h.sleeps[-2:] == [0.5, 0.5]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert h.client.closed


async def test_startup_timeout_serves_the_cluster_unavailable_until_it_answers():
    h = Harness(poll_interval_seconds=0.1, startup_timeout_seconds=0.3)
    h.source._sleep = asyncio.sleep
    task = asyncio.create_task(h.source.run(h.published.append))
    try:

        async def in_state(state: SourceState) -> Topology:
            assert h.published and h.current.state is state, h.published[-1:] or "nothing published"
            return h.current

        unavailable = await eventually(lambda: in_state(SourceState.UNAVAILABLE), timeout=10)
        assert "startup_timeout_seconds=0.3" in (unavailable.error or "")
        assert not unavailable.brokers
        h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094))
        await eventually(lambda: in_state(SourceState.SYNCED), timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("failures", "rng", "expected"),
    [
        (0, 0.0, 2.0),
        (1, 1.0, 4.0),
        (1, 0.0, 2.0),
        (2, 1.0, 8.0),
        (3, 0.5, 12.0),
        (10, 1.0, 30.0),
        (99, 0.0, 15.0),
    ],
)
def test_backoff_doubles_from_the_interval_is_capped_and_jittered_in_the_upper_half(failures, rng, expected):
    assert backoff_delay(failures, base=2.0, cap=30.0, rng=lambda: rng) == expected


def test_backoff_never_polls_faster_than_the_interval():
    assert backoff_delay(5, base=10.0, cap=3.0, rng=lambda: 0.0) == 10.0


def test_decode_metadata_takes_aiokafkas_answer_and_rejects_broken_ones():
    entry = {"node_id": 1, "host": "h1", "port": 9094, "rack": "az1"}
    answer = {
        "brokers": [entry],
        "cluster_id": "c1",
        "controller_id": -1,
    }
    decoded = decode_metadata(answer)
    assert decoded == ClusterMetadata("c1", None, (MetadataBroker(1, "h1", 9094, "az1"),))
    with pytest.raises(MetadataError, match="unexpected"):
        decode_metadata({"brokers": [{"node_id": 1}]})
    with pytest.raises(MetadataError, match="twice"):
        decode_metadata({"brokers": [entry, entry]})


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kraft", "key", "problem"),
    [
        ({"bootstrap_servers": []}, "kraft.bootstrap_servers", "at least 1"),
        ({"bootstrap_servers": ["kafka-0"]}, "kraft.bootstrap_servers[0]", "is not HOST:PORT"),
        ({"bootstrap_servers": ["kafka-0:99999"]}, "kraft.bootstrap_servers[0]", "is not HOST:PORT"),
        ({"security_protocol": "TLS"}, "kraft.security_protocol", "PLAINTEXT"),
        ({"ssl": {"ca_file": "ca.pem"}}, "kraft", "does not use TLS"),
        ({"security_protocol": "SASL_SSL"}, "kraft", "needs 'sasl'"),
        (
            {
                "security_protocol": "SSL",
                "sasl": {"mechanism": "PLAIN", "username": "u", "password_file": "p"},
            },
            "kraft",
            "does not use SASL",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl": {"mechanism": "GSSAPI", "username": "u", "password_file": "p"},
            },
            "kraft.sasl.mechanism",
            "SCRAM-SHA-512",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl": {"mechanism": "PLAIN", "username": "u", "password": "x"},
            },
            "kraft.sasl.password",
            "unknown key; did you mean 'password_file'?",
        ),
        ({"security_protocol": "SSL", "ssl": {"cert_file": "c.pem"}}, "kraft.ssl", "both 'cert_file'"),
        ({"poll_interval_seconds": 0}, "kraft.poll_interval_seconds", "expected at least 0.1, got 0"),
        ({"unknown": 1}, "kraft.unknown", "unknown key"),
        (
            {"sasl": {"mechanism": "PLAIN", "username": "u"}},
            "kraft.sasl.password_file",
            "required key is missing",
        ),
    ],
)
def test_bad_kraft_settings_are_refused_naming_the_key(kraft, key, problem):
    raw = kraft_config()
    raw["kafka_clusters"][0]["kraft"].update(kraft)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.key.startswith(f"kafka_clusters[0].{key}"), caught.value
    assert problem in caught.value.problem


def test_client_listener_cannot_be_checked_through_metadata():
    raw = kraft_config()
    raw["kafka_clusters"][0]["client_listener"] = "CLIENT"
    with pytest.raises(ConfigError, match="Metadata shows only the listener"):
        parse_config(raw)


def test_upstream_port_in_two_places_is_refused():
    raw = kraft_config(upstream_port=9095)
    raw["kafka_clusters"][0]["upstream_port"] = 9096
    with pytest.raises(ConfigError, match="set one"):
        parse_config(raw)


def test_full_security_settings_are_accepted():
    config = parse_config(
        kraft_config(
            security_protocol="SASL_SSL",
            ssl={"ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "k.pem"},
            sasl={"mechanism": "SCRAM-SHA-512", "username": "kafka-xds", "password_file": "pw"},
            bootstrap_servers=["kafka-b-0.kafka-b:9094", "[fd00::1]:9094"],
        )
    )
    kraft = config.kafka_clusters[0].kraft
    assert kraft is not None and kraft.sasl is not None and kraft.sasl.mechanism == "SCRAM-SHA-512"


def _settings(tmp_path: Path, **ssl_settings: Any) -> KraftSettings:
    config = parse_config(kraft_config(security_protocol="SSL", ssl=ssl_settings))
    kraft = config.kafka_clusters[0].kraft
    assert kraft is not None
    return kraft


def test_ssl_context_trusts_the_ca_and_carries_the_client_certificate(tmp_path):
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("kafka-xds")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "k.pem"))
    context = make_ssl_context(
        _settings(
            tmp_path,
            ca_file=str(tmp_path / "ca.pem"),
            cert_file=str(tmp_path / "c.pem"),
            key_file=str(tmp_path / "k.pem"),
        )
    )
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1
    with pytest.raises(FileNotFoundError):
        make_ssl_context(_settings(tmp_path, ca_file=str(tmp_path / "missing.pem")))


async def test_a_slow_first_answer_says_why_readyz_waits():
    h = Harness()
    answered = asyncio.Event()

    class SlowClient(ScriptedClient):
        async def fetch(self, server: HostPort) -> ClusterMetadata:
            await answered.wait()
            return meta((1, "10.1.0.1", 9094))

    h.client = SlowClient()

    async def published() -> Topology:
        assert h.published, "nothing published yet"
        return h.current

    task = asyncio.create_task(h.source.run(h.published.append))
    try:
        waiting = await eventually(published, timeout=10)
        assert waiting.state is SourceState.SYNCING
        assert waiting.error == "waiting for a Metadata answer from 10.0.0.1:9094, 10.0.0.2:9094"
        answered.set()
        await h.wait_sleeps(1)
        assert h.current.state is SourceState.SYNCED and h.current.error is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
