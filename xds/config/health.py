"""`kafka_clusters[].health`: the partition state kafka-xds follows per Kafka cluster, and what it
decides from it (broker readiness, which brokers a roll may restart, replica placement).

    health:
      connection:                      # how to ask the cluster; a kraft cluster's own by default
        bootstrap_servers: ["10.1.4.7:9092"]
      poll_interval_seconds: 30
      readiness: {max_under_replicated: 0}
      placement:
        rack_pattern: '(?P<cluster>[^.]+)\\.(?P<zone>.+)'   # k8s-1.az-a: cluster k8s-1, zone az-a
        brokers: {101: {cluster: vm, zone: az-a}}            # brokers without a usable rack

Every poll is one Metadata request for all topics and one DescribeConfigs per 1,000 topics, asked of
one broker: what a Kafka client's own metadata refresh costs (docs/operations.md).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from xds.config.fields import Model
from xds.config.sources import KraftSettings


class ReadinessSettings(Model):
    """How many partitions of each degraded class a cluster may have while a broker says ready
    (all 0 by default: what keeps a gated roll at or above min ISR), and how many a reason names."""

    max_offline: int = Field(default=0, ge=0)
    max_under_min_isr: int = Field(default=0, ge=0)
    max_at_min_isr: int = Field(default=0, ge=0)
    max_under_replicated: int = Field(default=0, ge=0)
    examples: int = Field(default=3, ge=0, le=100)


class PlacementSettings(Model):
    """Where each broker sits, as named dimensions: `rack_pattern` splits `broker.rack` with named
    groups; `brokers` places brokers by id (and wins over the rack). A broker neither places is
    reported as unplaced, never guessed."""

    rack_pattern: str | None = None
    brokers: dict[int, dict[str, str]] = Field(default_factory=dict)
    worst: int = Field(default=10, ge=0, le=1000)  # how many of the worst partitions a report lists

    @field_validator("rack_pattern")
    @classmethod
    def _named_groups(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            compiled = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"does not compile: {err}") from None
        if not compiled.groupindex:
            raise ValueError(
                "has no named group: name each dimension, e.g. (?P<cluster>[^.]+)\\.(?P<zone>.+)"
            )
        return pattern

    @model_validator(mode="after")
    def _places_something(self) -> PlacementSettings:
        if self.rack_pattern is None and not self.brokers:
            raise ValueError("needs rack_pattern, brokers, or both")
        names = set(re.compile(self.rack_pattern).groupindex) if self.rack_pattern else None
        for broker_id, values in self.brokers.items():
            if broker_id < 0:
                raise ValueError(f"brokers: expected broker ids >= 0, got {broker_id}")
            if names is None:
                names = set(values)
            if set(values) != names:
                raise ValueError(
                    f"brokers.{broker_id} names {sorted(values)}; "
                    f"every broker must name exactly {sorted(names)}"
                )
        return self


class HealthSettings(Model):
    """Partition state, polled every `poll_interval_seconds` within `timeout_seconds` a poll."""

    connection: KraftSettings | None = None  # None: the cluster's kraft source settings
    poll_interval_seconds: float = Field(default=30.0, ge=1, le=3600)
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    readiness: ReadinessSettings = ReadinessSettings()
    placement: PlacementSettings | None = None
