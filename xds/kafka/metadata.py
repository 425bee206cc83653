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
    """aiokafka's decoded Metadata response (any version) as ClusterMetadata."""
    try:
        brokers = tuple(
            MetadataBroker(
                int(broker["node_id"]), str(broker["host"]), int(broker["port"]), broker.get("rack")
            )
            for broker in answer["brokers"]
        )
    except (KeyError, TypeError, ValueError) as err:
        raise MetadataError(f"unexpected Metadata answer: {err!r}") from None
    ids = [broker.node_id for broker in brokers]
    if len(set(ids)) != len(ids):
        raise MetadataError(f"Metadata answer lists a broker id twice: {sorted(ids)}")
    controller = answer.get("controller_id")
    return ClusterMetadata(
        answer.get("cluster_id"),
        int(controller) if controller is not None and controller >= 0 else None,
        brokers,
    )
