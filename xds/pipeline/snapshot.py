"""Immutable, content-versioned snapshots of every resource the sidecars should have.

A version is a hash of content, never a counter: a restarted server, or a second replica, computes
the same version for the same brokers, so reconnecting sidecars see no change at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from xds.pipeline.resources.builder import BrokerResources
from xds.shared.resource import Resource
from xds.shared.resource_types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    SECRET_TYPE,
    TYPE_ORDER,
    set_version,
)


class InconsistentSnapshot(ValueError):
    """A snapshot whose resources point at resources it does not have; never published."""


@dataclass(frozen=True, slots=True)
class TypeResources:
    type_url: str
    version: str
    resources: Mapping[str, Resource]


@dataclass(frozen=True, slots=True)
class Snapshot:
    by_type: Mapping[str, TypeResources]

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> Snapshot:
        grouped: dict[str, dict[str, Resource]] = {type_url: {} for type_url in TYPE_ORDER}
        for resource in resources:
            named = grouped.setdefault(resource.type_url, {})
            if resource.name in named:
                raise InconsistentSnapshot(f"{resource.type_url}: resource {resource.name!r} appears twice")
            named[resource.name] = resource
        by_type = {
            type_url: TypeResources(
                type_url,
                set_version((name, resource.version) for name, resource in named.items()),
                MappingProxyType({name: named[name] for name in sorted(named)}),
            )
            for type_url, named in grouped.items()
        }
        snapshot = cls(MappingProxyType(by_type))
        snapshot.check()
        return snapshot

    @classmethod
    def from_brokers(cls, brokers: Iterable[BrokerResources]) -> Snapshot:
        resources: list[Resource] = []
        secrets: dict[tuple[str, str], Resource] = {}  # every broker of a Kafka cluster shares them
        for broker in brokers:
            resources += (broker.cluster, broker.endpoints, broker.listener)
            for secret in broker.secrets:
                secrets.setdefault((secret.name, secret.version), secret)
        return cls.of([*secrets.values(), *resources])

    def resources(self, type_url: str) -> Mapping[str, Resource]:
        found = self.by_type.get(type_url)
        return found.resources if found else MappingProxyType({})

    def version(self, type_url: str) -> str:
        found = self.by_type.get(type_url)
        return found.version if found else set_version(())

    def versions(self) -> dict[str, str]:
        return {type_url: typed.version for type_url, typed in self.by_type.items()}

    def check(self) -> None:
        """Every listener's cluster exists, and every cluster has its endpoints and its secrets."""
        clusters = self.resources(CLUSTER_TYPE)
        names = clusters.keys()
        for listener in self.resources(LISTENER_TYPE).values():
            # `keys >= references` looks each reference up; `references - keys` would copy every
            # cluster name into a new set, for every listener.
            if not names >= listener.references:
                missing = sorted(listener.references - names)
                raise InconsistentSnapshot(
                    f"listener {listener.name!r} forwards to missing clusters {missing}"
                )
        endpoints, secrets = self.resources(ENDPOINT_TYPE), self.resources(SECRET_TYPE).keys()
        for name, cluster in clusters.items():
            if name not in endpoints:
                raise InconsistentSnapshot(f"cluster {name!r} has no ClusterLoadAssignment")
            if not secrets >= cluster.references:
                missing = sorted(cluster.references - secrets)
                raise InconsistentSnapshot(f"cluster {name!r} uses missing secrets {missing}")

    def all_resources(self) -> Iterator[Resource]:
        for typed in self.by_type.values():
            yield from typed.resources.values()

    def summary(self) -> dict[str, dict[str, object]]:
        return {
            type_url: {"version": typed.version, "resources": len(typed.resources)}
            for type_url, typed in self.by_type.items()
        }
