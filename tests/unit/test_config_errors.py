"""Every refusal in one voice: the key, then what is expected and the value that was given."""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest

from tests.unit.test_config import VALID, refused
from xds.config.fields import describe_validation_error


def _cluster(**changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(VALID)
    config["kafka_clusters"][1].update(changes)
    return config


KRAFT = {"bootstrap_servers": ["kafka-b-0:9092"]}


@pytest.mark.parametrize(
    ("config", "key", "problem"),
    [
        (
            _cluster(upstream_listener=None),
            "kafka_clusters[1].upstream_listener",
            "expected a string, got null",
        ),
        (_cluster(port_bas=9090), "kafka_clusters[1].port_bas", "unknown key; did you mean 'port_base'?"),
        (_cluster(port_base=True), "kafka_clusters[1].port_base", "expected an integer, got true"),
        (_cluster(port_base="9090"), "kafka_clusters[1].port_base", "expected an integer, got '9090'"),
        (_cluster(port_base=9090.5), "kafka_clusters[1].port_base", "expected an integer, got 9090.5"),
        (
            _cluster(removal_grace_seconds="5m"),
            "kafka_clusters[1].removal_grace_seconds",
            "expected a number, got '5m'",
        ),
        (
            _cluster(removal_grace_seconds=-1),
            "kafka_clusters[1].removal_grace_seconds",
            "expected at least 0, got -1",
        ),
        (
            VALID | {"xds": {"keepalive_time_seconds": 0}},
            "xds.keepalive_time_seconds",
            "expected more than 0, got 0",
        ),
        (VALID | {"xds": {"debounce_ms": 70000}}, "xds.debounce_ms", "expected at most 60000, got 70000"),
        (VALID | {"kafka_clusters": []}, "kafka_clusters", "expected at least 1 item, got none"),
        (
            _cluster(upstream_listener=""),
            "kafka_clusters[1].upstream_listener",
            "expected a non-empty string, got ''",
        ),
        (
            _cluster(name="k" * 64),
            "kafka_clusters[1].name",
            f"expected at most 63 characters, got {'k' * 64!r}",
        ),
        (
            _cluster(name="Kafka_B"),
            "kafka_clusters[1].name",
            "expected lowercase letters, digits and '-', starting and ending with a letter or digit, "
            "got 'Kafka_B'",
        ),
        (
            _cluster(loopback_ip="127.0.0.300"),
            "kafka_clusters[1].loopback_ip",
            "expected an IPv4 address, got '127.0.0.300'",
        ),
        (VALID | {"xds": {"listen": "x"}}, "xds.listen", "expected HOST:PORT, got 'x'"),
        (
            VALID | {"debug": {"listen": "127.0.0.1:70000"}},
            "debug.listen",
            "expected HOST:PORT with a port in 0..65535, got '127.0.0.1:70000'",
        ),
        (
            _cluster(static=None, zookeeper="zk:2181"),
            "kafka_clusters[1].zookeeper",
            "expected a mapping, got 'zk:2181'",
        ),
        (
            _cluster(static=None, kraft={"bootstrap_servers": "kafka-b-0:9092"}),
            "kafka_clusters[1].kraft.bootstrap_servers",
            "expected a list, got 'kafka-b-0:9092'",
        ),
        (
            _cluster(static=None, kraft=KRAFT | {"security_protocol": "TLS"}),
            "kafka_clusters[1].kraft.security_protocol",
            "expected one of 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL', got 'TLS'",
        ),
        (
            _cluster(
                static=None, kraft=KRAFT | {"ssl": {"check_hostname": "yes"}, "security_protocol": "SSL"}
            ),
            "kafka_clusters[1].kraft.ssl.check_hostname",
            "expected true or false, got 'yes'",
        ),
        (
            _cluster(broker_ports={"1": 9101}),
            "kafka_clusters[1].broker_ports",
            "expected an integer as key, got '1'",
        ),
        (
            _cluster(broker_ports={1: 70000}),
            "kafka_clusters[1].broker_ports.1",
            "expected at most 65535, got 70000",
        ),
    ],
)
def test_each_kind_of_problem_is_worded_as_expected_and_got(config, key, problem):
    error = refused(config)
    assert (error.key, error.problem) == (key, problem)


def test_a_missing_key_is_named():
    config = copy.deepcopy(VALID)
    del config["kafka_clusters"][1]["upstream_listener"]
    error = refused(config)
    assert (error.key, error.problem) == ("kafka_clusters[1].upstream_listener", "required key is missing")


class _Other(pydantic.BaseModel):
    """Constraints the config does not use today, worded the same way should it start to."""

    model_config = pydantic.ConfigDict(strict=True)
    ratio: float = pydantic.Field(default=0.5, lt=1)
    url: pydantic.AnyUrl | None = None
    code: str = pydantic.Field(default="ab", pattern=r"^[a-z]+$")
    items: list[int] = pydantic.Field(default_factory=list, max_length=2)


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ({"ratio": 1}, "ratio", "expected less than 1, got 1"),
        ({"url": "not a url"}, "url", "expected a URL, got 'not a url'"),
        ({"code": "AB"}, "code", "expected a string matching ^[a-z]+$, got 'AB'"),
        ({"items": [1, 2, 3]}, "items", "expected at most 2 items, got 3"),
    ],
)
def test_constraints_the_config_does_not_use_yet_are_worded_the_same_way(raw, key, problem):
    with pytest.raises(pydantic.ValidationError) as raised:
        _Other.model_validate(raw)
    error = describe_validation_error(raised.value, raw)
    assert (error.key, error.problem) == (key, problem)
