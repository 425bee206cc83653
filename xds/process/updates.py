"""The one diff from published snapshots to `SnapshotUpdate`s, for one serving process or many."""

from __future__ import annotations

from xds.pipeline.publisher import Publisher
from xds.pipeline.snapshot import Snapshot
from xds.process.messages import SnapshotUpdate
from xds.shared.resource import Resource


def snapshot_update(cache: Publisher, snapshot: Snapshot, previous: Snapshot | None) -> SnapshotUpdate:
    """Everything in `snapshot` (no previous), or what changed since `previous`: resources whose
    version differs, and (type URL, name) of those gone."""
    upserts: list[Resource] = []
    removed: list[tuple[str, str]] = []
    for record in snapshot.all_resources():
        before = previous.resources(record.type_url).get(record.name) if previous else None
        if before is None or before.version != record.version:
            upserts.append(record)
    if previous is not None:
        for type_url, typed in previous.by_type.items():
            current = snapshot.resources(type_url)
            removed.extend((type_url, name) for name in typed.resources if name not in current)
    return SnapshotUpdate(
        cache.generation, cache.change_seen_at, previous is None, tuple(upserts), tuple(removed)
    )
