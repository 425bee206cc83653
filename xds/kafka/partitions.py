"""A cluster's partitions and each topic's `min.insync.replicas`, asked in Kafka's own protocol.

Two requests, both answered by any broker, over the client's one connection:

* one Metadata request for every topic: brokers (with racks), the controller id, and per partition
  its leader, replicas, ISR and offline replicas. In KRaft, a fenced broker is simply absent from
  the answer's brokers (as is one that is down), and the controller id is a broker chosen at random
  (clients send controller requests to any broker, which forwards them); in ZooKeeper mode it is the
  controller broker;
* DescribeConfigs of `min.insync.replicas` for every topic (topic resources with that config name
  only, `DESCRIBE_CONFIGS_BATCH` topics per request, with synonyms), which gives each topic's
  effective value and, from the synonyms, the broker default beneath it. The broker resource of the
  broker answering is asked too when its id is known (its Metadata entry is the address asked).

Decoding is strict: an answer of an unexpected shape raises `MetadataError` naming what was wrong,
never anything else; Kafka's own per-topic errors are values (`TopicInfo.error`,
`MinIsrConfigs.unread`) for the caller to report. The values are this package's own, frozen; the
health decisions convert them (`xds.health.fetch`).

The principal asking needs Describe on the topics (Kafka leaves unauthorized topics out of the
Metadata answer, silently) and DescribeConfigs on them (and on the cluster for the broker resource).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeConfigsRequest
from aiokafka.protocol.metadata import MetadataRequest

from xds.kafka.metadata import ClusterMetadata, MetadataError, decode_metadata
from xds.shared.addresses import HostPort

__all__ = [
    "DESCRIBE_CONFIGS_BATCH",
    "MIN_INSYNC_REPLICAS",
    "ConfigEntry",
    "MinIsrConfigs",
    "PartitionInfo",
    "PartitionSnapshot",
    "Requester",
    "ResourceConfigs",
    "TopicInfo",
    "TopicsMetadata",
    "decode_describe_configs",
    "decode_topics_metadata",
    "fetch_partitions",
    "kafka_error_name",
    "min_isr_configs",
]

MIN_INSYNC_REPLICAS = "min.insync.replicas"
DESCRIBE_CONFIGS_BATCH = 1000  # topics per DescribeConfigs request: ~150 kB of answer with synonyms

TOPIC_RESOURCE = 2  # Kafka's ConfigResource types
BROKER_RESOURCE = 4

# ConfigSource (DescribeConfigs v1+); v0 says only `is_default`
SOURCE_UNKNOWN = 0
SOURCE_TOPIC = 1  # TOPIC_CONFIG: set on the topic itself
SOURCE_DEFAULT = 5  # DEFAULT_CONFIG: Kafka's built-in default
SOURCE_NAMES = {
    0: "unknown",
    1: "topic",
    2: "dynamic broker",
    3: "dynamic cluster default",
    4: "static broker",
    5: "Kafka default",
    6: "broker logger",
    7: "client metrics",
    8: "group",
}


class Requester(Protocol):
    """What sends requests: `xds.kafka.client.KafkaMetadataClient` (a fake in tests)."""

    async def request(
        self, server: HostPort, request: Any, timeout: float | None = None
    ) -> dict[str, Any]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition as Metadata tells it; `error` is Kafka's error name (LEADER_NOT_AVAILABLE for a
    partition without a leader), None when there is none. A leader of -1: no leader."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """One topic; `error` (Kafka's error name) when Metadata could not describe it, None otherwise."""

    name: str
    partitions: tuple[PartitionInfo, ...]
    internal: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TopicsMetadata:
    """A Metadata answer for every topic: the cluster (brokers, ids) and its topics, by name."""

    cluster: ClusterMetadata
    topics: tuple[TopicInfo, ...]


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One config of a resource: its effective value, where it comes from (`SOURCE_NAMES`) and,
    when asked with synonyms, the values beneath it in precedence order (source, value)."""

    name: str
    value: str | None
    source: int = SOURCE_UNKNOWN
    synonyms: tuple[tuple[int, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class ResourceConfigs:
    """One resource of a DescribeConfigs answer; `error` (Kafka's error name and message) instead of
    entries when the broker could not describe it."""

    resource_type: int
    name: str
    entries: tuple[ConfigEntry, ...] = ()
    error: str | None = None

    def entry(self, name: str) -> ConfigEntry | None:
        return next((entry for entry in self.entries if entry.name == name), None)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class MinIsrConfigs:
    """Each topic's effective `min.insync.replicas` that could be read, the broker default beneath
    (None when it could not be learned; `default_source` says from where), and why each other topic's
    could not be read (topic -> reason)."""

    by_topic: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    broker_default: int | None = None
    default_source: str | None = None
    unread: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class PartitionSnapshot:
    """What one server said: the Metadata of every topic and their min ISR configs."""

    server: HostPort
    metadata: TopicsMetadata
    min_isr: MinIsrConfigs


# -- decoding -------------------------------------------------------------------------------------


class _Bad(Exception):
    """Inside the decoders: what is wrong, with where; the entry points make it a MetadataError."""


def _show(value: Any) -> str:
    """A value for an error message, short whatever it is (a huge int's repr even raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:  # recursion, a repr that raises: the type says enough
        return f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _get(obj: Any, key: str, where: str, default: Any = ...) -> Any:
    """`obj[key]`; a missing key is `default` when given (a field newer versions added)."""
    if not isinstance(obj, dict):
        raise _Bad(f"{where} is {_show(obj)}, not a mapping")
    if key not in obj:
        if default is not ...:
            return default
        raise _Bad(f"{where}.{key} is missing")
    return obj[key]


INT16 = (-(2**15), 2**15 - 1)
INT32 = (-(2**31), 2**31 - 1)


def _int(value: Any, where: str, low: int = INT32[0], high: int = INT32[1]) -> int:
    """An integer within Kafka's field range (int32 unless said otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Bad(f"{where} is {_show(value)}, not an integer")
    if value < low:
        raise _Bad(f"{where} is {_show(value)}, below {low}")
    if value > high:
        raise _Bad(f"{where} is {_show(value)}, above {high}")
    return value


def _code(value: Any, where: str) -> str | None:
    """An error code (int16) as Kafka's error name, None for no error."""
    return kafka_error_name(_int(value, where, *INT16))


def _str(value: Any, where: str, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise _Bad(f"{where} is {_show(value)}, not a string")
    return value


def _name(value: Any, where: str) -> str:
    text = _str(value, where)
    assert text is not None
    if not text:
        raise _Bad(f"{where} is empty")
    return text


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _Bad(f"{where} is {_show(value)}, not a list")
    return list(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"{where} is {_show(value)}, not a boolean")
    return value


def _broker_ids(value: Any, where: str) -> tuple[int, ...]:
    ids = tuple(_int(b, f"{where}[{i}]", 0) for i, b in enumerate(_list(value, where)))
    if len(set(ids)) != len(ids):
        raise _Bad(f"{where} lists a broker twice: {_show(list(ids))}")
    return ids


def kafka_error_name(code: int) -> str | None:
    """Kafka's name of an error code (`LEADER_NOT_AVAILABLE`), None for 0 (no error)."""
    if code == 0:
        return None
    error = for_code(code)
    name = getattr(error, "message", None)
    return name if isinstance(name, str) and getattr(error, "errno", None) == code else f"error code {code}"


def _partition(topic: str, raw: Any, where: str) -> PartitionInfo:
    error = _code(_get(raw, "error_code", where), f"{where}.error_code")
    return PartitionInfo(
        topic,
        _int(_get(raw, "partition", where), f"{where}.partition", 0),
        _int(_get(raw, "leader", where), f"{where}.leader", -1),
        _broker_ids(_get(raw, "replicas", where), f"{where}.replicas"),
        _broker_ids(_get(raw, "isr", where), f"{where}.isr"),
        _broker_ids(_get(raw, "offline_replicas", where, []), f"{where}.offline_replicas"),  # v5+
        error,
    )


def _topic(raw: Any, where: str) -> TopicInfo:
    name = _name(_get(raw, "topic", where), f"{where}.topic")
    error = _code(_get(raw, "error_code", where), f"{where}.error_code")
    internal = _bool(_get(raw, "is_internal", where, False), f"{where}.is_internal")  # v1+
    where = f"topic {name!r}"
    partitions = tuple(
        _partition(name, p, f"{where} partitions[{i}]")
        for i, p in enumerate(_list(_get(raw, "partitions", where), f"{where} partitions"))
    )
    numbers = [p.partition for p in partitions]
    if len(set(numbers)) != len(numbers):
        raise _Bad(f"{where} lists a partition twice")
    return TopicInfo(name, tuple(sorted(partitions, key=lambda p: p.partition)), internal, error)


def decode_topics_metadata(answer: Any) -> TopicsMetadata:
    """aiokafka's decoded Metadata answer (any version, asked for every topic) as TopicsMetadata;
    MetadataError for anything of another shape."""
    cluster = decode_metadata(answer) if isinstance(answer, dict) else None
    if cluster is None:
        raise MetadataError(f"unexpected Metadata answer: {_show(answer)}, not a mapping")
    try:
        for i, broker in enumerate(cluster.brokers):
            _int(broker.node_id, f"brokers[{i}].node_id", 0)
        topics = tuple(
            _topic(t, f"topics[{i}]") for i, t in enumerate(_list(_get(answer, "topics", "answer"), "topics"))
        )
    except _Bad as err:
        raise MetadataError(f"unexpected Metadata answer: {err}") from None
    names = [topic.name for topic in topics]
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise MetadataError(f"unexpected Metadata answer: topic {twice[0]!r} listed twice")
    return TopicsMetadata(cluster, tuple(sorted(topics, key=lambda t: t.name)))


def _entry(raw: Any, where: str) -> ConfigEntry:
    name = _name(_get(raw, "config_names", where), f"{where}.config_names")  # sic: aiokafka's name
    value = _str(_get(raw, "config_value", where), f"{where}.config_value", nullable=True)
    if "config_source" in raw:  # v1+
        source = _int(raw["config_source"], f"{where}.config_source", -128, 127)  # int8
    else:  # v0: only whether it is the default
        default = _bool(_get(raw, "is_default", where), f"{where}.is_default")
        source = SOURCE_DEFAULT if default else SOURCE_UNKNOWN
    synonyms = []
    for i, synonym in enumerate(_list(_get(raw, "config_synonyms", where, []), f"{where}.config_synonyms")):
        at = f"{where}.config_synonyms[{i}]"
        _name(_get(synonym, "config_name", at), f"{at}.config_name")
        synonyms.append(
            (
                _int(_get(synonym, "config_source", at), f"{at}.config_source", -128, 127),
                _str(_get(synonym, "config_value", at), f"{at}.config_value", nullable=True),
            )
        )
    return ConfigEntry(name, value, source, tuple(synonyms))


def _resource(raw: Any, where: str) -> ResourceConfigs:
    kind = _int(_get(raw, "resource_type", where), f"{where}.resource_type", -128, 127)
    name = _str(_get(raw, "resource_name", where), f"{where}.resource_name")
    assert name is not None
    error = _code(_get(raw, "error_code", where), f"{where}.error_code")
    message = _str(_get(raw, "error_message", where, None), f"{where}.error_message", nullable=True)
    entries = _list(_get(raw, "config_entries", where), f"{where}.config_entries")
    if error is not None:
        return ResourceConfigs(kind, name, (), f"{error}: {message}" if message else error)
    return ResourceConfigs(
        kind, name, tuple(_entry(e, f"{where} entries[{i}]") for i, e in enumerate(entries))
    )


def decode_describe_configs(answer: Any) -> tuple[ResourceConfigs, ...]:
    """aiokafka's decoded DescribeConfigs answer (any version) as ResourceConfigs, in answer order;
    MetadataError for anything of another shape. A resource the broker could not describe is a
    value with `error`, not an exception."""
    try:
        resources = _list(_get(answer, "resources", "answer"), "resources")
        return tuple(_resource(r, f"resources[{i}]") for i, r in enumerate(resources))
    except _Bad as err:
        raise MetadataError(f"unexpected DescribeConfigs answer: {err}") from None


def _positive(value: str | None, where: str) -> int:
    """A min.insync.replicas value: Kafka validates it as an int >= 1, so anything else is malformed."""
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise MetadataError(
            f"unexpected DescribeConfigs answer: {where} is {_show(value)}, not an integer >= 1"
        )
    return int(text)


def _beneath_topic(entry: ConfigEntry, where: str) -> int | None:
    """The broker-level value beneath a topic's entry: the entry itself when it is not the topic's
    own, else its first synonym from another source."""
    if entry.source not in (SOURCE_TOPIC, SOURCE_UNKNOWN):
        return _positive(entry.value, where)
    for source, value in entry.synonyms:
        if source != SOURCE_TOPIC:
            return _positive(value, f"{where} (synonym from the {SOURCE_NAMES.get(source, source)} config)")
    return None


def min_isr_configs(
    resources: Iterable[ResourceConfigs], topics: Sequence[str], broker: str | None = None
) -> MinIsrConfigs:
    """Each topic's min ISR from DescribeConfigs answers about `topics` (and about broker `broker`,
    when asked). A topic missing from the answers, answered with an error or without the entry is
    unread, with why; the broker default comes from the broker resource, else from a topic's
    synonyms. MetadataError for a value that is no integer >= 1 or a resource answered twice."""
    wanted = set(topics)
    by_topic: dict[str, int] = {}
    unread: dict[str, str] = {}
    answered: set[tuple[int, str]] = set()
    default: int | None = None
    default_source: str | None = None
    beneath: tuple[str, int] | None = None
    for resource in resources:
        key = (resource.resource_type, resource.name)
        if key in answered:
            raise MetadataError(f"unexpected DescribeConfigs answer: {resource.name!r} answered twice")
        answered.add(key)
        entry = resource.entry(MIN_INSYNC_REPLICAS)
        if resource.resource_type == BROKER_RESOURCE and broker is not None and resource.name == broker:
            if entry is not None and resource.error is None:
                default = _positive(entry.value, f"{MIN_INSYNC_REPLICAS} of broker {broker}")
                default_source = f"broker {broker}'s {SOURCE_NAMES.get(entry.source, 'unknown')} config"
            continue
        if resource.resource_type != TOPIC_RESOURCE or resource.name not in wanted:
            raise MetadataError(
                f"unexpected DescribeConfigs answer: resource {resource.name!r} "
                f"(type {resource.resource_type}) was not asked for"
            )
        if resource.error is not None:
            unread[resource.name] = resource.error
        elif entry is None:
            unread[resource.name] = f"no {MIN_INSYNC_REPLICAS} in the answer"
        else:
            where = f"{MIN_INSYNC_REPLICAS} of topic {resource.name!r}"
            by_topic[resource.name] = _positive(entry.value, where)
            below = _beneath_topic(entry, where)
            if below is not None and (beneath is None or resource.name < beneath[0]):
                beneath = (resource.name, below)
    for topic in wanted - by_topic.keys() - unread.keys():
        unread[topic] = "not in the answer"
    if default is None and beneath is not None:
        default, default_source = beneath[1], f"the synonyms of topic {beneath[0]!r}"
    return MinIsrConfigs(_frozen(by_topic), default, default_source, _frozen(dict(sorted(unread.items()))))


# -- asking ---------------------------------------------------------------------------------------


def _answering_broker(metadata: TopicsMetadata, server: HostPort) -> int | None:
    """The id of the broker at `server`, when its Metadata entry is that address."""
    for broker in metadata.cluster.brokers:
        if HostPort(broker.host, broker.port) == server:
            return broker.node_id
    return None


async def fetch_partitions(
    client: Requester,
    server: HostPort,
    timeout: float | None = None,
    batch: int = DESCRIBE_CONFIGS_BATCH,
) -> PartitionSnapshot:
    """Ask `server` for every topic's partitions (one Metadata request) and min ISR (DescribeConfigs,
    `batch` topics a request, one after another on the one connection). `timeout` bounds each
    request (the caller bounds the whole). Raises OSError, TimeoutError or MetadataError; an answer
    listing no broker at all (a broker still loading its metadata) is a MetadataError."""
    answer = await client.request(
        server, MetadataRequest(topics=None, allow_auto_topic_creation=False), timeout
    )
    metadata = decode_topics_metadata(answer)
    if not metadata.cluster.brokers:
        raise MetadataError("answered with no brokers (still starting?)")
    topics = [topic.name for topic in metadata.topics if topic.error is None]
    broker_id = _answering_broker(metadata, server)
    broker = str(broker_id) if broker_id is not None else None
    resources: list[ResourceConfigs] = []
    requests: list[list[tuple[int, str, list[str]]]] = [
        [(TOPIC_RESOURCE, name, [MIN_INSYNC_REPLICAS]) for name in topics[start : start + max(batch, 1)]]
        for start in range(0, len(topics), max(batch, 1))
    ] or [[]]
    if broker is not None:
        requests[0].append((BROKER_RESOURCE, broker, [MIN_INSYNC_REPLICAS]))
    for asked in requests:
        if asked:
            request = DescribeConfigsRequest(asked, include_synonyms=True)
            resources.extend(decode_describe_configs(await client.request(server, request, timeout)))
    return PartitionSnapshot(server, metadata, min_isr_configs(resources, topics, broker))
