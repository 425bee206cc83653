"""Rolling every broker of a real Kafka cluster: gated on `kafka-xds broker-ready`, or on "process up".

Starts a KRaft cluster of real brokers (xds.demo.kafka: `--brokers` brokers and a controller, on a
/24 of loopback of this run's own), and for each roll a topic of its own (RF 3, min.insync.replicas
2, `--partitions` partitions) that an idempotent acks=all producer writes numbered records to at
`--rate` records/s while a consumer reads them back, both on the INTERNAL listeners. Then it rolls
every broker, one after the other (a clean SIGTERM shutdown, then the same broker started again):

- gated: the next broker goes down only once `python -m xds broker-ready --broker-id N` (the real
  CLI, polled every second) says the restarted broker is ready: in every ISR, nothing degraded;
- ungated: the next broker goes down as soon as the restarted one answers Metadata (what a
  StatefulSet with a TCP readiness probe waits for).

Both rolls run under the same replication pressure, so that a restarted broker takes a while to
catch up, as a broker with real data does: `replica.fetch.max.bytes`, a follower/leader replication
throttle (`--throttle` bytes/s on every broker, on all of the topic's replicas: Kafka throttles only
replicas out of the ISR) and the producer's rate. Without it, replicas on loopback catch up in
well under a second and an ungated roll looks as safe as a gated one.

For each roll it prints the produce errors by kind (every error a broker answered, the producer
retrying: an idempotent producer retries until it succeeds), the sends that failed for good,
records acknowledged, lost (acknowledged, never consumed after draining), duplicates, the slowest
acknowledgement, the roll's wall time and how long the gate waited per broker; then a table of
both. Every process and the temporary directory go on exit, Ctrl-C included. Figures only.

    .venv/bin/python benchmarks/rolling_restart.py [--brokers 4] [--partitions 12] [--rate 1000]
        [--record-bytes 1024] [--throttle 1048576]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.support.addresses import LoopbackAddresses
from xds.demo.brokers import make_certs
from xds.demo.kafka import BrokerSpec, KafkaCluster

REPO = Path(__file__).resolve().parent.parent
KINDS = {
    "NotEnoughReplicasError": "NotEnoughReplicas",
    "NotEnoughReplicasAfterAppendError": "NotEnoughReplicasAfterAppend",
    "RequestTimedOutError": "timeouts",
    "KafkaTimeoutError": "timeouts",
}
COLUMNS = ("NotEnoughReplicas", "NotEnoughReplicasAfterAppend", "timeouts", "others")


def _kind(error: object) -> str:
    name = error.__name__ if isinstance(error, type) else type(error).__name__
    return KINDS.get(name, "others")


def _name(error: object) -> str:
    return error.__name__ if isinstance(error, type) else type(error).__name__


@dataclass
class Roll:
    """What one roll saw."""

    mode: str
    errors: Counter[str] = field(default_factory=Counter)  # error answers, retried
    others: Counter[str] = field(default_factory=Counter)  # the names behind "others"
    failed: Counter[str] = field(default_factory=Counter)  # sends that failed for good
    sent: int = 0
    acked: set[int] = field(default_factory=set)
    consumed: Counter[int] = field(default_factory=Counter)
    slowest_ack: float = 0.0
    wall: float = 0.0
    in_sync_after: float = 0.0  # from the first stop until every partition was fully in sync again
    waits: dict[int, float] = field(default_factory=dict)  # broker -> the gate's wait after it was up

    @property
    def lost(self) -> int:
        return len(self.acked - set(self.consumed))

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.consumed.values() if count > 1)


class ProduceErrors(logging.Handler):
    """Counts the error answers aiokafka's sender logs before it retries them (it only logs them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.roll: Roll | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.roll is None or not record.args or not isinstance(record.args, tuple):
            return
        error = record.args[-1]
        kind = _kind(error)
        self.roll.errors[kind] += 1
        if kind == "others":
            self.roll.others[_name(error)] += 1


async def broker_ready(kafka: KafkaCluster, broker_id: int) -> tuple[bool, str]:
    """One run of the real CLI, as an exec readiness probe would."""
    servers = [arg for server in kafka.bootstrap_servers for arg in ("--bootstrap-server", server)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xds",
        "broker-ready",
        *servers,
        "--broker-id",
        str(broker_id),
        "--timeout",
        "5",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode == 0, out.decode(errors="replace").strip()


async def until_ready(kafka: KafkaCluster, broker_id: int, timeout: float = 600.0) -> float:
    """Polls broker-ready every second until it says ready; returns how long that took."""
    started = time.monotonic()
    while True:
        asked = time.monotonic()
        ready, line = await broker_ready(kafka, broker_id)
        if ready:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"broker {broker_id} not ready after {timeout:.0f} s: {line}")
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - asked)))


async def produce(
    producer: AIOKafkaProducer, topic: str, roll: Roll, rate: int, size: int, stop: asyncio.Event
) -> None:
    """Numbered records at `rate` per second, sent in 10 ms ticks; acknowledgements counted as they come."""
    padding = b"x" * max(0, size - 8)
    started = time.monotonic()

    def acknowledged(number: int, sent_at: float, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            roll.failed["others"] += 1
        elif future.exception() is not None:
            roll.failed[_kind(future.exception())] += 1
        else:
            roll.acked.add(number)
            roll.slowest_ack = max(roll.slowest_ack, time.monotonic() - sent_at)

    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while roll.sent < due and not stop.is_set():
            number = roll.sent
            roll.sent += 1
            try:
                future = await producer.send(topic, number.to_bytes(8, "big") + padding)
            except Exception as err:
                roll.failed[_kind(err)] += 1
                continue
            sent_at = time.monotonic()
            future.add_done_callback(lambda done, n=number, at=sent_at: acknowledged(n, at, done))
        await asyncio.sleep(0.01)


async def consume(consumer: AIOKafkaConsumer, roll: Roll) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                assert record.value is not None
                roll.consumed[int.from_bytes(record.value[:8], "big")] += 1


async def drain(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], timeout: float = 120.0) -> None:
    """Until the consumer has read every partition to its end."""
    ends = await consumer.end_offsets(partitions)
    deadline = time.monotonic() + timeout
    while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
        if time.monotonic() > deadline:
            raise TimeoutError("the consumer did not reach the end of the topic")
        await asyncio.sleep(0.2)


async def roll_brokers(kafka: KafkaCluster, roll: Roll, gated: bool) -> None:
    started = time.monotonic()
    for broker_id in sorted(spec.broker_id for spec in kafka.brokers):
        await kafka.stop_broker(broker_id)  # SIGTERM: a controlled shutdown hands leadership over
        await kafka.start_broker(broker_id)  # returns once Metadata lists it: "process up"
        roll.waits[broker_id] = await until_ready(kafka, broker_id) if gated else 0.0
        print(f"  broker {broker_id} restarted, gate waited {roll.waits[broker_id]:.1f} s", flush=True)
    roll.wall = time.monotonic() - started
    await until_ready(kafka, kafka.brokers[0].broker_id)  # no partition degraded anywhere
    roll.in_sync_after = time.monotonic() - started


async def run_roll(kafka: KafkaCluster, args: argparse.Namespace, errors: ProduceErrors, gated: bool) -> Roll:
    roll = Roll("gated (broker-ready)" if gated else "ungated (process up)")
    topic = f"rolling-{'gated' if gated else 'ungated'}"
    servers = kafka.bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        configs = {"min.insync.replicas": "2"}
        configs |= {f"{side}.replication.throttled.replicas": "*" for side in ("leader", "follower")}
        await admin.create_topics([NewTopic(topic, args.partitions, 3, topic_configs=configs)])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p) for p in range(args.partitions)]
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=5)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    consumer.assign(partitions)
    stop = asyncio.Event()
    reading = asyncio.create_task(consume(consumer, roll))
    writing = asyncio.create_task(produce(producer, topic, roll, args.rate, args.record_bytes, stop))
    try:
        await asyncio.sleep(args.warmup)
        await until_ready(kafka, kafka.brokers[0].broker_id)  # in sync before the roll starts
        print(f"{roll.mode}: rolling {len(kafka.brokers)} brokers", flush=True)
        errors.roll = roll
        await roll_brokers(kafka, roll, gated)
        await asyncio.sleep(2.0)
        stop.set()
        await writing
        await asyncio.wait_for(producer.flush(), 120)
        errors.roll = None
        await drain(consumer, partitions)
    finally:
        errors.roll = None
        stop.set()
        for task in (writing, reading):
            task.cancel()
        await asyncio.gather(writing, reading, return_exceptions=True)
        await producer.stop()
        await consumer.stop()
    return roll


def report(roll: Roll) -> None:
    others = f" ({', '.join(f'{name} {n}' for name, n in roll.others.most_common())})" if roll.others else ""
    print(f"{roll.mode}:")
    print(
        "  produce errors (answered, retried): "
        + ", ".join(f"{kind} {roll.errors[kind]}" for kind in COLUMNS)
        + others
    )
    print(f"  sends failed for good: {sum(roll.failed.values())} {dict(roll.failed) or ''}")
    print(
        f"  records sent {roll.sent}, acknowledged {len(roll.acked)}, lost {roll.lost}, "
        f"duplicates {roll.duplicates}"
    )
    print(f"  slowest acknowledgement {roll.slowest_ack:.1f} s")
    waits = ", ".join(f"{broker} {seconds:.1f} s" for broker, seconds in sorted(roll.waits.items()))
    print(
        f"  roll {roll.wall:.1f} s, fully in sync {roll.in_sync_after:.1f} s after the first stop; "
        f"gate waited: {waits}"
    )


def table(rolls: list[Roll]) -> None:
    rows: list[tuple[str, list[str]]] = [
        *((f"errors: {kind}", [str(roll.errors[kind]) for roll in rolls]) for kind in COLUMNS),
        ("sends failed for good", [str(sum(roll.failed.values())) for roll in rolls]),
        ("records acknowledged", [str(len(roll.acked)) for roll in rolls]),
        ("records lost", [str(roll.lost) for roll in rolls]),
        ("duplicates", [str(roll.duplicates) for roll in rolls]),
        ("slowest acknowledgement", [f"{roll.slowest_ack:.1f} s" for roll in rolls]),
        ("roll wall time", [f"{roll.wall:.1f} s" for roll in rolls]),
        (
            "gate wait per broker",
            [" / ".join(f"{roll.waits[b]:.0f}" for b in sorted(roll.waits)) + " s" for roll in rolls],
        ),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"\n| {'':<{width}} | " + " | ".join(roll.mode for roll in rolls) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (len(roll.mode) + 2) for roll in rolls) + "|")
    for label, values in rows:
        print(
            f"| {label:<{width}} | "
            + " | ".join(f"{v:>{len(r.mode)}}" for v, r in zip(values, rolls, strict=True))
            + " |"
        )


async def main(args: argparse.Namespace) -> None:
    errors = ProduceErrors()
    logging.getLogger("aiokafka.producer.sender").addHandler(errors)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())  # counted here, not printed
    logging.getLogger("aiokafka").propagate = False
    properties = {
        "replica.fetch.max.bytes": str(args.fetch_max_bytes),
        "num.partitions": str(args.partitions),
    }
    print(
        f"{args.brokers} brokers (KRaft), {args.partitions} partitions RF 3 min.insync.replicas 2; producer "
        f"acks=all idempotent {args.rate} records/s x {args.record_bytes} B; pressure: "
        f"replica.fetch.max.bytes={args.fetch_max_bytes}, leader/follower.replication.throttled.rate="
        f"{args.throttle} B/s per broker (throttled replicas: * on the topic)",
        flush=True,
    )
    with (
        LoopbackAddresses() as addresses,
        tempfile.TemporaryDirectory(prefix="rolling-restart-") as temporary,
    ):
        directory = Path(temporary)
        specs = [
            BrokerSpec(broker_id, addresses.take(), f"rack-{broker_id}", f"127.0.0.1:{9090 + broker_id}")
            for broker_id in range(1, args.brokers + 1)
        ]
        kafka = KafkaCluster(
            directory / "kafka",
            specs,
            make_certs(directory / "certs"),
            controller_host=addresses.take(),
            properties=properties,
        )
        try:
            await kafka.start()
            admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
            await admin.start()
            try:
                rates = {
                    f"{side}.replication.throttled.rate": str(args.throttle)
                    for side in ("leader", "follower")
                }
                await admin.alter_configs(
                    [
                        ConfigResource(ConfigResourceType.BROKER, str(spec.broker_id), configs=rates)
                        for spec in specs
                    ]
                )
            finally:
                await admin.close()
            rolls = [await run_roll(kafka, args, errors, gated) for gated in (True, False)]
            for roll in rolls:
                report(roll)
            table(rolls)
        finally:
            await kafka.stop()


def _run(args: argparse.Namespace) -> None:
    """asyncio.run, with SIGTERM cancelling like Ctrl-C does, so `finally` stops every broker."""

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await main(args)

    try:
        asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: brokers stopped, temporary files removed", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--brokers", type=int, default=4, help="brokers (at least 3: the topic has RF 3)")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--rate", type=int, default=1000, help="records per second")
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument(
        "--throttle", type=int, default=1024 * 1024, help="replication throttle, bytes/s per broker"
    )
    parser.add_argument("--fetch-max-bytes", type=int, default=65536, help="replica.fetch.max.bytes")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of producing before a roll")
    parsed = parser.parse_args()
    if parsed.brokers < 3:
        parser.error("--brokers must be at least 3")
    _run(parsed)
