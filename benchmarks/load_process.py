"""One load process of the ADS load generator: a share of the streams on one asyncio loop,
driven over a pipe by the orchestrator (start, phase, arm a move, stop), reporting per-stream
figures back. Started by multiprocessing with the spawn method."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection

from grpc import aio

from benchmarks.ads_client import CHANNEL_OPTIONS, AdsStream, DeltaStream, Move, SotwStream
from benchmarks.ads_wire import ResponseReader, SotwRequests


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """One load process's share of the streams."""

    target: str  # HOST:PORT of the ADS server
    api: str  # "sotw" | "delta"
    first_stream: int  # global index of its first stream (node ids are unique across processes)
    streams: int
    per_connection: int
    ramp_seconds: float  # stream i of all `total` starts at i / total * ramp_seconds
    total: int


class LoadProcess:
    """One process's streams, driven by the orchestrator: start, arm a move, stop."""

    def __init__(self, plan: LoadPlan, conn: Connection) -> None:
        self.plan, self.conn = plan, conn
        self.reader = ResponseReader()
        self.requests = SotwRequests()
        self.phase = "sync"
        self.errors: dict[str, Counter[str]] = {}
        self.reconnects: Counter[str] = Counter()
        self.details: dict[str, str] = {}  # the first message seen with each status
        self.connections_hit: dict[str, set[int]] = {}  # phase -> connections that had a stream error
        self.unexpected = 0  # resources or types nobody subscribed to
        kind = SotwStream if plan.api == "sotw" else DeltaStream
        self.streams: list[AdsStream] = [kind(plan.first_stream + i, self) for i in range(plan.streams)]
        self._synced = self._seen = 0
        self._all_synced = asyncio.Event()
        self._all_seen = asyncio.Event()

    def lost(self, code: str, details: str | None, connection: int) -> None:
        self.errors.setdefault(self.phase, Counter())[code] += 1
        self.connections_hit.setdefault(self.phase, set()).add(connection)
        self.details.setdefault(code, (details or "")[:300])

    def reconnected(self) -> None:
        self.reconnects[self.phase] += 1

    def synced_one(self) -> None:
        self._synced += 1
        if self._synced == len(self.streams):
            self._all_synced.set()

    def seen(self) -> None:
        self._seen += 1
        if self._seen == len(self.streams):
            self._all_seen.set()

    async def main(self) -> None:
        per = self.plan.per_connection
        channels = [
            aio.insecure_channel(self.plan.target, options=CHANNEL_OPTIONS)
            for _ in range(0, len(self.streams), per)
        ]
        tasks: list[asyncio.Task[None]] = []
        self.conn.send(("hello", time.process_time()))
        while True:
            command, argument = await asyncio.to_thread(self.conn.recv)
            if command == "start":
                started, deadline = argument
                for i, stream in enumerate(self.streams):
                    offset = (self.plan.first_stream + i) / self.plan.total * self.plan.ramp_seconds
                    connection = (self.plan.first_stream + i) // per
                    run = stream.run(channels[i // per], connection, started + offset)
                    tasks.append(asyncio.create_task(run))
                tasks.append(asyncio.create_task(self._report_sync(deadline)))
            elif command == "phase":
                self.phase = argument
            elif command == "arm":
                self._seen = 0
                self._all_seen.clear()
                for stream in self.streams:
                    stream.arm(argument)
                self.conn.send(("armed", argument.index))
                tasks.append(asyncio.create_task(self._report_move(argument)))
            elif command == "stop":
                cpu = time.process_time()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await asyncio.gather(*(channel.close() for channel in channels))
                final = {
                    "cpu": cpu,
                    "errors": {phase: dict(codes) for phase, codes in self.errors.items()},
                    "reconnects": dict(self.reconnects),
                    "details": self.details,
                    "connections_hit": {phase: sorted(hit) for phase, hit in self.connections_hit.items()},
                    "unexpected": self.unexpected,
                }
                self.conn.send(("final", final))
                return

    async def _report_sync(self, deadline: float) -> None:
        await _until(self._all_synced, deadline)
        durations = [
            None
            if s.tally.synced_at is None or s.tally.first_attempt_at is None
            else s.tally.synced_at - s.tally.first_attempt_at
            for s in self.streams
        ]
        first_errors = [
            None
            if s.tally.first_error_at is None or s.tally.first_attempt_at is None
            else s.tally.first_error_at - s.tally.first_attempt_at
            for s in self.streams
        ]
        report = {"durations": durations, "first_errors": first_errors, "cpu": time.process_time()}
        self.conn.send(("synced", report))

    async def _report_move(self, move: Move, settle: float = 0.3) -> None:
        """Once every stream saw the move (or at its deadline), and a little after so that what the
        push brought in its wake is counted with it."""
        await _until(self._all_seen, move.deadline)
        await asyncio.sleep(settle)
        tallies = [stream.tally for stream in self.streams]
        report = {
            "seen_at": [t.seen_at for t in tallies],
            "bytes": [t.move_bytes for t in tallies],
            "responses": [t.move_responses for t in tallies],
            "cpu": time.process_time(),
        }
        self.conn.send(("moved", report))


async def _until(event: asyncio.Event, deadline: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))


def load_process(plan: LoadPlan, conn: Connection) -> None:
    """The entry point of one load process (multiprocessing, spawn)."""
    asyncio.run(LoadProcess(plan, conn).main())
