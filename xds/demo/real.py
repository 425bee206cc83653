"""The default demo: real Apache Kafka behind a sidecar, with a real producer and consumer.

All on loopback, in the demo's /24 and a temp dir: ZooKeeper (Debian's package); kafka-a, three
Kafka 3.9 brokers in ZooKeeper mode (.21-.23, chroot /kafka-a); kafka-b, two Kafka 4.1 brokers in
KRaft mode (.41-.42) with a dedicated controller (.50); kafka-xds on config/demo.yaml (its own
process); a real Envoy sidecar. Each broker runs as the README tells users to run brokers: INTERNAL
(plaintext, on its pod IP, :9092) and MESH (mTLS, client certificate required, :9094, advertising
the plan's address). Per cluster, an idempotent acks=all producer and a consumer group whose only
bootstrap is the cluster's loopback address write and read a topic of replication factor 3 (kafka-a)
or 2 (kafka-b); every second the demo prints the bytes that went through each broker's port of the
sidecar, and how many records were produced and consumed. A reschedule moves kafka-a's broker 2 to
a new IP (same id, same data) while the clients keep going; at the end the demo says how many
records were produced and consumed before and after it, and whether any was lost or duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from xds.config.model import KafkaCluster as ClusterSettings
from xds.config.model import parse_config
from xds.demo.brokers import make_certs
from xds.demo.kafka import BrokerSpec, KafkaCluster
from xds.demo.layout import CONTROLLER_HOST, MOVED_BROKER, POD_HOSTS, DemoAddresses
from xds.demo.stack import DemoStack

CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
INTERNAL_PORT = 9092  # every broker's plaintext listener on its pod IP (replication, the sources)
MESH_PORT = 9094  # every broker's mTLS listener on its pod IP: what the sidecar connects to
TOPIC = "demo-orders"
_RECORDS_PER_SECOND = 20


@dataclass
class _Traffic:
    """One cluster's clients: what was produced and consumed, and when the reschedule happened."""

    sent: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent_before_move: int | None = None  # records acknowledged when the reschedule started
    received_before_move: int | None = None
    consumed: asyncio.Event = field(default_factory=asyncio.Event)  # set by each record read

    stop: asyncio.Event = field(default_factory=asyncio.Event)  # set: produce no more records

    def behind(self) -> bool:
        """Whether an acknowledged record has not been read yet (sets, not counts: a record read
        but never acknowledged must not stand in for one that was)."""
        return not set(self.sent) <= set(self.received)


class RealKafkaDemo:
    """The whole stack in one temp dir; `stop()` ends every process it started, whatever its state."""

    def __init__(self, workdir: Path, addresses: DemoAddresses) -> None:
        self.workdir = workdir
        self.addresses = addresses
        self.stack = DemoStack(workdir, addresses)
        self.zookeeper = self.stack.zookeeper
        self.certs = make_certs(workdir / "certs")
        self._raw: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
        self._raw["xds"]["listen"] = f"{addresses.services}:{addresses.xds_port}"
        self._raw["debug"]["listen"] = f"{addresses.services}:{addresses.debug_port}"
        for entry in self._raw["kafka_clusters"]:
            entry["loopback_ip"] = addresses.same_host(entry["loopback_ip"])
        self.config = parse_config(self._raw)  # checked now: a broken demo config fails before Java starts
        self.kafka: dict[str, KafkaCluster] = {}
        # The names the sidecars verify (upstream_tls.broker_names), which the brokers' certificates carry.
        templates = self._raw["upstream_tls"]["broker_names"]["dns"]
        for cluster in self.config.kafka_clusters:
            names = tuple(template.replace("{cluster}", cluster.name) for template in templates)
            self.kafka[cluster.name] = KafkaCluster(
                workdir / cluster.name,
                [self._spec(cluster, broker_id) for broker_id in sorted(POD_HOSTS[cluster.name])],
                self.certs,
                zookeeper=f"{self.zookeeper.hosts}{cluster.zookeeper.chroot}" if cluster.zookeeper else None,
                controller_host=addresses.ip(CONTROLLER_HOST),
                mesh_port=MESH_PORT,
                internal_port=INTERNAL_PORT,
                certificate_names=names,
                # Leadership goes back to a restarted broker within seconds (Kafka's own preferred
                # leader rebalance, every 300 s by default), so its port carries traffic again.
                properties={
                    "leader.imbalance.check.interval.seconds": "5",
                    "leader.imbalance.per.broker.percentage": "0",
                },
            )
        self.status_url = f"http://{self.config.debug.listen}/"
        self.startup_seconds = 0.0
        self._traffic = {name: _Traffic() for name in self.kafka}
        self._clients: list[AIOKafkaProducer | AIOKafkaConsumer] = []
        self._producing: list[asyncio.Task[None]] = []
        self._consuming: list[asyncio.Task[None]] = []
        self._last_bytes: dict[str, int] = {}
        self._moved = False

    def _spec(self, cluster: ClusterSettings, broker_id: int) -> BrokerSpec:
        advertised = f"{cluster.loopback_ip}:{cluster.broker_port(broker_id)}"
        return BrokerSpec(
            broker_id, self.addresses.pod_ip(cluster.name, broker_id), f"az-{broker_id}", advertised
        )

    async def start(self) -> None:
        # aiokafka logs each reconnect of the reschedule at ERROR; the demo's own lines say what happens.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        started = time.monotonic()
        await self.stack.start_zookeeper()
        await asyncio.gather(*(cluster.start() for cluster in self.kafka.values()))
        self._write_config()
        await self.stack.start_control_plane(
            self.certs,
            self.workdir / "kafka-xds.yaml",
            self.config.xds.listen,
            self.status_url,
            ready_timeout=60,
        )
        for cluster in self.config.kafka_clusters:
            await self._start_clients(cluster)
        self._last_bytes = await self._bytes_per_listener()
        self.startup_seconds = time.monotonic() - started

    def _write_config(self) -> None:
        """The running copy of config/demo.yaml: ZooKeeper's port, KRaft's bootstrap, the certificates."""
        certs = self.workdir / "certs"
        raw = self._raw
        raw["xds"]["tls"] = {
            "cert_file": str(certs / "xds-server.pem"),
            "key_file": str(certs / "xds-server.key"),
            "client_ca_file": str(certs / "ca.pem"),
        }
        raw["upstream_tls"].update(
            ca_file=str(certs / "ca.pem"),
            cert_file=str(certs / "client.pem"),
            key_file=str(certs / "client.key"),
        )
        for entry in raw["kafka_clusters"]:
            if "zookeeper" in entry:
                entry["zookeeper"]["hosts"] = self.zookeeper.hosts
            if "kraft" in entry:
                entry["kraft"]["bootstrap_servers"] = self.kafka[entry["name"]].bootstrap_servers
        parse_config(raw)
        (self.workdir / "kafka-xds.yaml").write_text(yaml.safe_dump(raw))

    async def _start_clients(self, cluster: ClusterSettings) -> None:
        """A topic, then a producer and a consumer that know only the sidecar's address of the cluster."""
        bootstrap = f"{cluster.loopback_ip}:{cluster.broker_port(min(POD_HOSTS[cluster.name]))}"
        await _create_topic(bootstrap, len(POD_HOSTS[cluster.name]))
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=30000
        )
        consumer = AIOKafkaConsumer(
            TOPIC, bootstrap_servers=bootstrap, group_id=f"demo-{cluster.name}", auto_offset_reset="earliest"
        )
        await producer.start()
        self._clients.append(producer)
        await consumer.start()
        self._clients.append(consumer)
        traffic = self._traffic[cluster.name]
        self._producing.append(asyncio.create_task(_produce(producer, traffic, cluster.name)))
        self._consuming.append(asyncio.create_task(_consume(consumer, traffic)))

    async def reschedule(self) -> str:
        """kafka-a's broker 2 stops (a clean shutdown) and starts again with its data on a new IP."""
        name, broker_id = MOVED_BROKER
        cluster = self.kafka[name]
        for traffic in self._traffic.values():
            traffic.sent_before_move, traffic.received_before_move = len(traffic.sent), len(traffic.received)
        old_ip, new_ip = cluster.spec(broker_id).host, self.addresses.moved_to
        started = time.monotonic()
        await cluster.move(broker_id, new_ip)
        self._moved = True
        planned = cluster.spec(broker_id).advertised
        return (
            f"\n*** rescheduled: {name} broker {broker_id}'s pod moved {old_ip} -> {new_ip} (same id and "
            f"data; {time.monotonic() - started:.1f} s to stop and start).\n"
            f"    Clients keep using {planned}; the sidecar follows it without a restart.\n"
        )

    def rescheduling(self) -> str:
        name, broker_id = MOVED_BROKER
        return (
            f"\n*** rescheduling: {name} broker {broker_id} shuts down and starts on "
            f"{self.addresses.moved_to} while the clients keep going ...\n"
        )

    async def probe(self) -> list[str]:
        """One line per Kafka cluster: bytes through each broker's port in the last second, and records."""
        now = time.strftime("%H:%M:%S")
        counted = await self._bytes_per_listener()
        lines = []
        for cluster in self.config.kafka_clusters:
            cells = []
            for broker_id in sorted(POD_HOSTS[cluster.name]):
                key = f"{cluster.name}.broker-{broker_id}"
                delta = counted.get(key, 0) - self._last_bytes.get(key, 0)
                cells.append(f":{cluster.broker_port(broker_id)} {_size(delta):>8}")
            traffic = self._traffic[cluster.name]
            errors = sum(traffic.errors.values())
            lines.append(
                f"{now} {cluster.name}  {'  '.join(cells)}  produced {len(traffic.sent):>5}  "
                f"consumed {len(traffic.received):>5}" + (f"  produce errors {errors}" if errors else "")
            )
        self._last_bytes = counted
        return lines

    async def _bytes_per_listener(self) -> dict[str, int]:
        """`<cluster>.broker-<id>` -> bytes both ways through that tcp_proxy so far (Envoy's stats)."""
        envoy = self.stack.envoy
        if envoy is None:
            return {}
        try:
            text = await envoy.get("/stats?filter=^tcp%5C..*_bytes_total$")
        except OSError:
            return {}
        counted: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if name.startswith("tcp.") and value.strip().isdigit():
                listener = name[len("tcp.") :].rsplit(".", 1)[0]
                counted[listener] = counted.get(listener, 0) + int(value)
        return counted

    async def summary(self) -> str:
        """Per cluster: produced and consumed before and after the move, lost, duplicated, errors."""
        await self._drain()
        lines = ["", "records, per cluster (every one produced with acks=all, through the sidecar):"]
        for name, traffic in self._traffic.items():
            before = traffic.sent_before_move if traffic.sent_before_move is not None else len(traffic.sent)
            consumed_before = traffic.received_before_move
            if consumed_before is None:
                consumed_before = len(traffic.received)
            lost = len(set(traffic.sent) - set(traffic.received))
            duplicated = len(traffic.received) - len(set(traffic.received))
            errors = ", ".join(f"{kind} {count}" for kind, count in sorted(traffic.errors.items())) or "none"
            lines.append(
                f"  {name}: produced {len(traffic.sent)} ({before} before the reschedule, "
                f"{len(traffic.sent) - before} after), consumed {len(traffic.received)} "
                f"({consumed_before} before, {len(traffic.received) - consumed_before} after); "
                f"lost {lost}, duplicated {duplicated}; produce errors: {errors}"
            )
        return "\n".join(lines)

    async def _drain(self, timeout: float = 15.0) -> None:
        """Stop producing, and give the consumers until `timeout` to read what was produced.

        A producer finishes the record it is sending: cancelled mid-send, the record would be written
        and read but never counted as acknowledged, and the accounting off by one."""
        deadline = time.monotonic() + timeout
        for traffic in self._traffic.values():
            traffic.stop.set()
        _, late = await asyncio.wait(self._producing, timeout=timeout) if self._producing else ((), ())
        for task in late:
            task.cancel()
        await asyncio.gather(*self._producing, return_exceptions=True)
        for traffic in self._traffic.values():
            while (left := deadline - time.monotonic()) > 0:
                traffic.consumed.clear()
                if not traffic.behind():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(traffic.consumed.wait(), left)

    def banner(self) -> str:
        kafka_a, kafka_b = (self.config.kafka_clusters[0], self.config.kafka_clusters[1])

        def hosts(cluster: ClusterSettings) -> str:
            return ", ".join(self.addresses.pod_ip(cluster.name, b) for b in sorted(POD_HOSTS[cluster.name]))

        bootstraps = ", ".join(
            f"{c.loopback_ip}:{c.broker_port(min(POD_HOSTS[c.name]))}" for c in self.config.kafka_clusters
        )
        return "\n".join(
            [
                "kafka-xds demo on real Apache Kafka, all on loopback",
                f"  (logs in {self.workdir}, removed at exit)",
                f"  zookeeper  {self.zookeeper.hosts}",
                f"  {kafka_a.name}    Kafka {self.kafka[kafka_a.name].version} in ZooKeeper mode "
                f"({kafka_a.zookeeper.chroot if kafka_a.zookeeper else ''}): brokers on {hosts(kafka_a)}",
                f"  {kafka_b.name}    Kafka {self.kafka[kafka_b.name].version} in KRaft mode: brokers on "
                f"{hosts(kafka_b)}, controller {self.addresses.ip(CONTROLLER_HOST)}",
                f"             each broker: INTERNAL :{INTERNAL_PORT} (plaintext), MESH :{MESH_PORT} (mTLS,",
                "             client certificate required; advertises the plan's address)",
                f"  kafka-xds  ADS on {self.config.xds.listen} (mTLS)",
                f"  sidecar    Envoy, admin on http://{self.addresses.services}:{self.addresses.admin_port}/",
                f"  clients    per cluster: an acks=all idempotent producer ({_RECORDS_PER_SECOND} records/s)"
                " and",
                f"             a consumer group on topic {TOPIC}; their only bootstrap: {bootstraps}",
                "",
                f"  >>> Status page: {self.status_url}",
                "",
                "Each second: the bytes through each broker's port of the sidecar in that second.",
                "Ctrl-C stops everything.",
                "",
            ]
        )

    async def stop(self) -> None:
        tasks = [*self._producing, *self._consuming]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in reversed(self._clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), 10)
        await self.stack.stop_control_plane()
        await asyncio.gather(*(cluster.stop() for cluster in self.kafka.values()), return_exceptions=True)
        await self.stack.stop_zookeeper()


async def _create_topic(bootstrap: str, brokers: int, timeout: float = 60.0) -> None:
    """The demo's topic, through the sidecar: asked again until the sidecar has its listeners (Envoy
    was just started) and the cluster its controller."""
    replicas = min(3, brokers)
    topic = NewTopic(TOPIC, 3, replicas, topic_configs={"min.insync.replicas": str(max(1, replicas - 1))})
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([topic])
            return
        except (KafkaError, OSError) as err:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"cannot create {TOPIC} through the sidecar at {bootstrap}: {err}"
                ) from None
        finally:
            await admin.close()
        await asyncio.sleep(0.5)


async def _produce(producer: AIOKafkaProducer, traffic: _Traffic, cluster: str) -> None:
    """Records `<cluster>-<n>`, one at a time (acks=all): a record counts once the cluster acked it."""
    interval = 1 / _RECORDS_PER_SECOND
    while not traffic.stop.is_set():
        value = f"{cluster}-{len(traffic.sent)}".encode()
        try:
            await producer.send_and_wait(TOPIC, value, key=value)
        except KafkaError as err:
            traffic.errors[type(err).__name__] += 1
            await asyncio.sleep(0.5)
            # The same value again. If the failure hid a write (a timeout after the broker appended
            # it), the consumer reads it twice and the summary counts it as duplicated.
            continue
        traffic.sent.append(value)
        await asyncio.sleep(interval)


async def _consume(consumer: AIOKafkaConsumer, traffic: _Traffic) -> None:
    async for record in consumer:
        traffic.received.append(record.value)
        traffic.consumed.set()


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    return f"{count / 1000:.1f} kB"
