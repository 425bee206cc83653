"""One Envoy resource as the pipeline builds it, a worker receives it, and serving encodes it.

The same value in every role: the main process builds it once per change of its inputs
(xds.pipeline.resources), sends it to the workers (xds.process.messages), and each serving process
wraps it in its two wire encodings (xds.serving.protocol's `Served`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, eq=False)
class Resource:
    """One Envoy resource, serialized once, with a version that is the hash of its bytes.

    Compared by identity: a resource whose inputs did not change is the very object built before,
    and equal content always has equal `version`s (compare those)."""

    type_url: str
    name: str
    version: str  # sha256 of the payload, 16 hex digits: equal bytes, equal versions, on any replica
    payload: bytes  # the serialized resource message (what an Any's value holds)
    references: frozenset[str]  # a listener: the clusters it forwards to; a cluster: the secrets it uses
    kafka_cluster: str  # the Kafka cluster of the broker this resource is for

    @classmethod
    def of(
        cls,
        type_url: str,
        name: str,
        payload: bytes,
        kafka_cluster: str,
        references: frozenset[str] = frozenset(),
    ) -> Resource:
        return cls(
            type_url, name, hashlib.sha256(payload).hexdigest()[:16], payload, references, kafka_cluster
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its fields: half the time of the default for slotted dataclasses, and a snapshot
        # of tens of thousands of resources crosses to every worker this way.
        return (
            Resource,
            (self.type_url, self.name, self.version, self.payload, self.references, self.kafka_cluster),
        )
