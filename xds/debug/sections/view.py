"""What the status page is made from: one immutable value gathered on the event loop, rendered in a
thread (xds.debug.page). The topology and streams are the JSON views the debug endpoints serve, so
the page and the API never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from xds.debug.sampler import Sample
from xds.pipeline.history import Event
from xds.pipeline.publisher import Publication
from xds.pipeline.snapshot import Snapshot
from xds.shared.resource_types import SHORT_TYPE_NAMES, set_version

__all__ = ["EMPTY_VERSION", "ReplicaView", "SnapshotView", "StatusView", "TypeVersion", "version_label"]

EMPTY_VERSION = set_version(())  # the version of a type with no resources: "nothing", not a hash


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """Which kafka-xds this page is from."""

    host: str
    version: str
    pid: int
    started_at: float  # wall clock
    workers: int
    workers_serving: int
    xds_listen: str
    xds_security: str  # "plaintext", "TLS" or "mTLS"
    debug_listen: str


@dataclass(frozen=True, slots=True)
class TypeVersion:
    type_name: str  # short: clusters, endpoints, ...
    version: str
    resources: int


@dataclass(frozen=True, slots=True)
class SnapshotView:
    """The snapshot served, and the recent generations by version, so that a version a sidecar holds
    reads as "generation 7, 12:01:02" rather than a hash."""

    generation: int
    published_at: float | None
    types: tuple[TypeVersion, ...]
    generations: Mapping[tuple[str, str], Publication] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: Snapshot, generation: int, publications: tuple[Publication, ...]) -> SnapshotView:
        types = tuple(
            TypeVersion(short, snapshot.version(type_url), len(snapshot.resources(type_url)))
            for type_url, short in SHORT_TYPE_NAMES.items()
        )
        return cls.build(generation, types, publications)

    @classmethod
    def build(
        cls, generation: int, types: tuple[TypeVersion, ...], publications: tuple[Publication, ...]
    ) -> SnapshotView:
        generations: dict[tuple[str, str], Publication] = {}
        for publication in publications:  # oldest first: a version's first generation wins
            for type_url, version in publication.versions.items():
                generations.setdefault((SHORT_TYPE_NAMES.get(type_url, type_url), version), publication)
        current = publications[-1].at if publications else None
        return cls(generation, current, types, generations)

    def current(self, type_name: str) -> str | None:
        for typed in self.types:
            if typed.type_name == type_name:
                return typed.version
        return None

    def generation_of(self, type_name: str, version: str) -> int | None:
        publication = self.generations.get((type_name, version))
        return publication.generation if publication is not None else None


def version_label(snapshot: SnapshotView | None, type_name: str, version: str | None) -> str:
    """A version as a person reads it: "nothing" for no resources, its generation when it is one of
    the recent ones ("gen 7, current"), else the start of its hash."""
    if not version or version == "-":
        return "none acked"
    if version == EMPTY_VERSION:
        return "nothing"
    generation = snapshot.generation_of(type_name, version) if snapshot is not None else None
    if generation is None:
        return version[:8]
    current = snapshot is not None and snapshot.current(type_name) == version
    return f"gen {generation}" + (", current" if current else "")


@dataclass(frozen=True, slots=True)
class StatusView:
    now: float  # wall clock
    replica: ReplicaView
    waiting: Mapping[str, str]  # /readyz's reasons; empty when ready
    topology: Mapping[str, Any]  # xds.debug.render.render_topology
    streams: Mapping[str, Any]  # the fleet's stream report, first page
    snapshot: SnapshotView | None
    events: tuple[Event, ...]  # newest first
    samples: tuple[Sample, ...]  # oldest first
    sample_interval: float
    event_capacity: int
    build_error: str | None = None
