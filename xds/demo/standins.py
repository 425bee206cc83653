"""The fast demo (`python -m xds.demo --stand-ins`): stand-in brokers instead of Kafka.

Five stand-in brokers of two Kafka clusters (kafka-a: 1-3 on .21-.23, kafka-b: 1-2 on .41-.42 of the
demo's /24), each an mTLS server that requires a client certificate and registers its znode in
Kafka's exact format under its cluster's chroot; kafka-xds on config/demo-standins.yaml; a real Envoy
sidecar; and a client that sends through every planned port each second and prints which broker
answered. It starts in a few seconds and needs no Java: for a quick look, and for the tests of the
demo's own plumbing. The default demo runs real Kafka (xds/demo/real.py).
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from xds.config.model import KafkaCluster, SubjectAltName, parse_config
from xds.demo.brokers import Certs, TlsUpstream, exchange, make_certs
from xds.demo.layout import MOVED_BROKER, POD_HOSTS, DemoAddresses
from xds.demo.stack import SIDECAR_IDENTITY, DemoStack
from xds.demo.zookeeper import KafkaBroker, cluster_id_znode, write_znode

CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo-standins.yaml"
MESH_PORT = 9094  # every broker's mTLS listener, on its pod IP (as in config/compose)


class DemoBroker:
    """A stand-in Kafka broker: an mTLS listener (MESH) on its pod IP and its ZooKeeper registration."""

    def __init__(
        self,
        cluster: KafkaCluster,
        broker_id: int,
        certs: Certs,
        zookeeper_hosts: str,
        names: Sequence[SubjectAltName] = (),
    ) -> None:
        assert cluster.zookeeper is not None
        self.cluster = cluster
        self.broker_id = broker_id
        self.names = names  # what its certificate carries: the names the sidecar verifies
        self.listener: TlsUpstream | None = None
        self._certs = certs
        self._registration = KafkaBroker(zookeeper_hosts, cluster.zookeeper.chroot, broker_id)

    async def start(self, pod_ip: str) -> None:
        """Listen on the pod IP, then register, as Kafka does once its listeners are up."""
        hosts = [name.value for name in self.names if name.kind == "dns"]
        uris = [name.value for name in self.names if name.kind == "uri"]
        context = self._certs.server_context(pod_ip, *hosts, uris=uris)
        name = f"broker-{self.broker_id}@{pod_ip}"
        self.listener = await TlsUpstream(name, pod_ip, context, port=MESH_PORT).start()
        await self._registration.register(self._endpoints(pod_ip), rack=f"az{self.broker_id}")

    def _endpoints(self, pod_ip: str) -> dict[str, str]:
        return {
            "MESH": f"{pod_ip}:{MESH_PORT}",  # SSL, client certificate required: the sidecar's upstream
            # What Kafka clients are told (their Metadata): the plan's address, reached via the sidecar.
            "CLIENT": f"{self.cluster.loopback_ip}:{self.cluster.broker_port(self.broker_id)}",
        }

    async def stop(self) -> None:
        """Shut down: the session closes (ZooKeeper deletes the znode with it), then the listener."""
        await self._registration.stop()
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None


class StandInDemo:
    """The whole stack in one temp dir; `stop()` ends every process it started, whatever state it is in."""

    def __init__(self, workdir: Path, addresses: DemoAddresses) -> None:
        self.workdir = workdir
        self.addresses = addresses
        self.stack = DemoStack(workdir, addresses)
        self.zookeeper = self.stack.zookeeper
        self.brokers: dict[tuple[str, int], DemoBroker] = {}
        raw = _config(addresses)
        for cluster in raw["kafka_clusters"]:
            cluster["zookeeper"]["hosts"] = self.zookeeper.hosts
        # The sidecar and the brokers live in this temp dir: point the config at its certificates.
        certs_dir = workdir / "certs"
        raw["upstream_tls"].update(
            ca_file=str(certs_dir / "ca.pem"),
            cert_file=str(certs_dir / "client.pem"),
            key_file=str(certs_dir / "client.key"),
        )
        raw["xds"]["tls"] = {
            "cert_file": str(certs_dir / "xds-server.pem"),
            "key_file": str(certs_dir / "xds-server.key"),
            "client_ca_file": str(certs_dir / "ca.pem"),
        }
        self.config = parse_config(raw)
        self.config_path = workdir / "kafka-xds.yaml"
        self.config_path.write_text(yaml.safe_dump(raw))
        self.status_url = f"http://{self.config.debug.listen}/"
        self._answer_width = len("broker-1@") + max(len(ip) for ip in addresses.pod_ips())

    async def start(self) -> None:
        certs = await asyncio.to_thread(make_certs, self.workdir / "certs")
        await self.stack.start_zookeeper()
        for cluster in self.config.kafka_clusters:
            assert cluster.zookeeper is not None
            # Kafka's first controller writes the id; kafka-xds remembers it and shows it.
            cluster_id = cluster_id_znode(_new_cluster_id())
            await asyncio.to_thread(
                write_znode, self.zookeeper.hosts, f"{cluster.zookeeper.chroot}/cluster/id", cluster_id
            )
            tls = self.config.tls_for(cluster)
            for broker_id in POD_HOSTS[cluster.name]:
                names = tls.names_for(cluster.name, broker_id) if tls is not None else ()
                self.brokers[cluster.name, broker_id] = DemoBroker(
                    cluster, broker_id, certs, self.zookeeper.hosts, names
                )
        await asyncio.gather(
            *(broker.start(self.addresses.pod_ip(*key)) for key, broker in self.brokers.items())
        )
        await self.stack.start_control_plane(certs, self.config_path, self.config.xds.listen, self.status_url)
        await self._wait_sidecar()

    async def reschedule(self) -> str:
        """Broker MOVED_BROKER's pod stops and starts again on the moved-to IP; returns what it says."""
        broker = self.brokers[MOVED_BROKER]
        assert broker.listener is not None
        old_ip, new_ip = broker.listener.host, self.addresses.moved_to
        await broker.stop()
        await broker.start(new_ip)
        planned = f"{broker.cluster.loopback_ip}:{broker.cluster.broker_port(broker.broker_id)}"
        return (
            f"\n*** rescheduled: {broker.cluster.name} broker {broker.broker_id}'s pod moved "
            f"{old_ip} -> {new_ip} (new session, new znode).\n"
            f"    Clients keep using {planned}; the sidecar follows it without a restart.\n"
        )

    def rescheduling(self) -> str:
        return ""  # a stand-in moves in milliseconds: reschedule() says it all

    async def summary(self) -> str:
        return ""  # the stand-ins carry no records to count

    async def probe(self) -> list[str]:
        """One line per Kafka cluster: through each planned port, which broker answered."""
        now = time.strftime("%H:%M:%S")
        return [
            f"{now} {name}  "
            + "  ".join(f":{port} {answer:<{self._answer_width}}" for port, answer in answers).rstrip()
            for name, answers in (await self._answers()).items()
        ]

    async def _answers(self) -> dict[str, list[tuple[int, str]]]:
        """Kafka cluster -> (planned port, who answered there through the sidecar), all at once."""
        ports = {cluster.name: self._ports(cluster) for cluster in self.config.kafka_clusters}
        asked = [
            _ask(str(cluster.loopback_ip), port)
            for cluster in self.config.kafka_clusters
            for port in ports[cluster.name]
        ]
        answers = iter(await asyncio.gather(*asked))
        return {
            name: [(port, next(answers)) for port in cluster_ports] for name, cluster_ports in ports.items()
        }

    @staticmethod
    def _ports(cluster: KafkaCluster) -> list[int]:
        return [
            port for broker_id in sorted(POD_HOSTS[cluster.name]) if (port := cluster.broker_port(broker_id))
        ]

    def banner(self) -> str:
        clusters = self.config.kafka_clusters
        brokers = [
            f"  {cluster.name:<9}  brokers on "
            f"{', '.join(self.addresses.pod_ip(cluster.name, b) for b in POD_HOSTS[cluster.name])}, "
            f"registered under {cluster.zookeeper.chroot}"
            for cluster in clusters
            if cluster.zookeeper is not None
        ]
        client = ", ".join(
            f"{cluster.loopback_ip}:{min(ports)}-{max(ports)} ({cluster.name})"
            for cluster in clusters
            if (ports := self._ports(cluster))
        )
        return "\n".join(
            [
                f"kafka-xds demo, all on loopback (logs in {self.workdir}, removed at exit)",
                f"  zookeeper  {self.zookeeper.hosts}",
                *brokers,
                f"             each: mTLS on :{MESH_PORT}, client certificate required (made at start)",
                f"  kafka-xds  ADS on {self.config.xds.listen}, mTLS: sidecars need a certificate from the",
                f"             demo CA; {SIDECAR_IDENTITY} may see kafka-a and kafka-b",
                f"  sidecar    Envoy, admin on http://{self.addresses.services}:{self.addresses.admin_port}/",
                f"  client     every second through {client}",
                "",
                f"  >>> Status page: {self.status_url}",
                "",
                "Ctrl-C stops everything.",
                "",
            ]
        )

    async def _wait_sidecar(self, timeout: float = 15.0) -> None:
        """Until a broker answers through every planned port, so that the first lines show brokers."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            answers = await self._answers()
            if all(answer.startswith("broker-") for ports in answers.values() for _, answer in ports):
                return
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        await self.stack.stop_control_plane()
        await asyncio.gather(*(broker.stop() for broker in self.brokers.values()), return_exceptions=True)
        await self.stack.stop_zookeeper()


async def _ask(host: str, port: int) -> str:
    try:
        return (await exchange(host, port, "which broker?", timeout=0.8)).split()[0]
    except ConnectionRefusedError:
        return "(refused)"  # the sidecar has no listener there (yet)
    except TimeoutError:
        return "(timed out)"
    except OSError:
        return "(no answer)"  # the sidecar took the connection but reached no broker


def _new_cluster_id() -> str:
    """A cluster id as Kafka makes one: a random UUID, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _config(addresses: DemoAddresses) -> dict[str, Any]:
    """config/demo-standins.yaml with its addresses moved into the demo's /24 and its ports set."""
    raw: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    raw["xds"]["listen"] = f"{addresses.services}:{addresses.xds_port}"
    raw["debug"]["listen"] = f"{addresses.services}:{addresses.debug_port}"
    for cluster in raw["kafka_clusters"]:
        cluster["loopback_ip"] = addresses.same_host(cluster["loopback_ip"])
    return raw
