"""What streams should have, computed once and shared by every stream that should have the same.

A `ServedSnapshot` holds every resource already encoded for the wire. A `Views` object belongs to one
snapshot and memoises, by value, everything a stream asks of it: the resources a subscription sees
(`View`), what changed between two views, and the encoded response body with its nonce. A thousand
sidecars with the same subscription therefore cost one computation and share one byte string; per
stream there is only bookkeeping (which view it holds, which nonce is in flight). The memo is bounded
in bytes, and keeps what only one stream asks for only while it is small (see _MEMO_BYTES).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from xds.serving.protocol.messages import delta_entry, sotw_entry
from xds.shared.resource import Resource
from xds.shared.resource_types import TYPE_ORDER, set_version

_T = TypeVar("_T")
_EMPTY_NAMES: frozenset[str] = frozenset()
# What the memo of one snapshot keeps: at most this many entries, holding about this many bytes
# (see _size), the least recently used going first. An entry larger than _SHARED_BYTES is kept only
# once a second stream asks for it: one sidecar's own subscription (a thousand invented names) is
# never worth keeping, a subscription that many sidecars share is.
_MEMO_LIMIT = 20_000
_MEMO_BYTES = 32 * 1024 * 1024
_SHARED_BYTES = 64 * 1024
_SEEN_ONCE_LIMIT = 10_000  # hashes of large entries' keys asked for once, remembered per snapshot
_ENTRY_BYTES = 64  # one entry of a dict or set (its slot, hash and share of the table), counted upward


@dataclass(frozen=True, slots=True, eq=False)
class Served:
    """One resource as the serving side holds it: its identity, and its two wire encodings."""

    type_url: str
    name: str
    version: str
    kafka_cluster: str
    references: frozenset[str]
    sotw_entry: bytes  # DiscoveryResponse.resources entry (an Any)
    delta_entry: bytes  # DeltaDiscoveryResponse.resources entry (a Resource)

    @classmethod
    def of(cls, record: Resource) -> Served:
        return cls(
            record.type_url,
            record.name,
            record.version,
            record.kafka_cluster,
            record.references,
            sotw_entry(record.type_url, record.payload),
            delta_entry(record.type_url, record.name, record.version, record.payload),
        )


@dataclass(frozen=True, slots=True)
class ServedSnapshot:
    """Every resource of one published snapshot, encoded; immutable."""

    generation: int
    by_type: Mapping[str, Mapping[str, Served]]
    versions: Mapping[str, str]
    change_seen_at: float | None = None  # time.monotonic() of the change this snapshot carries

    @classmethod
    def build(
        cls,
        generation: int,
        records: Iterable[Resource],
        previous: ServedSnapshot | None = None,
        change_seen_at: float | None = None,
    ) -> ServedSnapshot:
        """Encode `records`, reusing every resource `previous` already encoded at the same version."""
        grouped: dict[str, dict[str, Served]] = {type_url: {} for type_url in TYPE_ORDER}
        for record in records:
            known = previous.by_type.get(record.type_url, {}).get(record.name) if previous else None
            if known is None or known.version != record.version:
                known = Served.of(record)
            grouped.setdefault(record.type_url, {})[record.name] = known
        return cls._of(generation, grouped, change_seen_at)

    @classmethod
    def _of(
        cls, generation: int, grouped: dict[str, dict[str, Served]], change_seen_at: float | None
    ) -> ServedSnapshot:
        by_type = {
            type_url: MappingProxyType(dict(sorted(named.items()))) for type_url, named in grouped.items()
        }
        versions = {
            type_url: set_version((name, served.version) for name, served in named.items())
            for type_url, named in by_type.items()
        }
        return cls(generation, MappingProxyType(by_type), MappingProxyType(versions), change_seen_at)

    def resources(self, type_url: str) -> Mapping[str, Served]:
        return self.by_type.get(type_url, MappingProxyType({}))

    def updated(
        self,
        generation: int,
        upserts: Iterable[Resource],
        removed: Iterable[tuple[str, str]],
        change_seen_at: float | None = None,
    ) -> ServedSnapshot:
        """This snapshot with some resources added or replaced and some (type URL, name) removed."""
        grouped = {type_url: dict(named) for type_url, named in self.by_type.items()}
        for type_url, name in removed:
            grouped.get(type_url, {}).pop(name, None)
        for record in upserts:
            grouped.setdefault(record.type_url, {})[record.name] = Served.of(record)
        return self._of(generation, grouped, change_seen_at)


class View:
    """The resources of one type that a stream should have, or that a client holds.

    Immutable. `absent` holds names the stream subscribed to that do not exist (the incremental
    protocol tells the client so); `retained` names the client keeps although they left the snapshot
    (a cluster a listener still uses). A view built from versions a client declared on reconnect has
    versions but no resources."""

    __slots__ = (
        "_references",
        "_size",
        "_versions",
        "absent",
        "resources",
        "retained",
        "type_url",
        "version",
        "withheld",
    )

    def __init__(
        self,
        type_url: str,
        resources: Mapping[str, Served],
        absent: frozenset[str] = _EMPTY_NAMES,
        retained: frozenset[str] = _EMPTY_NAMES,
        version: str | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> None:
        self.type_url = type_url
        self.resources = resources
        self.absent = absent
        self.retained = retained
        self._versions = versions
        self._references: frozenset[str] | None = None
        self._size: int | None = None
        self.withheld: frozenset[str] = _EMPTY_NAMES  # new resources held back until they are ready
        if version is None:
            version = set_version((name, served.version) for name, served in resources.items())
        self.version = version

    @classmethod
    def declared(cls, type_url: str, versions: Mapping[str, str]) -> View:
        """What a client says it holds (incremental `initial_resource_versions`)."""
        return cls(type_url, MappingProxyType({}), version="", versions=MappingProxyType(dict(versions)))

    @property
    def versions(self) -> Mapping[str, str]:
        if self._versions is None:
            self._versions = {name: served.version for name, served in self.resources.items()}
        return self._versions

    @property
    def references(self) -> frozenset[str]:
        """Every cluster the listeners of this view forward to.

        Of listeners a client declares it holds we know only names and versions; a listener kafka-xds
        serves forwards to the cluster of its own name, so those names stand for their references."""
        if self._references is None:
            if self._versions is not None and not self.resources:
                self._references = frozenset(self._versions)
            else:
                self._references = frozenset().union(
                    *(served.references for served in self.resources.values())
                )
        return self._references

    @property
    def size(self) -> int:
        """About the bytes this view holds beyond the snapshot's resources, counted upward: its
        mappings (with the versions one, made when first asked for), and every name it holds that
        may have come from a request rather than the snapshot."""
        if self._size is None:
            size = 2 * _ENTRY_BYTES * len(self.resources)
            size += _names_size(self.absent) + _names_size(self.retained) + _names_size(self.withheld)
            if self._versions is not None and not self.resources:  # declared by a client
                size += _names_size(self._versions.keys()) + _names_size(self._versions.values())
            elif self._versions is not None:
                size += _names_size(self._versions.keys())
            self._size = size
        return self._size

    def restricted(self, names: frozenset[str]) -> View:
        """This holding without what the client stopped subscribing to."""
        versions = {name: version for name, version in self.versions.items() if name in names}
        resources = {name: served for name, served in self.resources.items() if name in names}
        return View(
            self.type_url,
            MappingProxyType(resources),
            self.absent & names,
            self.retained & names,
            version=self.version if len(versions) == len(self.versions) else "",
            versions=MappingProxyType(versions),
        )

    def __repr__(self) -> str:
        return f"View({self.type_url.rsplit('.', 1)[-1]}, {len(self.versions)} resources, {self.version!r})"


@dataclass(frozen=True, slots=True)
class Body:
    """One encoded response, shared by every stream that is sent it; the nonce is part of it."""

    data: bytes
    nonce: str
    serial: int
    version: str
    resources: int
    removed: int


class Nonces:
    """Nonces unique to this process (a random prefix) and increasing, so that a nonce from another
    process, replica or earlier run never matches, and a stream never sees the same one twice."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix if prefix is not None else os.urandom(4).hex()
        self._serials = itertools.count(1)

    def next(self) -> tuple[int, str]:
        serial = next(self._serials)
        return serial, f"{self.prefix}-{serial:x}"


class Views:
    """The shared computations of one snapshot, memoised by value (see the module docstring)."""

    def __init__(
        self,
        snapshot: ServedSnapshot,
        nonces: Nonces,
        control_plane: bytes = b"",
        max_memo_bytes: int = _MEMO_BYTES,
    ) -> None:
        self.snapshot = snapshot
        self.nonces = nonces
        self.control_plane = control_plane
        self._max_memo_bytes = max_memo_bytes
        self._memo: OrderedDict[Hashable, object] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self._seen_once: set[int] = set()
        self.held_bytes = 0  # what the memo holds now, as _size counts it

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        found = self._memo.get(key)
        if found is None:
            found = compute()
            self._keep(key, found)
        else:
            self._memo.move_to_end(key)
        return found  # type: ignore[return-value]

    def _keep(self, key: Hashable, value: object) -> None:
        """Memoise `value`, within the memo's bounds (`max_memo_bytes`, the entry limit)."""
        size = _size(key) + _size(value)
        if size > _SHARED_BYTES:
            if size > self._max_memo_bytes // 4:
                return
            fingerprint = hash(key)
            if fingerprint not in self._seen_once:
                if len(self._seen_once) >= _SEEN_ONCE_LIMIT:
                    self._seen_once.clear()
                self._seen_once.add(fingerprint)
                return
        replaced = self._sizes.pop(key, None)
        if replaced is not None:
            self.held_bytes -= replaced
        self._memo[key] = value
        self._memo.move_to_end(key)
        self._sizes[key] = size
        self.held_bytes += size
        while self.held_bytes > self._max_memo_bytes or len(self._memo) > _MEMO_LIMIT:
            oldest, _ = self._memo.popitem(last=False)
            self.held_bytes -= self._sizes.pop(oldest)

    def body(self, key: Hashable, encode: Callable[[], Body], after_serial: int) -> Body:
        """The shared body for `key`, newer than `after_serial`: a stream never sees a nonce twice, so
        a stream going back to content it was sent before gets a fresh body (and nonce)."""
        body = self.memo(key, encode)
        if body.serial <= after_serial:
            body = encode()
            self._keep(key, body)
        return body

    def scoped(self, type_url: str, scope: frozenset[str] | None) -> Mapping[str, Served]:
        """The resources of a type that streams limited to `scope` (Kafka clusters; None: all) may see."""
        everything = self.snapshot.resources(type_url)
        if scope is None:
            return everything
        return self.memo(
            ("scoped", type_url, scope),
            lambda: MappingProxyType(
                {name: served for name, served in everything.items() if served.kafka_cluster in scope}
            ),
        )

    def target(
        self, type_url: str, scope: frozenset[str] | None, wildcard: bool, names: frozenset[str]
    ) -> View:
        """What a subscription (wildcard and/or names) should have of one type."""
        key = ("target", type_url, scope, wildcard, names)
        return self.memo(key, lambda: self._target(type_url, scope, wildcard, names))

    def _target(
        self, type_url: str, scope: frozenset[str] | None, wildcard: bool, names: frozenset[str]
    ) -> View:
        available = self.scoped(type_url, scope)
        absent = frozenset(name for name in names if name not in available)
        if wildcard:
            version = self.snapshot.versions.get(type_url) if scope is None else None
            return View(type_url, available, absent, version=version)
        chosen = {name: available[name] for name in sorted(names) if name in available}
        return View(type_url, MappingProxyType(chosen), absent)


def _names_size(names: Iterable[str]) -> int:
    """A collection of names: its entries and the strings themselves (shared or not)."""
    return _ENTRY_BYTES * len(names) + sum(map(sys.getsizeof, names)) if names else 0  # type: ignore[arg-type]


def _size(part: object) -> int:
    """About the bytes a memo entry keeps alive through `part` (its key or its value), counted upward:
    views, names (a request's, not only the snapshot's) and the collections holding them, encoded
    bodies. Only done when an entry is computed, which costs as much already."""
    if isinstance(part, View):
        return part.size
    if isinstance(part, str | bytes):
        return sys.getsizeof(part)
    if isinstance(part, frozenset | set):
        return _names_size(part)
    if isinstance(part, tuple):
        if len(part) > 8:  # a response's resources or removed names: no views in there
            return sys.getsizeof(part) + sum(map(sys.getsizeof, part))
        return sys.getsizeof(part) + sum(_size(item) for item in part)
    if isinstance(part, Mapping):
        return _ENTRY_BYTES * len(part)  # of the snapshot's resources (a scoped type)
    slots = getattr(type(part), "__slots__", None)
    if slots and not isinstance(part, Served):  # a Change, a Body: what they hold
        return sys.getsizeof(part) + sum(_size(getattr(part, slot)) for slot in slots)
    return sys.getsizeof(part)  # the snapshot's own (Served), or a small value
