"""The contract every broker source keeps."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from xds.pipeline.topology import SourceState, Topology
from xds.shared.log import event

Publish = Callable[[Topology], None]


class Source(Protocol):
    """Watches one Kafka cluster's broker registrations and publishes a Topology on every change.

    `run` is a long-lived coroutine owned (and cancelled) by the application. `publish` must be
    called on the event loop thread. A source that loses its backend publishes its last topology
    marked stale; it never publishes "no brokers" because it cannot see them.
    """

    cluster: str
    kind: str

    async def run(self, publish: Publish) -> None: ...


def gave_up_waiting(current: Topology, reason: str, timeout: float | None, log: logging.Logger) -> Topology:
    """After `startup_timeout_seconds` without a first sync: serve the cluster empty, loudly.

    Better than holding every other cluster back (nothing is pushed until all have synced); the
    cluster fills in when its backend answers."""
    problem = (
        f"{current.error or reason}; not synced within startup_timeout_seconds={timeout}: "
        "serving this cluster with no brokers until it syncs"
    )
    event(log, logging.ERROR, problem, cluster=current.cluster)
    return Topology.create(current.cluster, current.source_kind, SourceState.UNAVAILABLE, error=problem)


def kept(current: Topology) -> str:
    """How a failure's log line begins: whether there are brokers to keep serving meanwhile."""
    if current.brokers:
        return "keeping the last brokers: "
    return "no brokers to keep: " if current.synced_once else "no brokers to keep yet: "
