"""Where a broker sits, as named dimensions (e.g. Kubernetes cluster and zone) read from `broker.rack`.

Placement rules need more than Kafka's single rack string: a cluster stretched over two Kubernetes
clusters x three zones must spread replicas over both at once. A regex with named groups splits the
rack (`(?P<cluster>[^.]+)\\.(?P<zone>.+)` reads `k8s-1.az-a` as cluster `k8s-1`, zone `az-a`); an
explicit map covers brokers without a usable rack (VMs). A broker neither places is *unplaced*: the
rules report it, nothing guesses where it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from xds.health.state import BrokerState

Location = tuple[str, ...]  # a broker's value per dimension, in the settings' dimension order


@dataclass(frozen=True, slots=True)
class DimensionSettings:
    """One Kafka cluster's mapping from broker to dimension values.

    `pattern` must match the whole rack and have at least one named group (each group is a
    dimension). `explicit` maps a broker id to its values and wins over the rack: it is an
    operator's word about that broker. With both, every explicit entry names exactly the pattern's
    groups; with only `explicit`, all entries name the same dimensions.
    """

    pattern: str | None = None
    explicit: Mapping[int, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    dimensions: tuple[str, ...] = field(init=False, compare=False)
    _compiled: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled: re.Pattern[str] | None = None
        names: tuple[str, ...] | None = None
        if self.pattern is not None:
            try:
                compiled = re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"dimension pattern {self.pattern!r} does not compile: {error}") from None
            names = tuple(sorted(compiled.groupindex, key=compiled.groupindex.__getitem__))
            if not names:
                raise ValueError(
                    f"dimension pattern {self.pattern!r} has no named group: name each dimension, "
                    "e.g. (?P<cluster>[^.]+)\\.(?P<zone>.+)"
                )
        frozen: dict[int, Mapping[str, str]] = {}
        for broker_id, values in self.explicit.items():
            if not values:
                raise ValueError(f"explicit placement of broker {broker_id} names no dimension")
            if names is None:
                names = tuple(values)
            if set(values) != set(names):
                raise ValueError(
                    f"explicit placement of broker {broker_id} names {sorted(values)}; "
                    f"every broker must name exactly {sorted(names)}"
                )
            empty = sorted(name for name, value in values.items() if not value)
            if empty:
                raise ValueError(f"explicit placement of broker {broker_id} leaves {empty} empty")
            frozen[broker_id] = MappingProxyType(dict(values))
        if names is None:
            raise ValueError("dimension settings need a pattern, an explicit map, or both")
        object.__setattr__(self, "explicit", MappingProxyType(frozen))
        object.__setattr__(self, "dimensions", names)
        object.__setattr__(self, "_compiled", compiled)

    def locate(self, broker: BrokerState) -> Location | None:
        """The broker's values in `dimensions` order, or None when nothing places it."""
        values = self.explicit.get(broker.broker_id)
        if values is not None:
            return tuple(values[name] for name in self.dimensions)
        if self._compiled is None or broker.rack is None:
            return None
        match = self._compiled.fullmatch(broker.rack)
        if match is None:
            return None
        found = tuple(match.group(name) for name in self.dimensions)
        if any(not value for value in found):  # an optional group that matched nothing
            return None
        return found


@dataclass(frozen=True, slots=True)
class Placement:
    """The brokers of one cluster placed: `located` maps broker id to its values, `unplaced` are the
    brokers the cluster knows that nothing placed."""

    dimensions: tuple[str, ...]
    located: Mapping[int, Location]
    unplaced: frozenset[int]

    def values(self, dimension: str, excluding: Iterable[int] = ()) -> tuple[str, ...]:
        """The values `dimension` takes among located brokers (less `excluding`), sorted."""
        index = self.dimensions.index(dimension)
        skip = frozenset(excluding)
        return tuple(sorted({loc[index] for b, loc in self.located.items() if b not in skip}))


def place(settings: DimensionSettings, brokers: Iterable[BrokerState]) -> Placement:
    """Locate every broker; the ones neither the explicit map nor the pattern place are unplaced."""
    located: dict[int, Location] = {}
    unplaced: set[int] = set()
    for broker in brokers:
        location = settings.locate(broker)
        if location is None:
            unplaced.add(broker.broker_id)
        else:
            located[broker.broker_id] = location
    return Placement(settings.dimensions, MappingProxyType(located), frozenset(unplaced))
