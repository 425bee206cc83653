"""No credential in any log line, at any level, whichever library writes it.

kazoo logs its Auth packet (`user:password` for digest) and aiokafka its SASL PLAIN payload
(`\\0user\\0password`) at debug level; secrets registered where they are read (the ZooKeeper digest
password, the SASL password, the debug token) are hidden wherever else they turn up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.protocol.admin import SaslAuthenticateRequest_v1
from kazoo.client import KazooClient
from kazoo.protocol.serialization import Auth, Connect
from kazoo.security import make_digest_acl

from tests.conftest import base_config
from tests.support.addresses import LoopbackAddresses
from tests.support.zookeeper import ZooKeeperServer, broker_znode
from xds.debug.token import read_token
from xds.pipeline.sources.zk_session import Ensemble
from xds.shared.log import configure, event, register_secret

ZK_USER = "kafka-xds"
ZK_PASSWORD = "Zk-digest-pw-7f3a9c"  # distinctive: found nowhere else in a log by chance


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved


def test_the_sasl_password_is_hidden_in_messages_fields_and_tracebacks(capsys):
    password = "Sasl-pw-31c8e2"
    register_secret(password)
    configure("debug")
    log = logging.getLogger("kafka_xds.test")
    log.debug("connecting with %s", password)
    event(log, logging.WARNING, "login failed", detail=f"user:{password}")
    try:
        raise ValueError(f"bad login {password!r}")
    except ValueError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert password not in err
    assert err.count("<redacted>") == 3
    assert "ValueError" in err  # the traceback itself is kept


def test_the_debug_token_is_hidden_in_json_lines(capsys, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text('Dbg-token-"quoted"\\9b\n')
    token = read_token(str(token_file))  # registers it, as the debug server does when it starts
    configure("debug", "json")
    logging.getLogger("aiohttp.access").info('"GET /debug/config?token=%s HTTP/1.1" 200', token)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert token not in line["msg"]
    assert line["msg"] == '"GET /debug/config?token=<redacted> HTTP/1.1" 200'


def test_kazoo_auth_packets_are_logged_without_their_credentials(capsys):
    configure("debug")
    # Exactly what kazoo's connection writes before it authenticates: nothing registered needed.
    packet = Auth(0, "digest", "someone:unregistered-pw-5e1d")
    logging.getLogger("kafka_xds.sources.kazoo").debug("Sending request(xid=%s): %s", -4, packet)
    err = capsys.readouterr().err
    assert "unregistered-pw-5e1d" not in err
    assert "Auth(auth_type=0, scheme='digest', auth=<redacted>)" in err


def test_kazoo_connect_packets_are_logged_without_the_session_password(capsys):
    configure("debug")
    # On a reconnect, Connect carries the session's password: whoever has it can take the session over.
    packet = Connect(0, 7, 10000, 0x1000C16810001, b"session-pw-0a9f", False)
    logging.getLogger("kafka_xds.sources.kazoo").debug("Sending request(xid=%s): %s", None, packet)
    err = capsys.readouterr().err
    assert "session-pw-0a9f" not in err
    assert f"session_id={0x1000C16810001}, passwd=<redacted>, read_only=False)" in err


def test_aiokafka_sasl_payloads_are_hidden_even_where_its_repr_cuts_the_password_short(capsys):
    configure("debug")
    # SASL PLAIN sends `\0user\0password`; aiokafka's repr shows 100 bytes of it, so a long password
    # is only partly there and no longer matches itself: the payload goes, not just the password.
    password = "Plain-pw-" + "x" * 120
    register_secret(password)
    request = SaslAuthenticateRequest_v1(sasl_auth_bytes=b"\0kafka-xds\0" + password.encode())
    logging.getLogger("aiokafka.conn").debug("Request to %s:%d %d: %s", "10.0.0.1", 9094, 3, request)
    err = capsys.readouterr().err
    assert "Plain-pw-" not in err
    assert "SaslAuthenticateRequest_v1(sasl_auth_bytes=<redacted>)" in err


@pytest.mark.zookeeper
async def test_the_zookeeper_digest_password_never_reaches_the_debug_log(
    zookeeper: ZooKeeperServer,
    chroot: str,
    tmp_path: Path,
    xds_processes,
    monkeypatch,
    addresses: LoopbackAddresses,
):
    await asyncio.to_thread(_protected_broker, zookeeper.hosts, chroot)
    password_file = tmp_path / "zk-password"
    password_file.write_text(ZK_PASSWORD + "\n")
    cluster = {
        "name": "kafka-a",
        "loopback_ip": "127.0.0.10",
        "port_base": 9090,
        "upstream_listener": "MESH",
        "zookeeper": {
            "hosts": zookeeper.hosts,
            "chroot": chroot,
            "auth": {"username": ZK_USER, "password_file": str(password_file)},
        },
    }
    monkeypatch.setenv("KAFKA_XDS_LOG_LEVEL", "debug")

    server = await xds_processes(base_config(None, [cluster], addresses.take()))  # ready: it read the chroot
    await server.terminate()

    log = server.log_text()
    assert "Sending request(xid=-4): Auth(auth_type=0, scheme='digest', auth=<redacted>)" in log
    assert ZK_PASSWORD not in log


def _protected_broker(hosts: str, chroot: str) -> None:
    """Broker 1 under `chroot`, readable only with the digest credentials."""
    acl = make_digest_acl(ZK_USER, ZK_PASSWORD, all=True)
    client = KazooClient(hosts=hosts, auth_data=[("digest", f"{ZK_USER}:{ZK_PASSWORD}")])
    client.start(timeout=15)
    try:
        client.create(f"{chroot}/brokers/ids/1", broker_znode({"MESH": "10.0.0.1:9094"}), makepath=True)
        client.set_acls(f"{chroot}/brokers/ids", [acl])
        client.set_acls(f"{chroot}/brokers/ids/1", [acl])
    finally:
        client.stop()
        client.close()


def test_an_ensembles_repr_leaves_its_password_out():
    ensemble = Ensemble("zk-1:2181", 10.0, ZK_USER, "Ensemble-pw-44d0")
    assert "Ensemble-pw-44d0" not in repr(ensemble)
    assert "zk-1:2181" in repr(ensemble)
