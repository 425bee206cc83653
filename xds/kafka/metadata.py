"""What a Kafka cluster's Metadata answer says, decoded from any version into plain values.

Used by the KRaft source (which brokers are live, on which endpoint) and by everything that asks a
cluster about itself. An answer that does not have the expected shape raises `MetadataError`, never
anything else, so a caller can keep what it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MetadataBroker:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterMetadata:
    """What one Metadata answer says about the cluster."""

    cluster_id: str | None
    controller_id: int | None
    brokers: tuple[MetadataBroker, ...]


class MetadataError(Exception):
    """A server answered, but not usefully (a Kafka error, an unexpected answer)."""


def decode_metadata(answer: dict[str, Any]) -> ClusterMetadata:
    """aiokafka's decoded Metadata response (any version) as ClusterMetadata.

    Types are checked here; values (a port outside 1..65535, a host that is no address) are the
    caller's to judge per broker, so that one bad broker costs only itself."""
    try:
        brokers = tuple(_broker(broker) for broker in answer["brokers"])
        cluster_id = answer.get("cluster_id")
        controller = answer.get("controller_id")
        if cluster_id is not None and not isinstance(cluster_id, str):
            raise TypeError(f"cluster_id is {cluster_id!r}")
        if controller is not None and not _is_int(controller):
            raise TypeError(f"controller_id is {controller!r}")
    except (KeyError, TypeError, ValueError) as err:
        raise MetadataError(f"unexpected Metadata answer: {err!r}") from None
    ids = [broker.node_id for broker in brokers]
    if len(set(ids)) != len(ids):
        raise MetadataError(f"Metadata answer lists a broker id twice: {sorted(ids)}")
    return ClusterMetadata(
        cluster_id, controller if controller is not None and controller >= 0 else None, brokers
    )


def _broker(broker: Any) -> MetadataBroker:
    node_id, host, port, rack = broker["node_id"], broker["host"], broker["port"], broker.get("rack")
    if not _is_int(node_id) or not _is_int(port) or not isinstance(host, str):
        raise TypeError(f"broker {broker!r}")
    if rack is not None and not isinstance(rack, str):
        raise TypeError(f"rack of broker {node_id} is {rack!r}")
    return MetadataBroker(node_id, host, port, rack)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
