"""`kafka-xds placement`'s options read and checked before any cluster is asked: the clusters (from
the config), --topics, --drain, --plan's file; and, once a cluster answered, the topics and brokers
they select. Every problem is a `UsageError` naming the option (exit 2)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xds.config.model import KafkaCluster, KraftSettings, load_config
from xds.health.assessment import HealthRules
from xds.health.dimensions import DimensionSettings, Placement
from xds.health.planner import Drain
from xds.health.state import ClusterState

__all__ = [
    "Request",
    "Target",
    "TopicSelection",
    "UsageError",
    "drained_brokers",
    "parse_broker_ids",
    "read_request",
]

_MAX_IDS = 10_000
_TOPIC_NAMES = re.compile(r"[A-Za-z0-9._,-]+")  # Kafka's topic name characters, and commas


class UsageError(Exception):
    """An option the command cannot work with: `--option: problem`, exit 2."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")


@dataclass(frozen=True, slots=True)
class Target:
    """One cluster to ask: its name, connection, time, and placement rules."""

    name: str
    settings: KraftSettings
    timeout: float
    dimensions: DimensionSettings
    worst: int


@dataclass(frozen=True, slots=True)
class TopicSelection:
    """The --topics selection: exact names and whole-name regexes."""

    names: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]

    def select(self, topics: Sequence[str]) -> tuple[str, ...]:
        missing = sorted(self.names - set(topics))
        if missing:
            raise UsageError("--topics", f"no topic {', '.join(missing)} in the cluster")
        for pattern in self.patterns:
            if not any(pattern.fullmatch(topic) for topic in topics):
                raise UsageError("--topics", f"{pattern.pattern!r} matches no topic of the cluster")
        return tuple(t for t in topics if t in self.names or any(p.fullmatch(t) for p in self.patterns))


@dataclass(frozen=True, slots=True)
class Request:
    """The options, checked: the clusters to ask, the selections, and where the plan goes."""

    targets: tuple[Target, ...]
    topics: TopicSelection | None
    plan_file: Path | None
    drains: tuple[tuple[str, Drain], ...]
    batch_size: int | None
    throttle: int
    json: bool


def parse_broker_ids(text: str) -> frozenset[int]:
    """`101-103,105`: broker ids and ranges (ValueError naming what is wrong)."""
    ids: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(f"expected broker ids and ranges such as 101-103,105, got {text!r}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise ValueError(f"expected a range from low to high, got {part.strip()!r}")
        if last - first + 1 + len(ids) > _MAX_IDS:
            raise ValueError(f"expected at most {_MAX_IDS} broker ids, got {text!r}")
        ids.update(range(first, last + 1))
    return frozenset(ids)


def _drain(value: str) -> Drain:
    if "=" not in value:
        try:
            return Drain(broker_ids=parse_broker_ids(value))
        except ValueError as err:
            raise UsageError("--drain", str(err)) from None
    values: dict[str, str] = {}
    for part in value.split(","):
        name, _, wanted = part.partition("=")
        if not name.strip() or not wanted.strip() or name.strip() in values:
            expected = "broker ids (101-103) or DIMENSION=VALUE[,DIMENSION=VALUE]"
            raise UsageError("--drain", f"expected {expected}, got {value!r}")
        values[name.strip()] = wanted.strip()
    return Drain(dimension_values=values)


def _topics(values: Sequence[str] | None) -> TopicSelection | None:
    if not values:
        return None
    names: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for value in values:
        if _TOPIC_NAMES.fullmatch(value):
            names.update(name for name in value.split(",") if name)
            continue
        try:
            patterns.append(re.compile(value))
        except re.error as err:
            raise UsageError("--topics", f"{value!r} is no topic name and no regex: {err}") from None
    return TopicSelection(frozenset(names), tuple(patterns))


def _targets(args: argparse.Namespace) -> tuple[Target, ...]:
    config = load_config(args.config)  # ConfigError: the CLI says `config error: ...`, exit 2
    placed = [c for c in config.kafka_clusters if c.health is not None and c.health.placement is not None]
    if args.cluster is not None:
        known = [c.name for c in config.kafka_clusters]
        if args.cluster not in known:
            listed = ", ".join(known)
            raise UsageError("--cluster", f"{args.config} has no cluster {args.cluster!r} (it has {listed})")
        placed = [c for c in placed if c.name == args.cluster]
        if not placed:
            raise UsageError(
                "--cluster",
                f"{args.cluster} has no health.placement: set health.placement.rack_pattern (e.g. "
                "'(?P<cluster>[^.]+)\\.(?P<zone>.+)') or health.placement.brokers",
            )
    if not placed:
        raise UsageError(
            "--config", f"no cluster of {args.config} has health.placement (see docs/operations.md)"
        )
    if args.plan is not None and len(placed) > 1:
        names = ", ".join(c.name for c in placed)
        raise UsageError("--plan", f"a plan is for one cluster: name one with --cluster ({names})")
    return tuple(_target(cluster, args.timeout) for cluster in placed)


def _target(cluster: KafkaCluster, timeout: float | None) -> Target:
    assert cluster.health is not None
    rules = HealthRules.from_settings(cluster.health)
    connection = cluster.health_connection
    assert connection is not None, "the config refuses health without a connection"
    assert rules.dimensions is not None, "placement settings always place something"
    seconds = timeout if timeout is not None else cluster.health.timeout_seconds
    settings = connection.model_copy(
        update={"request_timeout_seconds": max(connection.request_timeout_seconds, seconds)}
    )
    return Target(cluster.name, settings, seconds, rules.dimensions, rules.worst)


def _plan_file(path: Path | None) -> Path | None:
    if path is None:
        return None
    if path.is_dir():
        raise UsageError("--plan", f"{path} is a directory: give a file name, such as {path / 'plan.json'}")
    if not path.parent.is_dir():
        raise UsageError("--plan", f"{path.parent} is no directory")
    return path


def read_request(args: argparse.Namespace) -> Request:
    if args.plan is None:
        for option, given in (("--drain", args.drain), ("--batch-size", args.batch_size)):
            if given:
                raise UsageError(option, "only with --plan FILE")
    return Request(
        _targets(args),
        _topics(args.topics),
        _plan_file(args.plan),
        tuple((value, _drain(value)) for value in args.drain or ()),
        args.batch_size,
        args.throttle,
        args.json,
    )


def drained_brokers(request: Request, state: ClusterState, placement: Placement) -> frozenset[int]:
    hosting = {b for p in state.partitions for b in p.replicas}
    drained: set[int] = set()
    for value, drain in request.drains:
        try:
            chosen = drain.select(state, placement)
        except ValueError as err:
            raise UsageError("--drain", str(err)) from None
        unknown = sorted(b for b in drain.broker_ids if b not in state.brokers and b not in hosting)
        if unknown:
            raise UsageError("--drain", f"{state.cluster} has no broker {', '.join(map(str, unknown))}")
        if not chosen:
            raise UsageError("--drain", f"{value} selects no broker of {state.cluster}")
        drained |= chosen
    return frozenset(drained)
