"""Partitions and min.insync.replicas from Kafka's answers: the strict decoders (a malformed answer is
a MetadataError naming what was wrong, fuzzed), the broker default, and which requests are sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.protocol.admin import (
    DescribeConfigsRequest,
    DescribeConfigsResponse_v0,
    DescribeConfigsResponse_v2,
)
from aiokafka.protocol.metadata import MetadataRequest, MetadataResponse_v1, MetadataResponse_v5
from hypothesis import given, settings
from hypothesis import strategies as st

from xds.kafka.metadata import MetadataError
from xds.kafka.partitions import (
    BROKER_RESOURCE,
    MIN_INSYNC_REPLICAS,
    SOURCE_DEFAULT,
    SOURCE_TOPIC,
    TOPIC_RESOURCE,
    PartitionInfo,
    ResourceConfigs,
    decode_describe_configs,
    decode_topics_metadata,
    fetch_partitions,
    kafka_error_name,
    min_isr_configs,
)
from xds.shared.addresses import HostPort

LEADER_NOT_AVAILABLE = 5
TOPIC_AUTHORIZATION_FAILED = 29
STATIC_BROKER = 4


def metadata_v5(topics: list[tuple[Any, ...]], brokers: int = 3, controller: int = 1) -> dict[str, Any]:
    """`topics`: (error_code, name, is_internal, [(error, partition, leader, replicas, isr, offline)])."""
    listed = [(b, f"10.0.0.{b}", 9092, f"rack-{b}") for b in range(1, brokers + 1)]
    answer: dict[str, Any] = MetadataResponse_v5(0, listed, "cluster-1", controller, topics).to_object()
    return answer


def rf3(topic: str, count: int = 3, isr_without: int | None = None) -> tuple[Any, ...]:
    partitions: list[tuple[Any, ...]] = []
    for n in range(count):
        replicas = [(n + i) % 3 + 1 for i in range(3)]
        isr = [b for b in replicas if b != isr_without]
        partitions.append((0, n, isr[0], replicas, isr, []))
    return (0, topic, topic.startswith("__"), partitions)


def config_entry(value: str | None, source: int, *synonyms: tuple[int, str]) -> tuple[Any, ...]:
    return (
        MIN_INSYNC_REPLICAS,
        value,
        False,
        source,
        False,
        [(MIN_INSYNC_REPLICAS, v, s) for s, v in synonyms],
    )


def configs_v2(*resources: tuple[Any, ...]) -> dict[str, Any]:
    """`resources`: (error_code, error_message, resource_type, name, [entries])."""
    answer: dict[str, Any] = DescribeConfigsResponse_v2(0, list(resources)).to_object()
    return answer


def topic_config(name: str, value: str, source: int = SOURCE_TOPIC, default: str = "1") -> tuple[Any, ...]:
    synonyms = [(source, value)] if source == SOURCE_TOPIC else []
    entry = config_entry(
        value if source == SOURCE_TOPIC else default, source, *synonyms, (STATIC_BROKER, default)
    )
    return (0, None, TOPIC_RESOURCE, name, [entry])


# -- Metadata ---------------------------------------------------------------------------------------


def test_a_metadata_answer_gives_brokers_topics_and_partitions_in_order():
    answer = metadata_v5(
        [
            (
                0,
                "orders",
                False,
                [(0, 1, 2, [2, 3, 1], [2, 3], [1]), (LEADER_NOT_AVAILABLE, 0, -1, [1, 2, 3], [], [])],
            ),
            rf3("__consumer_offsets", 1),
        ]
    )
    decoded = decode_topics_metadata(answer)
    assert [(b.node_id, b.rack) for b in decoded.cluster.brokers] == [
        (1, "rack-1"),
        (2, "rack-2"),
        (3, "rack-3"),
    ]
    assert decoded.cluster.controller_id == 1
    assert decoded.cluster.cluster_id == "cluster-1"
    assert [t.name for t in decoded.topics] == ["__consumer_offsets", "orders"]
    assert decoded.topics[0].internal
    orders = decoded.topics[1]
    assert orders.partitions == (
        PartitionInfo("orders", 0, -1, (1, 2, 3), (), (), "LEADER_NOT_AVAILABLE"),
        PartitionInfo("orders", 1, 2, (2, 3, 1), (2, 3), (1,), None),
    )


def test_an_older_metadata_version_has_no_offline_replicas_and_no_cluster_id():
    answer = MetadataResponse_v1([(1, "h", 9092, None)], 1, [(0, "t", False, [(0, 0, 1, [1], [1])])])
    decoded = decode_topics_metadata(answer.to_object())
    assert decoded.cluster.cluster_id is None
    assert decoded.topics[0].partitions[0].offline_replicas == ()


def test_a_topic_metadata_could_not_describe_keeps_its_error():
    decoded = decode_topics_metadata(metadata_v5([(TOPIC_AUTHORIZATION_FAILED, "secret", False, [])]))
    assert decoded.topics[0].error == "TOPIC_AUTHORIZATION_FAILED"
    assert decoded.topics[0].partitions == ()


def _with(answer: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    target: Any = answer
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return answer


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("topics",), None, "topics is None, not a list"),
        (("topics", 0, "partitions", 0, "isr"), [1, "2"], "topic 'orders' partitions[0].isr[1] is '2'"),
        (("topics", 0, "partitions", 0, "isr"), [1, True], "isr[1] is True, not an integer"),
        (("topics", 0, "partitions", 0, "replicas"), [1, 1, 2], "replicas lists a broker twice"),
        (("topics", 0, "partitions", 0, "partition"), -1, "partition is -1, below 0"),
        (("topics", 0, "partitions", 0, "leader"), -2, "leader is -2, below -1"),
        (("topics", 0, "partitions", 0, "offline_replicas"), None, "offline_replicas is None"),
        (("topics", 0, "partitions", 1, "partition"), 0, "lists a partition twice"),
        (("topics", 0, "partitions", 0), "x", "partitions[0] is 'x', not a mapping"),
        (("topics", 0, "topic"), "", "topics[0].topic is empty"),
        (("topics", 0, "is_internal"), 1, "is_internal is 1, not a boolean"),
        (("topics", 0, "error_code"), 2**200, "an integer of 201 bits, above 32767"),
        (("topics", 0, "error_code"), -(2**15) - 1, "error_code is -32769, below -32768"),
        (("brokers", 1, "node_id"), -5, "brokers[1].node_id is -5, below 0"),
        (("topics", 1, "topic"), "orders", "topic 'orders' listed twice"),
        (("brokers", 0, "port"), "9092", "unexpected Metadata answer"),
    ],
)
def test_a_malformed_metadata_answer_is_a_metadata_error_naming_what(path, value, named):
    answer = _with(metadata_v5([rf3("orders"), rf3("payments")]), path, value)
    with pytest.raises(MetadataError, match="unexpected Metadata answer") as raised:
        decode_topics_metadata(answer)
    assert named in str(raised.value)


@pytest.mark.parametrize("answer", [None, [], "x", 7, {"brokers": []}])
def test_an_answer_that_is_no_metadata_at_all_is_a_metadata_error(answer):
    with pytest.raises(MetadataError):
        decode_topics_metadata(answer)


def test_kafka_error_names():
    assert kafka_error_name(0) is None
    assert kafka_error_name(LEADER_NOT_AVAILABLE) == "LEADER_NOT_AVAILABLE"
    assert kafka_error_name(31_000) == "error code 31000"


# -- DescribeConfigs --------------------------------------------------------------------------------


def test_describe_configs_gives_each_topics_value_and_the_broker_default_from_synonyms():
    answer = configs_v2(
        topic_config("orders", "2"),
        topic_config("payments", "3"),
        topic_config("logs", "1", source=STATIC_BROKER, default="1"),
    )
    resources = decode_describe_configs(answer)
    assert [r.name for r in resources] == ["orders", "payments", "logs"]
    entry = resources[0].entry(MIN_INSYNC_REPLICAS)
    assert entry is not None and entry.value == "2" and entry.source == SOURCE_TOPIC
    assert entry.synonyms == ((SOURCE_TOPIC, "2"), (STATIC_BROKER, "1"))
    configs = min_isr_configs(resources, ["orders", "payments", "logs"])
    assert dict(configs.by_topic) == {"orders": 2, "payments": 3, "logs": 1}
    assert configs.broker_default == 1
    assert configs.default_source == "the synonyms of topic 'logs'"
    assert dict(configs.unread) == {}


def test_the_broker_resource_is_the_broker_default_when_answered():
    answer = configs_v2(
        topic_config("orders", "3", default="2"),
        (0, None, BROKER_RESOURCE, "1", [config_entry("2", STATIC_BROKER)]),
    )
    configs = min_isr_configs(decode_describe_configs(answer), ["orders"], broker="1")
    assert configs.broker_default == 2
    assert configs.default_source == "broker 1's static broker config"


def test_topics_whose_config_cannot_be_read_are_unread_with_why():
    answer = configs_v2(
        topic_config("orders", "2", default="2"),
        (TOPIC_AUTHORIZATION_FAILED, "denied", TOPIC_RESOURCE, "secret", []),
        (0, None, TOPIC_RESOURCE, "odd", []),
    )
    configs = min_isr_configs(decode_describe_configs(answer), ["orders", "secret", "odd", "gone"])
    assert dict(configs.by_topic) == {"orders": 2}
    assert dict(configs.unread) == {
        "gone": "not in the answer",
        "odd": "no min.insync.replicas in the answer",
        "secret": "TOPIC_AUTHORIZATION_FAILED: denied",
    }
    assert configs.broker_default == 2  # from orders' synonyms


def test_no_topic_read_and_no_broker_resource_leaves_the_default_unknown():
    answer = configs_v2((TOPIC_AUTHORIZATION_FAILED, None, TOPIC_RESOURCE, "secret", []))
    configs = min_isr_configs(decode_describe_configs(answer), ["secret"])
    assert configs.broker_default is None
    assert dict(configs.unread) == {"secret": "TOPIC_AUTHORIZATION_FAILED"}


def test_describe_configs_v0_says_only_whether_a_value_is_the_default():
    answer = DescribeConfigsResponse_v0(
        0, [(0, None, TOPIC_RESOURCE, "t", [(MIN_INSYNC_REPLICAS, "2", False, False, False)])]
    ).to_object()
    (resource,) = decode_describe_configs(answer)
    assert resource.entries[0].value == "2"
    assert min_isr_configs([resource], ["t"]).by_topic == {"t": 2}


@pytest.mark.parametrize(
    ("resources", "named"),
    [
        ([topic_config("t", "two")], "min.insync.replicas of topic 't' is 'two', not an integer >= 1"),
        ([topic_config("t", "0")], "is '0', not an integer >= 1"),
        ([(0, None, TOPIC_RESOURCE, "t", [config_entry(None, SOURCE_TOPIC)])], "is None"),
        ([topic_config("t", "2"), topic_config("t", "2")], "'t' answered twice"),
        ([topic_config("u", "2")], "resource 'u' (type 2) was not asked for"),
        ([topic_config("t", "2", source=SOURCE_DEFAULT, default="x")], "not an integer"),
    ],
)
def test_a_malformed_config_value_is_a_metadata_error(resources, named):
    with pytest.raises(MetadataError, match="unexpected DescribeConfigs answer") as raised:
        min_isr_configs(decode_describe_configs(configs_v2(*resources)), ["t"])
    assert named in str(raised.value)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("resources",), {}, "resources is {}, not a list"),
        (("resources", 0, "config_entries", 0, "config_source"), "1", "config_source is '1'"),
        (("resources", 0, "config_entries", 0, "config_synonyms", 0), None, "config_synonyms[0] is None"),
        (("resources", 0, "config_entries", 0, "config_names"), 3, "config_names is 3, not a string"),
        (("resources", 0, "resource_name"), None, "resource_name is None"),
    ],
)
def test_a_malformed_describe_configs_answer_is_a_metadata_error_naming_what(path, value, named):
    answer = _with(configs_v2(topic_config("t", "2")), path, value)
    with pytest.raises(MetadataError, match="unexpected DescribeConfigs answer") as raised:
        decode_describe_configs(answer)
    assert named in str(raised.value)


# -- fuzzing: arbitrary answers give a value or MetadataError, nothing else -------------------------

_KEYS = [
    "brokers", "node_id", "host", "port", "rack", "cluster_id", "controller_id", "topics", "topic",
    "error_code", "is_internal", "partitions", "partition", "leader", "replicas", "isr",
    "offline_replicas", "resources", "resource_type", "resource_name", "error_message",
    "config_entries", "config_names", "config_value", "config_source", "is_default", "config_synonyms",
    "config_name",
]  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=5),
    st.integers(),
    st.sampled_from(["", "t", "2", "min.insync.replicas", "10.0.0.1"]),
    st.text(max_size=5),
    st.floats(allow_nan=True),
    st.binary(max_size=3),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS), children, max_size=8),
    ),
    max_leaves=40,
)


def _mutated(answer: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """`answer` with one value somewhere inside it replaced by an arbitrary one."""
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append((*path, key))
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                paths.append((*path, index))
                walk(value, (*path, index))

    walk(answer, ())
    return _with(answer, data.draw(st.sampled_from(paths)), data.draw(_VALUES))


def _decodes_or_metadata_error(decode: Any, answer: Any) -> None:
    try:
        decode(answer)
    except MetadataError as err:
        message = str(err)
        assert message.startswith("unexpected ") or "no brokers" in message, message


def _configs(answer: Any) -> Any:
    return min_isr_configs(decode_describe_configs(answer), ["orders", "t", "payments"], broker="1")


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_arbitrary_metadata_answers_decode_or_raise_metadata_error(answer):
    _decodes_or_metadata_error(decode_topics_metadata, answer)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_metadata_answers_decode_or_raise_metadata_error(data):
    answer = metadata_v5([rf3("orders"), rf3("payments", isr_without=2)])
    _decodes_or_metadata_error(decode_topics_metadata, _mutated(answer, data))


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_arbitrary_describe_configs_answers_decode_or_raise_metadata_error(answer):
    _decodes_or_metadata_error(_configs, answer)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_describe_configs_answers_decode_or_raise_metadata_error(data):
    answer = configs_v2(
        topic_config("orders", "2"),
        (TOPIC_AUTHORIZATION_FAILED, "denied", TOPIC_RESOURCE, "t", []),
        (0, None, BROKER_RESOURCE, "1", [config_entry("2", STATIC_BROKER)]),
    )
    _decodes_or_metadata_error(_configs, _mutated(answer, data))


# -- the requests -----------------------------------------------------------------------------------


class Recorder:
    """Answers Metadata with `metadata` and DescribeConfigs with every asked topic at min ISR 2."""

    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.requests: list[Any] = []

    async def request(self, server: HostPort, request: Any, timeout: float | None = None) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.requests.append(request)
        if isinstance(request, MetadataRequest):
            return self.metadata
        assert isinstance(request, DescribeConfigsRequest)
        answered = []
        for kind, name, names in request._resources:
            assert names == [MIN_INSYNC_REPLICAS]
            if kind == TOPIC_RESOURCE:
                answered.append(topic_config(name, "2", default="1"))
            else:
                answered.append((0, None, kind, name, [config_entry("1", STATIC_BROKER)]))
        return configs_v2(*answered)

    async def close(self) -> None:
        pass


async def test_fetch_partitions_asks_metadata_of_every_topic_then_configs_in_batches():
    topics = [rf3(f"topic-{n}") for n in range(5)] + [(LEADER_NOT_AVAILABLE, "creating", False, [])]
    client = Recorder(metadata_v5(topics))
    snapshot = await fetch_partitions(client, HostPort("10.0.0.2", 9092), timeout=1, batch=2)
    metadata_request, *describes = client.requests
    assert metadata_request._topics is None  # every topic
    assert metadata_request._allow_auto_topic_creation is False
    asked = [[(kind, name) for kind, name, _ in d._resources] for d in describes]
    assert asked == [
        [(TOPIC_RESOURCE, "topic-0"), (TOPIC_RESOURCE, "topic-1"), (BROKER_RESOURCE, "2")],
        [(TOPIC_RESOURCE, "topic-2"), (TOPIC_RESOURCE, "topic-3")],
        [(TOPIC_RESOURCE, "topic-4")],
    ]  # the topic Metadata could not describe is not asked; the answering broker is (its address)
    assert all(d._include_synonyms for d in describes)
    assert dict(snapshot.min_isr.by_topic) == {f"topic-{n}": 2 for n in range(5)}
    assert snapshot.min_isr.broker_default == 1
    assert snapshot.min_isr.default_source == "broker 2's static broker config"


async def test_fetch_partitions_from_an_address_no_broker_has_asks_no_broker_resource():
    client = Recorder(metadata_v5([rf3("t")]))
    snapshot = await fetch_partitions(client, HostPort("kafka-bootstrap", 9092))
    assert [kind for kind, _, _ in client.requests[1]._resources] == [TOPIC_RESOURCE]
    assert snapshot.min_isr.default_source == "the synonyms of topic 't'"


async def test_a_cluster_without_topics_asks_only_the_broker():
    client = Recorder(metadata_v5([]))
    snapshot = await fetch_partitions(client, HostPort("10.0.0.1", 9092))
    assert [r._resources for r in client.requests[1:]] == [[(BROKER_RESOURCE, "1", [MIN_INSYNC_REPLICAS])]]
    assert snapshot.metadata.topics == ()
    assert snapshot.min_isr.broker_default == 1


async def test_an_answer_without_brokers_is_a_metadata_error():
    client = Recorder(metadata_v5([], brokers=0, controller=-1))
    with pytest.raises(MetadataError, match="no brokers"):
        await fetch_partitions(client, HostPort("10.0.0.1", 9092))


def test_resource_configs_entry_lookup():
    assert ResourceConfigs(TOPIC_RESOURCE, "t").entry(MIN_INSYNC_REPLICAS) is None
