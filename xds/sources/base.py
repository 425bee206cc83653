"""The contract every broker source keeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from xds.topology import Topology

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
