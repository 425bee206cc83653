"""End to end: certificates rotate in a real Envoy without a restart and without kafka-xds.

The sidecar's TLS files are laid out exactly as the kubelet writes a Kubernetes Secret volume, and
renewed as it does: a new hidden timestamped directory, then a new `..data` link renamed over the
old one. kafka-xds only named the files (SDS secrets with the directory to watch); Envoy sees the
rename and reloads them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import pytest
import trustme

from tests.conftest import Stack, base_config, write_static_brokers
from tests.e2e.test_envoy_e2e import _answers, _cluster, _stat
from tests.support.addresses import LoopbackAddresses
from tests.support.broker_names import BROKER_NAMES, FLEET_CERTIFICATE_NAME
from tests.support.envoy import Envoy
from tests.support.wait import eventually
from tests.support.xds_process import XdsProcess
from xds.demo.brokers import Certs, TlsUpstream, exchange

pytestmark = pytest.mark.envoy

OLD_NAME, NEW_NAME = "sidecar-2026-11.kafka-xds.test", "sidecar-2026-12.kafka-xds.test"
NOT_MODIFIED = ("cluster_manager.cluster_modified", "listener_manager.listener_modified")
CONTEXT_UPDATES = "cluster.kafka-a.broker-1.client_ssl_socket_factory.ssl_context_update_by_sds"


@pytest.fixture(params=["sotw", "delta"])
def api(request: pytest.FixtureRequest) -> str:
    """The ADS variant the sidecar speaks: every scenario runs with both."""
    value: str = request.param
    return value


class SecretVolume:
    """A Kubernetes Secret volume as the kubelet's atomic writer keeps it: each key a link through
    `..data` (`tls.crt -> ..data/tls.crt`), `..data` a relative link to a hidden timestamped
    directory holding the files. An update writes a new timestamped directory, points a temporary
    link at it, renames that link over `..data` (one atomic move in the volume's directory) and
    removes the old directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._updates = 0
        directory.mkdir(parents=True)

    def path(self, key: str) -> str:
        return str(self.directory / key)

    def write(self, files: Mapping[str, bytes]) -> None:
        self._updates += 1
        stamp = f"..2026_11_25_{9 + self._updates:02d}_00_00.{self._updates:09d}"
        (self.directory / stamp).mkdir()
        for key, content in files.items():
            (self.directory / stamp / key).write_bytes(content)
        data = self.directory / "..data"
        previous = os.readlink(data) if data.is_symlink() else None
        temporary = self.directory / "..data_tmp"
        os.symlink(stamp, temporary)
        os.replace(temporary, data)
        for key in files:
            if not (self.directory / key).is_symlink():
                os.symlink(f"..data/{key}", self.directory / key)
        if previous is not None:
            shutil.rmtree(self.directory / previous)


def _client_files(ca: trustme.CA, name: str, trusted: bytes) -> dict[str, bytes]:
    client = ca.issue_cert(name, common_name=name)
    return {
        "tls.crt": client.cert_chain_pems[0].bytes(),
        "tls.key": client.private_key_pem.bytes(),
        "ca.crt": trusted,
    }


def _upstream_tls(volume: SecretVolume) -> dict[str, object]:
    return {
        "ca_file": volume.path("ca.crt"),
        "cert_file": volume.path("tls.crt"),
        "key_file": volume.path("tls.key"),
        "broker_names": BROKER_NAMES,
    }


async def _modifications(envoy: Envoy) -> dict[str, int]:
    stats = await envoy.stats()
    return {name: stats.get(name, 0) for name in NOT_MODIFIED}


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection through the sidecar that stays open; it has answered once."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"hello\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"broker-1@")
    return reader, writer


async def _ask(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], line: str) -> str:
    reader, writer = connection
    writer.write(line.encode() + b"\n")
    await writer.drain()
    return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()


async def test_a_renewed_client_certificate_is_presented_on_new_connections_without_any_change(
    tmp_path: Path, stack: Stack, certs: Certs, api: str
) -> None:
    volume = SecretVolume(tmp_path / "kafka-tls")
    volume.write(_client_files(certs.ca, OLD_NAME, certs.ca.cert_pem.bytes()))
    cluster = _cluster(stack.loopback, stack.brokers_file)
    await stack.start([1], cluster, api=api, upstream_tls=_upstream_tls(volume))
    envoy = stack.envoy
    first = await eventually(lambda: _answers(stack.loopback, 9091, "broker-1"), what="traffic")
    assert f"commonName={OLD_NAME}" in first
    existing = await _open(stack.loopback, 9091)
    before = await _modifications(envoy)
    stats = await envoy.stats()
    sds_version = stats["sds.kafka-a/client-certificate.version_text"]
    context_updates = stats[CONTEXT_UPDATES]

    volume.write(_client_files(certs.ca, NEW_NAME, certs.ca.cert_pem.bytes()))  # cert-manager renewed it

    await eventually(
        lambda: _answers(stack.loopback, 9091, f"broker-1@{stack.brokers[1].host} commonName={NEW_NAME}"),
        timeout=5,
        what="a new connection presenting the renewed certificate",
    )
    assert await _modifications(envoy) == before  # no cluster, no listener touched
    stats = await envoy.stats()
    assert stats["sds.kafka-a/client-certificate.version_text"] == sds_version  # kafka-xds sent nothing
    assert stats[CONTEXT_UPDATES] > context_updates  # Envoy reloaded the files itself
    assert stats.get("sds.kafka-a/client-certificate.key_rotation_failed", 0) == 0
    # The connection opened before the renewal carries on with the certificate it was opened with.
    assert (await _ask(existing, "still there")).endswith(f"commonName={OLD_NAME} still there")
    existing[1].close()


@pytest.fixture
async def brokers_with_ca() -> AsyncIterator[
    Callable[[str, str, trustme.CA, list[trustme.CA]], Awaitable[TlsUpstream]]
]:
    """Brokers whose server certificate `issuer` signed and which accept client certificates from
    every CA in `trusted` (as brokers do during a CA rollover)."""
    started: list[TlsUpstream] = []

    async def start(name: str, host: str, issuer: trustme.CA, trusted: list[trustme.CA]) -> TlsUpstream:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        issuer.issue_cert(host, FLEET_CERTIFICATE_NAME).configure_cert(context)
        for ca in trusted:
            ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
        upstream = await TlsUpstream(name, host, context).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        await upstream.stop()


async def _refused(host: str, port: int) -> bool:
    """True when the sidecar takes the connection but the upstream TLS handshake fails."""
    with contextlib.suppress(ConnectionError):
        await exchange(host, port, "ping")
        return False
    return True


async def test_a_ca_rollover_keeps_traffic_flowing_to_a_broker_with_a_certificate_from_the_new_ca(
    tmp_path: Path,
    addresses: LoopbackAddresses,
    certs: Certs,
    brokers_with_ca: Callable[[str, str, trustme.CA, list[trustme.CA]], Awaitable[TlsUpstream]],
    stack: Stack,
    api: str,
) -> None:
    old_ca, new_ca = certs.ca, trustme.CA(organization_name="kafka-xds tests, next CA")
    old_pem, new_pem = old_ca.cert_pem.bytes(), new_ca.cert_pem.bytes()
    volume = SecretVolume(tmp_path / "kafka-tls")
    client = _client_files(old_ca, OLD_NAME, old_pem)
    volume.write(client)
    # Broker 1 still has a certificate from the old CA, broker 2 already one from the new CA.
    stack.brokers[2] = await brokers_with_ca("broker-2", addresses.take(), new_ca, [old_ca, new_ca])
    await stack.start(
        [1], _cluster(stack.loopback, stack.brokers_file), api=api, upstream_tls=_upstream_tls(volume)
    )
    envoy = stack.envoy
    await eventually(lambda: _answers(stack.loopback, 9091, "broker-1"), what="traffic to the old-CA broker")
    assert await _refused(stack.loopback, 9092)  # the sidecar does not trust the new CA yet
    before = await _modifications(envoy)

    volume.write({**client, "ca.crt": old_pem + new_pem})  # the bundle holds both CAs

    await eventually(lambda: _answers(stack.loopback, 9092, "broker-2"), timeout=5, what="the new-CA broker")
    await _answers(stack.loopback, 9091, "broker-1")

    volume.write({**client, "ca.crt": new_pem})  # the rollover is over: the new CA only

    await eventually(lambda: _refused(stack.loopback, 9091), timeout=5, what="the old CA no longer trusted")
    await _answers(stack.loopback, 9092, "broker-2")
    assert await _modifications(envoy) == before
    assert await _stat(envoy, "sds.kafka-a/trusted-ca.key_rotation_failed") == 0


async def test_a_changed_cluster_warms_with_the_secrets_envoy_already_has(
    tmp_path: Path,
    addresses: LoopbackAddresses,
    certs: Certs,
    upstreams: Callable[[str, str], Awaitable[TlsUpstream]],
    envoys: Callable[..., Awaitable[Envoy]],
    xds_processes: Callable[..., Awaitable[XdsProcess]],
    api: str,
) -> None:
    loopback, host = addresses.take(), addresses.take()
    broker = await upstreams("broker-1", addresses.take())
    brokers_file = write_static_brokers(
        tmp_path / "brokers.yaml", [{"id": 1, "host": broker.host, "port": broker.port}]
    )
    cluster = _cluster(loopback, brokers_file)
    before = base_config(certs, [cluster], host)
    # Another replica with a cluster setting changed: every Cluster differs, the secrets they name
    # do not. It is up, with its snapshot, before the sidecar moves to it, so it has nothing to
    # resend but the clusters.
    changed = base_config(certs, [cluster], host, sidecar={"connect_timeout_seconds": 2.5})
    first = await xds_processes(before, name="first")
    envoy = await envoys("app-1", before, api=api, replicas=[before, changed])
    await eventually(lambda: _answers(loopback, 9091, "broker-1"), what="traffic")
    await xds_processes(changed, name="changed")
    modified = await _stat(envoy, "cluster_manager.cluster_modified")
    secrets_applied = await _secret_updates(envoy)

    await first.terminate()

    await eventually(
        lambda: _connect_timeout_is(envoy, "2.500s"), what="the changed cluster warmed and active"
    )
    assert await _stat(envoy, "cluster_manager.cluster_modified") == modified + 1
    assert await _stat(envoy, "cluster_manager.warming_clusters") == 0
    assert await _secret_updates(envoy) == secrets_applied  # Envoy warmed it with what it had
    await _answers(loopback, 9091, "broker-1")


async def _connect_timeout_is(envoy: Envoy, expected: str) -> bool:
    dump = await envoy.config_dump(resource="dynamic_active_clusters")
    return [entry["cluster"]["connect_timeout"] for entry in dump["configs"]] == [expected]


async def _secret_updates(envoy: Envoy) -> dict[str, int]:
    stats = await envoy.stats()
    names = ("sds.kafka-a/client-certificate.update_success", "sds.kafka-a/trusted-ca.update_success")
    return {name: stats.get(name, 0) for name in names}
