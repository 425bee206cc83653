"""A serving worker process (`python -m xds.process.worker FD`): ADS streams on a shared port.

Started by the main process (xds.process.supervisor), which owns the sources and the
pipeline. Over the socket FD it receives its settings, then every snapshot (already encoded; only
what changed after the first), and questions about its streams and metrics; it answers on the same
socket (the messages are in xds.process.messages). It never reads the config file or talks to
ZooKeeper or Kafka. It stops when told to, ending its streams within the grace, or at once when the
main process goes away; SIGINT and SIGTERM are the main process's to act on (it tells every worker).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from xds.process.messages import (
    Applied,
    Failed,
    Init,
    Listening,
    MetricFamily,
    Query,
    Reply,
    SnapshotUpdate,
    Stop,
    Stopped,
    ToWorker,
)
from xds.process.spawn import receive, send
from xds.serving.access import AccessPolicy
from xds.serving.protocol import ServedSnapshot
from xds.serving.reports import report
from xds.serving.stream_metrics import StreamMetrics
from xds.serving.transport import AdsServer
from xds.shared.errors import StartupError
from xds.shared.log import configure, event

log = logging.getLogger("kafka_xds.worker")
EXIT_STARTUP = 2


class _WorkerField(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._index
        return True


async def _run(fd: int) -> int:
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    try:
        init = await receive(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0  # started early, and the main process did not start after all: nothing to do
    if not isinstance(init, Init):
        raise TypeError(f"the first message to a worker must be Init, not {type(init).__name__}")
    configure(init.log_level, init.log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(init.index))
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    ProcessCollector(namespace="kafka_xds_worker", registry=registry)
    ads = AdsServer(
        init.settings,
        metrics,
        identifier=init.identifier,
        worker=init.index,
        stream_limit=init.stream_limit,
        reuse_port=True,
        access=None if init.access is None else AccessPolicy(init.access),
    )
    try:
        await ads.start()
    except StartupError as err:
        send(writer, Failed(str(err)))
        await writer.drain()
        return EXIT_STARTUP
    send(writer, Listening(os.getpid()))
    served: ServedSnapshot | None = None
    grace: float | None = 0.0  # the main process vanished: end streams at once
    try:
        while True:
            message: ToWorker = await receive(reader)
            if isinstance(message, SnapshotUpdate):
                served = message.apply(served)
                ads.publish(served)
                send(writer, Applied(served.generation))
            elif isinstance(message, Query):
                send(writer, Reply(message.request_id, _answer(ads, registry, message)))
            elif isinstance(message, Stop):
                grace = message.grace
                break
            else:
                event(log, logging.ERROR, "unexpected message; ignored", kind=type(message).__name__)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        event(log, logging.WARNING, "the main process went away; ending every stream", worker=init.index)
    await ads.stop(grace)
    if not writer.is_closing():
        send(writer, Stopped())
        await writer.drain()
        writer.close()
    return 0


def _answer(ads: AdsServer, registry: CollectorRegistry, query: Query) -> Any:
    if query.question == "streams":
        assert query.streams is not None
        return report(ads.streams.values(), ads.views, query.streams)
    if query.question == "notices":
        return ads.notices.after(query.notices_epoch, query.notices_after)
    families: list[MetricFamily] = [
        (
            family.name,
            family.documentation,
            family.type,
            family.unit,
            [(sample.name, sample.labels, sample.value) for sample in family.samples],
        )
        for family in registry.collect()
    ]
    return families


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return asyncio.run(_run(int(sys.argv[1])))


if __name__ == "__main__":
    sys.exit(main())
