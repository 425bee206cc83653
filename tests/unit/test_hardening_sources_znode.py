"""The znode parser raises its own ZnodeError for any input, never anything else (fuzzed)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support.zookeeper import broker_znode
from xds.pipeline.sources.znode import (
    MAX_ZNODE_BYTES,
    ZnodeError,
    parse_broker_id,
    parse_broker_registration,
    parse_cluster_id,
)
from xds.pipeline.topology import Broker

HUGE_NUMBER = "9" * 5000  # beyond Python's 4300-digit int() limit
DEEP_JSON = b"[" * 20_000 + b"]" * 20_000  # past the recursion limit, within the size bound


def _error(data: bytes) -> str:
    with pytest.raises(ZnodeError) as raised:
        parse_broker_registration(1, data)
    return str(raised.value)


def test_a_port_of_thousands_of_digits_is_a_znode_error():
    reason = _error(b'{"version":5,"endpoints":["MESH://10.0.0.1:' + HUGE_NUMBER.encode() + b'"]}')
    assert "outside 1..65535" in reason
    assert len(reason) < 300  # the number is not copied whole into the reason


def test_a_json_number_of_thousands_of_digits_is_a_znode_error():
    assert "not JSON" in _error(b'{"version":5,"port":' + HUGE_NUMBER.encode() + b',"host":"h"}')


def test_deeply_nested_json_is_a_znode_error():
    assert "not JSON" in _error(b'{"version":5,"features":' + DEEP_JSON + b"}")


def test_a_timestamp_of_thousands_of_digits_is_dropped():
    data = json.loads(broker_znode({"MESH": "10.0.0.1:9094"}))
    data["timestamp"] = HUGE_NUMBER
    assert parse_broker_registration(1, json.dumps(data).encode()).registered_at_ms is None


def test_a_broker_id_of_thousands_of_digits_is_a_znode_error():
    with pytest.raises(ZnodeError, match="not a broker id"):
        parse_broker_id(HUGE_NUMBER)


def test_a_broker_id_above_kafkas_int32_is_a_znode_error():
    with pytest.raises(ZnodeError, match="not a broker id"):
        parse_broker_id(str(2**31))
    assert parse_broker_id(str(2**31 - 1)) == 2**31 - 1


def test_a_znode_larger_than_the_bound_is_refused_unread():
    padding = "x" * MAX_ZNODE_BYTES
    data = json.loads(broker_znode({"MESH": "10.0.0.1:9094"}))
    data["padding"] = padding
    assert "larger than" in _error(json.dumps(data).encode())


def test_a_huge_value_is_shown_shortened_in_the_reason():
    reason = _error(json.dumps({"version": 5, "endpoints": "x" * 10_000}).encode())
    assert len(reason) < 300


def test_the_cluster_id_parser_raises_only_znode_errors():
    for data in (DEEP_JSON, b'{"id":' + HUGE_NUMBER.encode() + b"}", b"[1]", b'{"id": 7}'):
        with pytest.raises(ZnodeError):
            parse_cluster_id(data)


def _parses_or_refuses(data: bytes | None) -> None:
    """The only outcomes allowed: a Broker, or a ZnodeError (anything else escapes the test)."""
    try:
        broker = parse_broker_registration(3, data)
    except ZnodeError:
        return
    assert isinstance(broker, Broker)
    assert all(1 <= endpoint.port <= 65535 for _, endpoint in broker.listeners)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
@example(DEEP_JSON)
@example(b'{"version":1,"host":"h","port":' + HUGE_NUMBER.encode() + b"}")
def test_arbitrary_bytes_only_ever_raise_znode_error(data):
    _parses_or_refuses(data)
    with contextlib.suppress(ZnodeError):
        parse_cluster_id(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=64) | st.sampled_from([HUGE_NUMBER, "0" * 5000, "٣", "-1", "+1", " 1"]))
def test_arbitrary_znode_names_only_ever_raise_znode_error(name):
    try:
        broker_id = parse_broker_id(name)
    except ZnodeError:
        return
    assert 0 <= broker_id < 2**31


_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.just(HUGE_NUMBER)
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_PORT_TEXT = st.integers(-(2**70), 2**70).map(str) | st.sampled_from(
    [HUGE_NUMBER, "-" + HUGE_NUMBER, "", "0"]
)
_HOST_TEXT = st.sampled_from(["10.0.0.1", "[fd00::1]", "broker-1.kafka", "", "::", "%", "a" * 300])
_ENDPOINT = st.builds(
    lambda listener, host, port: f"{listener}://{host}:{port}",
    st.sampled_from(["MESH", "CLIENT", "PLAINTEXT", "", "A/B"]),
    _HOST_TEXT,
    _PORT_TEXT,
)


@st.composite
def _registrations(draw: st.DrawFn) -> dict[str, Any]:
    """Kafka's registration fields, each present or not, typed right or (less often) not."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "version": st.one_of(st.integers(1, 6), st.integers(1, 6), st.integers(-2, 7), _JSON),
        "endpoints": st.one_of(
            st.lists(_ENDPOINT, max_size=4), st.lists(_ENDPOINT | _JSON, max_size=4), _JSON
        ),
        "host": _HOST_TEXT | _JSON,
        "port": st.integers(-(2**40), 2**40) | _JSON,
        "rack": st.none() | st.text(max_size=10) | _JSON,
        "timestamp": _PORT_TEXT | _JSON,
        "features": _JSON,
        "listener_security_protocol_map": _JSON,
        "jmx_port": _JSON,
    }
    chosen = draw(st.sets(st.sampled_from(sorted(fields))))
    return {name: draw(fields[name]) for name in sorted(chosen)}


@settings(max_examples=500, deadline=None)
@given(_registrations())
def test_registration_shaped_json_only_ever_raises_znode_error(registration):
    _parses_or_refuses(json.dumps(registration).encode())


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_any_json_value_only_ever_raises_znode_error(value):
    _parses_or_refuses(json.dumps(value).encode())
