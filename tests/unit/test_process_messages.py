"""The main process ↔ worker messages: one diff from snapshots to updates, applied the same way."""

from __future__ import annotations

import pickle

from xds.pipeline.publisher import Publisher
from xds.pipeline.snapshot import Snapshot
from xds.process.messages import SnapshotUpdate
from xds.process.updates import snapshot_update
from xds.serving.protocol import ServedSnapshot
from xds.shared.resource import Resource
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE


def _broker(index: int, upstream: str) -> list[Resource]:
    name = f"kafka-a-{index}"
    return [
        Resource.of(LISTENER_TYPE, name, f"listener {index}".encode(), "kafka-a", frozenset({name})),
        Resource.of(CLUSTER_TYPE, name, f"cluster {index}".encode(), "kafka-a"),
        Resource.of(ENDPOINT_TYPE, name, upstream.encode(), "kafka-a"),
    ]


def _served(served: ServedSnapshot) -> dict[str, dict[str, tuple[str, bytes, bytes]]]:
    return {
        type_url: {name: (s.version, s.sotw_entry, s.delta_entry) for name, s in named.items()}
        for type_url, named in served.by_type.items()
    }


def test_updates_applied_in_turn_serve_what_a_full_build_of_the_last_snapshot_serves():
    publisher = Publisher()
    first = Snapshot.of([*_broker(1, "10.0.0.1:9093"), *_broker(2, "10.0.0.2:9093")])
    publisher.publish(first)
    full = snapshot_update(publisher, first, None)
    assert full.full and len(full.upserts) == 6 and full.removed == ()
    served = full.apply(None)

    second = Snapshot.of([*_broker(1, "10.0.0.9:9093"), *_broker(3, "10.0.0.3:9093")])  # 1 moved, 2 gone
    publisher.publish(second)
    delta = snapshot_update(publisher, second, first)
    assert not delta.full
    assert sorted((r.type_url, r.name) for r in delta.upserts) == sorted(
        [
            (ENDPOINT_TYPE, "kafka-a-1"),
            (LISTENER_TYPE, "kafka-a-3"),
            (CLUSTER_TYPE, "kafka-a-3"),
            (ENDPOINT_TYPE, "kafka-a-3"),
        ]
    )
    assert sorted(delta.removed) == sorted(
        [(LISTENER_TYPE, "kafka-a-2"), (CLUSTER_TYPE, "kafka-a-2"), (ENDPOINT_TYPE, "kafka-a-2")]
    )
    after = delta.apply(served)
    rebuilt = ServedSnapshot.build(publisher.generation, second.all_resources())
    assert _served(after) == _served(rebuilt)
    assert after.versions == rebuilt.versions
    assert after.generation == publisher.generation == 2
    # The unchanged listener keeps its encoding object: nothing is encoded twice.
    assert after.by_type[LISTENER_TYPE]["kafka-a-1"] is served.by_type[LISTENER_TYPE]["kafka-a-1"]


def test_an_update_crosses_a_process_boundary_intact():
    publisher = Publisher()
    snapshot = Snapshot.of(_broker(1, "10.0.0.1:9093"))
    publisher.publish(snapshot, change_seen_at=12.5)
    update = snapshot_update(publisher, snapshot, None)
    copy = pickle.loads(pickle.dumps(update, protocol=pickle.HIGHEST_PROTOCOL))
    assert isinstance(copy, SnapshotUpdate)
    assert copy.change_seen_at == 12.5 and copy.generation == 1
    assert [
        (r.type_url, r.name, r.version, r.payload, r.references, r.kafka_cluster) for r in copy.upserts
    ] == [(r.type_url, r.name, r.version, r.payload, r.references, r.kafka_cluster) for r in update.upserts]
