"""The static source: brokers listed in the config, or in a YAML file re-read when it changes.

An operator moves a broker by editing the file; no restart. An edit that does not parse or that
check-config would refuse (a bad host, a duplicate id, an id without a port) is reported and the last
good brokers are kept (marked stale with the error), never replaced by nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

from xds.config.model import ConfigError, KafkaCluster, StaticBroker, parse_static_brokers
from xds.pipeline.sources.base import Publish
from xds.pipeline.topology import Broker, SourceState, Topology
from xds.shared.addresses import HostPort, parse_listen
from xds.shared.log import event

log = logging.getLogger("kafka_xds.sources.static")


def brokers_from_static(cluster: KafkaCluster, entries: list[StaticBroker]) -> Topology:
    """A synced topology from validated static broker entries (unique ids, each with a port)."""
    brokers = []
    for entry in entries:
        listeners = {name: HostPort(*parse_listen(address)) for name, address in entry.listeners.items()}
        listeners[cluster.upstream_listener] = HostPort(entry.host, entry.port)
        brokers.append(Broker.create(entry.id, listeners, entry.rack))
    return Topology.create(cluster.name, "static", SourceState.SYNCED, brokers)


class StaticSource:
    kind = "static"

    def __init__(self, cluster: KafkaCluster) -> None:
        if cluster.static is None:
            raise ValueError(f"cluster {cluster.name} has no static source")
        self.cluster = cluster.name
        self._config = cluster
        self._settings = cluster.static

    async def run(self, publish: Publish) -> None:
        if self._settings.brokers is not None:
            publish(brokers_from_static(self._config, self._settings.brokers))
            return
        assert self._settings.file is not None
        await self._follow(Path(self._settings.file), publish)

    async def _follow(self, path: Path, publish: Publish) -> None:
        last_digest: str | None = None
        current = Topology.create(self.cluster, self.kind, SourceState.SYNCING)
        while True:
            problem: str | None = None
            try:
                content = await asyncio.to_thread(path.read_bytes)
            except OSError as err:
                problem, last_digest = f"cannot read {path}: {err.strerror or err}", None
            else:
                digest = hashlib.sha256(content).hexdigest()
                if digest != last_digest:
                    last_digest = digest
                    try:
                        entries = parse_static_brokers(content, str(path), self._config)
                    except ConfigError as err:
                        problem = str(err)
                    else:
                        current = brokers_from_static(self._config, entries)
                        event(
                            log,
                            logging.INFO,
                            "static brokers loaded",
                            cluster=self.cluster,
                            file=str(path),
                            brokers=len(current.brokers),
                        )
                        publish(current)
                elif current.state is SourceState.STALE:
                    problem = current.error  # the same broken content: already reported
            if problem is not None and problem != current.error:
                event(
                    log,
                    logging.ERROR,
                    "static broker file rejected; keeping the last good brokers",
                    cluster=self.cluster,
                    error=problem,
                    brokers_kept=len(current.brokers),
                )
                current = current.went_stale(problem, time.time())
                publish(current)
            await asyncio.sleep(self._settings.poll_interval_seconds)
