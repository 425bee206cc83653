"""Serving on every core: worker processes sharing the ADS port, fed by the one pipeline.

The main process keeps the sources (one set of ZooKeeper sessions and Kafka connections per
replica), builds each snapshot once, and sends it, encoded, to every worker (after the first, only
what changed). Each worker (xds.process.worker) binds the ADS port with SO_REUSEPORT, so the kernel
spreads sidecar connections over them, and serves its streams on its own event loop. Versions are
content hashes computed in the main process, so every worker sends identical versions.

A worker that dies is restarted (its sidecars reconnect, to a sibling or to it); readiness means
every worker is up and serving the current snapshot. `/debug/streams` and `/metrics` ask every
worker and merge the answers. SIGTERM: each worker is told to end its streams within the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import subprocess
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric

from xds.config.model import Config
from xds.pipeline.metrics import Metrics
from xds.pipeline.publisher import Publisher
from xds.pipeline.snapshot import Snapshot
from xds.process.messages import (
    Applied,
    Failed,
    FromWorker,
    Init,
    Listening,
    MetricFamily,
    Query,
    Question,
    Reply,
    Stop,
    Stopped,
    ToWorker,
)
from xds.process.spawn import Spawned, frame, receive, send, spawn
from xds.process.updates import snapshot_update
from xds.serving.notices import Notice, NoticeBatch
from xds.serving.reports import StreamQuery, merge
from xds.shared.addresses import join_listen, parse_listen, reserve_port
from xds.shared.errors import StartupError
from xds.shared.log import JsonFormatter, event

log = logging.getLogger("kafka_xds.workers")
_START_TIMEOUT_SECONDS = 30.0
_QUERY_TIMEOUT_SECONDS = 3.0
_RESTART_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
_MAX_UNSENT_BYTES = 256 * 1024 * 1024  # a worker this far behind is stuck: restart it
# Gauges where the sum over workers means nothing: the worst worker is what matters.
_MAX_OVER_WORKERS = frozenset({"kafka_xds_event_loop_lag_seconds"})
_PER_WORKER_PREFIX = "kafka_xds_worker_"


def _log_settings() -> tuple[str, str]:
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    return logging.getLevelName(root.level).lower(), "json" if isinstance(
        formatter, JsonFormatter
    ) else "logfmt"


class _Worker:
    """One worker process, restarted when it dies until told to stop."""

    def __init__(self, index: int, fleet: WorkerFleet) -> None:
        self.index = index
        self._fleet = fleet
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._request_ids = itertools.count(1)
        self.listening = asyncio.Event()
        self.applied_generation = 0
        self.state = "starting"
        self.failure: str | None = None
        self.served = False  # listened once: from then on, every failure to start is retried
        self.stopping = False
        self.notices_cursor: tuple[int | None, int] = (None, 0)  # (epoch, last) of its notices read

    async def run(self) -> None:
        """Run the worker until told to stop: restarted with backoff whenever it exits, or when
        starting it again fails (fds or memory exhausted). Only a first start that fails ends it:
        the fleet reports that as a start-up error."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                code: int | None = await self._run_once()
            except Exception as err:  # spawning it or connecting to it: OSError, mostly
                if not self.served:
                    self.failure = f"serving worker {self.index} could not be started: {err}"
                    return
                code, problem = None, f"could not be started again: {err}"
            else:
                problem = f"exited with {code}"
            if self.stopping:
                return
            if not self.served and self.failure is not None:
                return  # it never started (e.g. the port is in use): the fleet reports it
            if time.monotonic() - started > 60:
                failures = 0
            delay = _RESTART_BACKOFF_SECONDS[min(failures, len(_RESTART_BACKOFF_SECONDS) - 1)]
            failures += 1
            self.state = f"restarting: it {problem} (retry in {delay:g} s)"
            self._fleet.metrics.worker_restarts.inc()
            event(
                log,
                logging.ERROR,
                "serving worker died; restarting it (its sidecars reconnect meanwhile)"
                if code is not None
                else "serving worker could not start; retrying (its sidecars use the other workers)",
                worker=self.index,
                exit_code=code,
                error=None if code is not None else problem,
                retry_in=delay,
            )
            await asyncio.sleep(delay)

    async def _run_once(self) -> int | None:
        self.listening.clear()
        self.applied_generation = 0
        spawned = self._fleet.take_prespawned() or spawn()
        self._process, parent = spawned.process, spawned.channel
        try:
            reader, writer = await asyncio.open_unix_connection(sock=parent)
        except BaseException:
            await asyncio.to_thread(spawned.close)
            raise
        self._writer = writer
        send(writer, self._fleet.init_message(self.index))
        try:
            while True:
                message = await receive(reader)
                self._handle(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writer = None
            self.listening.clear()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"worker {self.index} went away"))
            self._replies.clear()
            writer.close()
        return await asyncio.to_thread(self._process.wait)

    def _handle(self, message: FromWorker) -> None:
        if isinstance(message, Listening):
            self.state = "serving"
            self.served = True
            self.listening.set()
            self._fleet.worker_listening(self)
        elif isinstance(message, Failed):
            self.failure = message.error
            self.state = "failed to start"
        elif isinstance(message, Applied):
            self.applied_generation = message.generation
        elif isinstance(message, Reply):
            future = self._replies.pop(message.request_id, None)
            if future is not None and not future.done():
                future.set_result(message.answer)
        elif isinstance(message, Stopped):
            self.state = "stopped"

    def send(self, message: ToWorker | bytes) -> None:
        """Queue a message (or a frame already pickled for every worker)."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return  # it is (re)starting and gets the whole snapshot when it is up
        if writer.transport.get_write_buffer_size() > _MAX_UNSENT_BYTES:
            event(log, logging.ERROR, "serving worker stopped reading; restarting it", worker=self.index)
            self.kill()
            return
        if isinstance(message, bytes):
            writer.write(message)
        else:
            send(writer, message)

    async def ask(self, question: Question, streams: StreamQuery | None = None) -> Any:
        if self._writer is None or not self.listening.is_set():
            raise ConnectionError(f"worker {self.index} is {self.state}")
        request_id = next(self._request_ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        epoch, after = self.notices_cursor
        self.send(Query(request_id, question, streams, epoch, after))
        try:
            return await asyncio.wait_for(future, _QUERY_TIMEOUT_SECONDS)
        finally:
            self._replies.pop(request_id, None)

    async def stop(self, grace: float) -> None:
        self.stopping = True
        self.send(Stop(grace))
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), grace + 5.0)
        except TimeoutError:
            event(log, logging.ERROR, "serving worker did not stop in time; killed", worker=self.index)
            self.kill()
            await asyncio.to_thread(process.wait)

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()


class WorkerFleet:
    """Worker processes serving the snapshots the cache publishes (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        cache: Publisher,
        metrics: Metrics,
        prespawned: list[Spawned] | None = None,
    ) -> None:
        self._prespawned = prespawned if prespawned is not None else []  # taken from the caller's list
        self._config = config
        self._settings = config.xds
        self._cache = cache
        self.metrics = metrics
        self.port: int | None = None
        count = config.xds.worker_count
        self._stream_limit = max(1, math.ceil(config.xds.max_concurrent_streams / count))
        self._workers = [_Worker(index, self) for index in range(1, count + 1)]
        self._tasks: list[asyncio.Task[None]] = []
        self._sent: Snapshot | None = None
        self._families: list[Metric] = []
        self._unwatch = cache.watch(self._published)
        self._log_level, self._log_format = _log_settings()

    def take_prespawned(self) -> Spawned | None:
        return self._prespawned.pop() if self._prespawned else None

    def init_message(self, index: int) -> Init:
        access = self._config.access
        return Init(
            index=index,
            settings=self._settings,
            identifier="kafka-xds",
            stream_limit=self._stream_limit,
            # The rules as plain pairs; each worker compiles its own policy.
            access=None
            if access is None
            else tuple((rule.identity, tuple(rule.kafka_clusters)) for rule in access),
            log_level=self._log_level,
            log_format=self._log_format,
        )

    async def start(self) -> None:
        """Start every worker; raise StartupError (after stopping them) if one cannot listen."""
        # Checked here, not by the workers: with SO_REUSEPORT a port another program holds the same
        # way would be shared silently. Port 0 becomes one port that every worker then shares.
        host, _ = parse_listen(self._settings.listen)
        self.port = reserve_port("xds.listen", self._settings.listen)
        self._settings = self._settings.model_copy(update={"listen": join_listen(host, self.port)})
        self._tasks = [
            asyncio.create_task(worker.run(), name=f"worker-{worker.index}") for worker in self._workers
        ]
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        for worker, task in zip(self._workers, self._tasks, strict=True):
            listening = asyncio.create_task(worker.listening.wait())
            await asyncio.wait(
                {listening, task},
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            listening.cancel()
            if not worker.listening.is_set():
                await self.stop()
                raise StartupError(worker.failure or f"serving worker {worker.index} did not start")
        self.metrics.workers_ready.set(len(self._workers))

    async def stop(self) -> None:
        self._unwatch()
        for spawned in self._prespawned:  # started early, never used (the start failed before)
            await asyncio.to_thread(spawned.close)
        self._prespawned.clear()
        grace = self._config.xds.shutdown_grace_seconds
        await asyncio.gather(*(worker.stop(grace) for worker in self._workers))
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def worker_listening(self, worker: _Worker) -> None:
        """A worker is up (first start or restart): it gets the whole current snapshot."""
        snapshot = self._cache.snapshot
        if snapshot is not None:
            worker.send(snapshot_update(self._cache, snapshot, None))

    def _published(self) -> None:
        snapshot = self._cache.snapshot
        assert snapshot is not None
        # Pickled once for every worker: a first snapshot of a large topology is tens of megabytes.
        update = frame(snapshot_update(self._cache, snapshot, self._sent))
        self._sent = snapshot
        for worker in self._workers:
            worker.send(update)

    def waiting(self) -> dict[str, str]:
        waiting = {}
        generation = self._cache.generation if self._cache.snapshot is not None else 0
        ready = 0
        for worker in self._workers:
            if not worker.listening.is_set():
                waiting[f"worker {worker.index}"] = worker.state
            elif worker.applied_generation < generation:
                waiting[f"worker {worker.index}"] = f"applying snapshot {generation}"
            else:
                ready += 1
        self.metrics.workers_ready.set(ready)
        return waiting

    async def streams(self, query: StreamQuery) -> dict[str, Any]:
        # Each worker returns its first offset+limit rows; the merge pages over all of them.
        answers = await asyncio.gather(
            *(worker.ask("streams", query) for worker in self._workers), return_exceptions=True
        )
        reports = [answer for answer in answers if not isinstance(answer, BaseException)]
        body = merge(reports, query)
        missing = {
            f"worker {worker.index}": str(answer)
            for worker, answer in zip(self._workers, answers, strict=True)
            if isinstance(answer, BaseException)
        }
        if missing:
            body["workers_not_answering"] = missing
        return body

    async def refresh_metrics(self) -> None:
        answers = await asyncio.gather(
            *(worker.ask("metrics") for worker in self._workers), return_exceptions=True
        )
        per_worker = {
            worker.index: answer
            for worker, answer in zip(self._workers, answers, strict=True)
            if not isinstance(answer, BaseException)
        }
        self._families = _merge_families(per_worker)

    async def notices(self) -> tuple[list[Notice], int]:
        answers = await asyncio.gather(
            *(worker.ask("notices") for worker in self._workers), return_exceptions=True
        )
        notices: list[Notice] = []
        missed = 0
        for worker, answer in zip(self._workers, answers, strict=True):
            if isinstance(answer, NoticeBatch):  # a worker not answering is asked again next time
                worker.notices_cursor = (answer.epoch, answer.last)
                notices.extend(answer.notices)
                missed += answer.missed
        notices.sort(key=lambda notice: notice.at)
        return notices, missed

    def collect(self) -> Iterable[Metric]:
        return list(self._families)


def _merge_families(per_worker: dict[int, list[MetricFamily]]) -> list[Metric]:
    """Stream metrics summed over workers (lag: the worst); each worker's process metrics labelled."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for index, answer in sorted(per_worker.items()):
        for name, documentation, kind, unit, samples in answer:
            family = families.get(name)
            if family is None:
                family = families[name] = Metric(name, documentation, kind, unit)
                values[name] = {}
            merged = values[name]
            for sample_name, labels, value in samples:
                if name.startswith(_PER_WORKER_PREFIX):
                    labels = dict(labels, worker=str(index))
                key = (sample_name, tuple(sorted(labels.items())))
                if key in merged:
                    merged[key] = (
                        max(merged[key], value) if name in _MAX_OVER_WORKERS else merged[key] + value
                    )
                else:
                    merged[key] = value
    for name, family in families.items():
        for (sample_name, label_pairs), value in values[name].items():
            family.add_sample(sample_name, dict(label_pairs), value)
    return list(families.values())
