"""The static source: brokers listed in the config, or in a YAML file re-read when it changes.

An operator moves a broker by editing the file; no restart. An edit that does not parse or that
check-config would refuse (a bad host, a duplicate id, an id without a port) is reported and the last
good brokers are kept (marked stale with the error), never replaced by nothing. Only a complete file
is applied (one caught half written is read again), and only a regular file of at most
MAX_STATIC_FILE_BYTES: a FIFO or a device is refused unread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from xds.config.fields import FileRead, read_file
from xds.config.model import (
    MAX_STATIC_FILE_BYTES,
    ConfigError,
    KafkaCluster,
    StaticBroker,
    parse_static_brokers,
)
from xds.pipeline.sources.base import Publish
from xds.pipeline.topology import Broker, SourceState, Topology
from xds.shared.addresses import HostPort, parse_listen
from xds.shared.log import event

log = logging.getLogger("kafka_xds.sources.static")

# How long a new content must hold still before it is applied: longer than an editor's pause between
# its writes, short next to how quickly an operator expects an edit to apply.
_SETTLE_SECONDS = 0.1
_UNSETTLED_NOTICE_POLLS = 10


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
        unsettled = 0  # polls in a row that found the file being written
        while True:
            problem: str | None = None
            try:
                read = await self._read_complete(path, last_digest)
            except ConfigError as err:
                problem, last_digest = str(err), None
            else:
                unsettled = unsettled + 1 if read is None else 0
                if unsettled == _UNSETTLED_NOTICE_POLLS:
                    event(
                        log,
                        logging.WARNING,
                        "static broker file keeps changing while read; it is applied once it holds "
                        "still (write a temporary file and rename it over the old one)",
                        cluster=self.cluster,
                        file=str(path),
                    )
                if read is None:
                    pass  # being written: looked at again at the next poll
                elif read.digest != last_digest:
                    last_digest = read.digest
                    try:
                        entries = parse_static_brokers(read.content, str(path), self._config)
                        loaded = brokers_from_static(self._config, entries)
                    except ConfigError as err:
                        problem = str(err)
                    except Exception as err:  # a bug or an input nobody foresaw: say so, keep polling
                        problem = f"unexpected error reading {path}: {err!r}"
                    else:
                        current = loaded
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

    async def _read_complete(self, path: Path, applied: str | None) -> FileRead | None:
        """The file, if it is complete; None while it is being written.

        An editor that saves in place truncates the file, then writes it: a read in between sees
        nothing or half (`port: 2909` of 29093). A new content is therefore read a second time after
        a pause, and applied only if both reads agree (same bytes, same size, same modification
        time) and nothing changed during either."""
        first = await asyncio.to_thread(read_file, path, MAX_STATIC_FILE_BYTES)
        if first.digest == applied and not first.changed_while_read:
            return first
        await asyncio.sleep(_SETTLE_SECONDS)
        second = await asyncio.to_thread(read_file, path, MAX_STATIC_FILE_BYTES)
        if first.changed_while_read or second.changed_while_read:
            return None
        return second if (first.digest, first.signature) == (second.digest, second.signature) else None
