"""What the sources log when their backend fails: the truth about what they keep, and no flood.

A problem that recurs every few seconds is logged when it starts or changes, reminded of once a
minute with a count, and logged when it ends: kazoo's connection errors, failed KRaft polls and
ZooKeeper reads that keep failing. A failure line says "keeping the last brokers" only when there
are some.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import OPEN_ACL_UNSAFE, make_digest_acl

from tests.conftest import base_config
from tests.support.addresses import LoopbackAddresses
from tests.support.wait import eventually, free_port
from tests.support.xds_process import XdsProcess
from tests.support.zookeeper import ZooKeeperServer, broker_znode
from tests.unit.test_kraft_source import Harness, meta
from xds.pipeline.sources.zk_session import Ensemble
from xds.shared.log import RepeatLimitedLogger, Repeats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_line_is_written_once_then_reminded_once_a_minute_with_its_count():
    clock = Clock()
    repeats = Repeats(interval=60, clock=clock)
    assert repeats.admit("Cannot resolve zk-1") == {}
    for _ in range(29):
        clock.now += 2
        assert repeats.admit("Cannot resolve zk-1") is None
    clock.now += 2  # 60 s after the line was written
    assert repeats.admit("Cannot resolve zk-1") == {"repeated": 30}
    clock.now += 2
    assert repeats.admit("Cannot resolve zk-1") is None


def test_a_changed_line_is_written_at_once():
    repeats = Repeats(interval=60, clock=Clock())
    assert repeats.admit("Cannot resolve zk-1") == {}
    assert repeats.admit("Connection dropped: socket connection error: Connection refused") == {}
    assert repeats.admit("Cannot resolve zk-1") is None


def test_clear_ends_the_problem_counting_its_failures_and_the_next_one_shows_at_once():
    repeats = Repeats(interval=60, clock=Clock())
    for _ in range(3):
        repeats.admit("Cannot resolve zk-1")
    repeats.admit("Connecting to zk-1", failure=False)
    assert repeats.clear() == 3
    assert repeats.clear() == 0
    assert repeats.admit("Cannot resolve zk-1") == {}


def test_a_limited_library_logger_drops_repeats_and_names_the_ensemble(caplog):
    caplog.set_level(logging.DEBUG, logger="kafka_xds.test")
    logger = RepeatLimitedLogger(logging.getLogger("kafka_xds.test"), Repeats(), hosts="zk-1:2181")
    for _ in range(3):
        logger.warning("Cannot resolve %s: %s", "zk-1", "[Errno -2] Name or service not known")
        logger.debug("Sending request(xid=%s): %s", 1, "Ping()")  # detail: never limited
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Cannot resolve zk-1: [Errno -2] Name or service not known"),
        ("DEBUG", "Sending request(xid=1): Ping()"),
        ("DEBUG", "Sending request(xid=1): Ping()"),
        ("DEBUG", "Sending request(xid=1): Ping()"),
    ]
    assert caplog.records[0].fields == {"hosts": "zk-1:2181"}


async def test_an_unresolvable_zookeeper_host_is_logged_once_not_on_every_retry(caplog):
    caplog.set_level(logging.WARNING)
    # `.invalid` never resolves (RFC 2606); kazoo retries every 0.1 s, doubling up to 2 s.
    client = Ensemble("zk-1.invalid:2181,zk-2.invalid:2181", 4.0).new_client()
    client.start_async()
    try:

        async def retried() -> bool:
            return bool(client.logger.repeats.failures >= 10)  # five rounds over both hosts

        await eventually(retried, what="kazoo retrying for a few seconds")
        lines = [r.getMessage() for r in caplog.records if r.name == "kafka_xds.sources.kazoo"]
    finally:
        await asyncio.to_thread(_close, client)
    assert len(lines) == 2, lines
    assert lines[0].startswith("Cannot resolve zk-1.invalid: ")
    assert lines[1].startswith("Cannot resolve zk-2.invalid: ")


def _close(client: KazooClient) -> None:
    client.stop()
    client.close()


@pytest.mark.zookeeper
async def test_a_zookeeper_refusing_connections_is_logged_once_and_its_recovery_too(
    xds_processes, zookeeper_servers, monkeypatch, addresses: LoopbackAddresses
):
    monkeypatch.setenv("KAFKA_XDS_LOG_LEVEL", "warning")  # the default: both lines must show there
    host = addresses.take()
    port = free_port(host)
    config = base_config(None, [_zk_cluster(f"{host}:{port}")], addresses.take())
    server = await xds_processes(config, wait_ready=False)
    await eventually(lambda: _logged(server, "Connection refused"), what="the first refusal")
    # /readyz says why it waits one second on: kazoo has retried a few times by then.
    await eventually(lambda: _waiting(server, "no ZooKeeper session"), what="/readyz saying why")

    await zookeeper_servers(host=host, client_port=port)

    recovered = await eventually(lambda: _logged(server, "ZooKeeper connection recovered"), what="recovery")
    failures = int(re.findall(r"failures=(\d+)", recovered)[0])
    assert failures >= 2, recovered
    assert len(re.findall("Connection refused", server.log_text())) == 1, server.log_text()


async def test_shutting_down_while_zookeeper_is_away_blames_no_retry_policy(
    xds_processes, monkeypatch, addresses: LoopbackAddresses
):
    monkeypatch.setenv("KAFKA_XDS_LOG_LEVEL", "warning")
    host = addresses.take()
    cluster = _zk_cluster(f"{host}:{free_port(host)}")
    server = await xds_processes(base_config(None, [cluster], addresses.take()), wait_ready=False)
    await eventually(lambda: _logged(server, "Connection refused"), what="the first refusal")

    await server.terminate()

    log = server.log_text()
    assert "shutting down" in log
    assert "retry policy" not in log, log


@pytest.mark.zookeeper
async def test_zookeeper_reads_that_succeed_again_are_logged(
    zookeeper: ZooKeeperServer,
    chroot: str,
    tmp_path: Path,
    xds_processes,
    monkeypatch,
    addresses: LoopbackAddresses,
):
    monkeypatch.setenv("KAFKA_XDS_LOG_LEVEL", "warning")
    await asyncio.to_thread(
        _protect, zookeeper.hosts, chroot, [make_digest_acl("kafka-xds", "Right-pw-5c2e", all=True)]
    )
    wrong = tmp_path / "wrong-password"
    wrong.write_text("Wrong-pw-1b7e\n")
    cluster = _zk_cluster(zookeeper.hosts, chroot, {"username": "kafka-xds", "password_file": str(wrong)})
    server = await xds_processes(base_config(None, [cluster], addresses.take()), wait_ready=False)
    await eventually(lambda: _logged(server, "NoAuthError"), what="the read refused")

    await asyncio.to_thread(_protect, zookeeper.hosts, chroot, OPEN_ACL_UNSAFE)  # anyone may read now

    await eventually(server.ready, what="the brokers read")
    assert "ZooKeeper reads succeed now" in await _logged(server, "ZooKeeper reads succeed now")
    assert server.log_text().count("NoAuthError") == 1


async def test_kraft_poll_failures_are_logged_when_they_start_or_change_not_on_every_poll(caplog):
    caplog.set_level(logging.DEBUG, logger="kafka_xds.sources.kraft")
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094))
    await h.poll()
    h.client.answers = {}  # everyone refuses
    for _ in range(3):
        await h.poll()
    h.client.answers = {"10.0.0.1:9094": TimeoutError()}  # the failure changes
    for _ in range(3):
        await h.poll()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "10.0.0.1:9094: connection refused" in warnings[0]
    assert "10.0.0.1:9094: timed out" in warnings[1]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG] == [
        "Metadata poll failed"
    ] * 4


async def test_kraft_answering_again_is_logged_at_the_level_of_the_failure_it_ends(caplog):
    caplog.set_level(logging.INFO, logger="kafka_xds.sources.kraft")
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094))
    await h.poll()
    h.client.answers = {}
    await h.poll()
    await h.poll()
    h.client.answers["10.0.0.2:9094"] = meta((1, "10.1.0.1", 9094))
    await h.poll()
    failed, answered = [r for r in caplog.records if r.getMessage() != "broker joined"]
    assert failed.levelno == answered.levelno == logging.WARNING
    assert answered.getMessage() == "Metadata answered again; following brokers"
    assert answered.fields["failed_polls"] == 2


def _zk_cluster(hosts: str, chroot: str = "", auth: dict[str, str] | None = None) -> dict[str, object]:
    zookeeper: dict[str, object] = {"hosts": hosts, "chroot": chroot}
    if auth is not None:
        zookeeper["auth"] = auth
    return {
        "name": "kafka-a",
        "loopback_ip": "127.0.0.10",
        "port_base": 9090,
        "upstream_listener": "MESH",
        "zookeeper": zookeeper,
    }


async def _logged(server: XdsProcess, text: str) -> str:
    """The first log line containing `text` (empty if none yet)."""
    return next((line for line in server.log_text().splitlines() if text in line), "")


async def _waiting(server: XdsProcess, reason: str) -> bool:
    status, body = await server.get("/readyz")
    return status == 503 and reason in str(body)


def _protect(hosts: str, chroot: str, acl: list[object]) -> None:
    """Broker 1 under `chroot`, readable as `acl` says (created with the right credentials)."""
    client = KazooClient(hosts=hosts, auth_data=[("digest", "kafka-xds:Right-pw-5c2e")])
    client.start(timeout=15)
    try:
        path = f"{chroot}/brokers/ids"
        if not client.exists(f"{path}/1"):
            client.create(f"{path}/1", broker_znode({"MESH": "10.0.0.1:9094"}), makepath=True)
        client.set_acls(path, acl)
        client.set_acls(f"{path}/1", acl)
    finally:
        client.stop()
        client.close()


async def test_a_kraft_source_that_never_answered_says_it_has_no_brokers_to_keep(caplog):
    h = Harness()
    await h.poll()
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line == (
        "no brokers to keep yet: no Metadata answer from any of 10.0.0.1:9094, 10.0.0.2:9094: "
        "10.0.0.1:9094: connection refused; 10.0.0.2:9094: connection refused"
    )


async def test_a_kraft_source_that_had_brokers_says_it_keeps_them(caplog):
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094))
    await h.poll()
    h.client.answers = {}
    await h.poll()
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.startswith("keeping the last brokers: no Metadata answer from any of ")
    assert "or known brokers: " in line


async def test_a_kraft_refusal_says_once_that_it_keeps_the_last_brokers(caplog):
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094), cluster_id="c1")
    await h.poll()
    h.client.answers = {"10.0.0.1:9094": meta((7, "10.9.0.7", 9094), cluster_id="other")}
    await h.poll()
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith("keeping the last brokers: 10.0.0.1:9094: cluster id is 'other' but was 'c1'")
    assert line.count("keeping the last brokers") == 1


async def test_a_kraft_first_answer_after_failures_is_not_called_an_answer_again(caplog):
    h = Harness()
    await h.poll()
    h.client.answers["10.0.0.2:9094"] = meta((1, "10.1.0.1", 9094))
    await h.poll()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert messages[-1] == "Metadata answered for the first time; following brokers"


@pytest.mark.zookeeper
async def test_a_zookeeper_source_that_never_read_its_brokers_says_it_has_none_to_keep(
    zookeeper: ZooKeeperServer,
    chroot: str,
    tmp_path: Path,
    xds_processes,
    monkeypatch,
    addresses: LoopbackAddresses,
):
    monkeypatch.setenv("KAFKA_XDS_LOG_LEVEL", "warning")
    acl = [make_digest_acl("kafka-xds", "Right-pw-5c2e", all=True)]
    await asyncio.to_thread(_protect, zookeeper.hosts, chroot, acl)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("Wrong-pw-1b7e\n")
    cluster = _zk_cluster(zookeeper.hosts, chroot, {"username": "kafka-xds", "password_file": str(wrong)})
    server = await xds_processes(base_config(None, [cluster], addresses.take()), wait_ready=False)

    line = await eventually(lambda: _logged(server, "NoAuthError"), what="the read refused")

    assert 'msg="no brokers to keep yet: cannot read from ZooKeeper ' in line, line
    assert "keeping the last brokers" not in server.log_text()
