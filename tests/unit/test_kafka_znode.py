"""Reading Kafka's broker registrations: every version Kafka 1.x-3.x writes, and what it never writes."""

from __future__ import annotations

import json

import pytest

from tests.support.zookeeper import broker_znode
from xds.pipeline.sources.znode import (
    ZnodeError,
    parse_broker_id,
    parse_broker_registration,
    parse_cluster_id,
)
from xds.shared.addresses import HostPort

# The reference example: version 5, three listeners, as a Kafka 3.x broker writes it.
VERSION_5 = (
    b'{"features":{},"listener_security_protocol_map":{"INTERNAL":"PLAINTEXT","MESH":"SSL",'
    b'"CLIENT":"PLAINTEXT"},"endpoints":["INTERNAL://10.1.4.7:9092","MESH://10.1.4.7:9094",'
    b'"CLIENT://127.0.0.10:9091"],"jmx_port":-1,"port":9092,"host":"10.1.4.7","version":5,'
    b'"timestamp":"1700000000000","rack":"euw1-az1"}'
)


def _error(broker_id: int, data: bytes | None) -> str:
    with pytest.raises(ZnodeError) as raised:
        parse_broker_registration(broker_id, data)
    return str(raised.value)


def test_version_5_has_every_listener_by_name_with_rack_and_timestamp():
    broker = parse_broker_registration(7, VERSION_5)
    assert broker.broker_id == 7
    assert broker.endpoint("MESH") == HostPort("10.1.4.7", 9094)
    assert broker.endpoint("INTERNAL") == HostPort("10.1.4.7", 9092)
    assert broker.endpoint("CLIENT") == HostPort("127.0.0.10", 9091)
    assert broker.rack == "euw1-az1"
    assert broker.registered_at_ms == 1700000000000


def test_version_4_names_endpoints_by_listener():
    data = broker_znode({"CLIENT": "127.0.0.10:9091", "MESH": "10.0.0.1:9094"}, rack="az1", version=4)
    assert "features" not in json.loads(data)
    broker = parse_broker_registration(1, data)
    assert dict(broker.listeners) == {
        "CLIENT": HostPort("127.0.0.10", 9091),
        "MESH": HostPort("10.0.0.1", 9094),
    }
    assert broker.rack == "az1"


@pytest.mark.parametrize("version", [2, 3])
def test_versions_2_and_3_name_endpoints_by_security_protocol(version):
    data = broker_znode({"PLAINTEXT": "10.0.0.1:9092", "SSL": "10.0.0.1:9093"}, rack="az1", version=version)
    broker = parse_broker_registration(1, data)
    assert broker.endpoint("SSL") == HostPort("10.0.0.1", 9093)
    assert broker.endpoint("PLAINTEXT") == HostPort("10.0.0.1", 9092)
    assert broker.rack == ("az1" if version == 3 else None)  # racks arrived with version 3


def test_version_1_falls_back_to_host_and_port_as_plaintext():
    data = b'{"jmx_port":-1,"timestamp":"1500000000000","host":"kafka-1.example","version":1,"port":9092}'
    broker = parse_broker_registration(3, data)
    assert dict(broker.listeners) == {"PLAINTEXT": HostPort("kafka-1.example", 9092)}
    assert broker.rack is None
    assert broker.registered_at_ms == 1500000000000


def test_helper_writes_version_1_without_endpoints():
    data = json.loads(broker_znode({"PLAINTEXT": "10.0.0.1:9092"}, version=1))
    assert set(data) == {"jmx_port", "timestamp", "host", "version", "port"}
    assert parse_broker_registration(1, broker_znode({"PLAINTEXT": "10.0.0.1:9092"}, version=1)).endpoint(
        "PLAINTEXT"
    ) == HostPort("10.0.0.1", 9092)


def test_host_and_port_are_ignored_when_endpoints_exist():
    # Without a PLAINTEXT listener Kafka writes host null and port -1; endpoints are what counts.
    data = broker_znode({"MESH": "10.0.0.1:9094"}, version=5)
    assert json.loads(data)["host"] is None and json.loads(data)["port"] == -1
    assert dict(parse_broker_registration(1, data).listeners) == {"MESH": HostPort("10.0.0.1", 9094)}


def test_ipv6_hosts_come_without_brackets():
    data = broker_znode({"MESH": "[fd00::7]:9094", "CLIENT": "127.0.0.10:9091"})
    broker = parse_broker_registration(1, data)
    assert broker.endpoint("MESH") == HostPort("fd00::7", 9094)
    assert str(broker.endpoint("MESH")) == "[fd00::7]:9094"


def test_listener_names_are_case_sensitive():
    broker = parse_broker_registration(1, broker_znode({"mesh": "10.0.0.1:9094"}))
    assert broker.endpoint("MESH") is None
    assert broker.endpoint("mesh") == HostPort("10.0.0.1", 9094)


def test_null_rack_and_missing_timestamp_are_fine():
    body = json.loads(VERSION_5)
    body["rack"] = None
    del body["timestamp"]
    broker = parse_broker_registration(1, json.dumps(body).encode())
    assert broker.rack is None
    assert broker.registered_at_ms is None


def test_unreadable_timestamp_is_dropped_not_fatal():
    body = json.loads(VERSION_5)
    body["timestamp"] = "yesterday"
    assert parse_broker_registration(1, json.dumps(body).encode()).registered_at_ms is None


def test_newer_versions_are_read_like_version_5():
    body = json.loads(VERSION_5)
    body["version"] = 6
    body["something_new"] = {"x": 1}
    assert parse_broker_registration(1, json.dumps(body).encode()).endpoint("MESH") == HostPort(
        "10.1.4.7", 9094
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "empty znode"),
        (b"", "empty znode"),
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"endpoints": []}', "'version' is None"),
        (b'{"version": "5", "endpoints": []}', "'version' is '5'"),
        (b'{"version": 0, "endpoints": []}', "unsupported registration version 0"),
        (b'{"version": 5, "endpoints": "MESH://a:1"}', "expected a list"),
        (b'{"version": 5, "endpoints": []}', "no endpoints registered"),
        (b'{"version": 5, "endpoints": ["MESH:/a:1"]}', "is not 'LISTENER://host:port'"),
        (b'{"version": 5, "endpoints": ["MESH://a"]}', "is not 'LISTENER://host:port'"),
        (b'{"version": 5, "endpoints": ["MESH://:9094"]}', "has no host"),
        (b'{"version": 5, "endpoints": ["MESH://a:0"]}', "outside 1..65535"),
        (b'{"version": 5, "endpoints": ["MESH://a:70000"]}', "outside 1..65535"),
        (b'{"version": 5, "endpoints": ["MESH://a:1", "MESH://b:2"]}', "registered twice"),
        (b'{"version": 5, "endpoints": [7]}', "is not 'LISTENER://host:port'"),
        (b'{"version": 5, "endpoints": ["MESH://a:1"], "rack": 3}', "'rack' is 3"),
        (b'{"version": 1, "host": "a", "port": "9092"}', "'port' is '9092'"),
        (b'{"version": 1, "host": "", "port": 9092}', "'host' is ''"),
        (b'{"version": 1, "host": null, "port": -1}', "no endpoints registered"),
    ],
)
def test_malformed_registrations_say_why(data, reason):
    assert reason in _error(1, data)


@pytest.mark.parametrize("name", ["0", "7", "1001", "2147483647"])
def test_broker_ids_are_decimal_znode_names(name):
    assert parse_broker_id(name) == int(name)


@pytest.mark.parametrize("name", ["", "-1", "+1", "01", "1.0", "abc", "\u0661", " 1"])
def test_other_znode_names_are_not_broker_ids(name):
    with pytest.raises(ZnodeError, match="is not a broker id"):
        parse_broker_id(name)


def test_cluster_id():
    assert parse_cluster_id(b'{"version":"1","id":"Ab3_xyz-Q"}') == "Ab3_xyz-Q"
    with pytest.raises(ZnodeError, match="'id'"):
        parse_cluster_id(b'{"version":"1"}')
    with pytest.raises(ZnodeError, match="not JSON"):
        parse_cluster_id(b"{")
