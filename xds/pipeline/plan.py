"""The address plan: which loopback IP and port every Kafka cluster and broker gets.

A pure function of the config and the topology, so every kafka-xds replica and every broker's
start-up script compute the same answer. It also checks what brokers advertise to clients against
the plan: a broker that advertises something else is reachable only around the sidecar. A broker
whose upstream is one of the plan's own addresses (a loopback IP of the plan, kafka-xds' listen
addresses) is left out: its sidecar would connect to itself, over and over, until fds ran out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from xds.config.model import Config, KafkaCluster
from xds.pipeline.grace import GraceState
from xds.pipeline.resolve import Resolution
from xds.pipeline.topology import Broker, SkippedRegistration, Topology
from xds.shared.addresses import HostPort, is_ip, parse_listen


class BrokerStatus(StrEnum):
    LIVE = "live"
    IN_GRACE = "in_grace"  # registration gone: no endpoint, listener kept until remove_at
    WAITING = "waiting"  # planned, not served yet: a source has not completed its first sync


@dataclass(frozen=True, slots=True)
class PlannedBroker:
    cluster: str
    broker_id: int
    listen: HostPort  # the loopback address the sidecar listens on for this broker
    upstream: HostPort | None  # where the sidecar forwards to (an IP); None while in grace
    rack: str | None
    status: BrokerStatus = BrokerStatus.LIVE
    remove_at: float | None = None
    server_name: str | None = None  # the broker's DNS name when it registered one: the TLS SNI


@dataclass(frozen=True, slots=True)
class PlanMismatch:
    """A broker advertises a client address that is not its planned loopback address."""

    cluster: str
    broker_id: int
    listener: str
    advertised: HostPort | None
    planned: HostPort

    def describe(self) -> str:
        shown = str(self.advertised) if self.advertised else "nothing"
        return (
            f"broker {self.broker_id} advertises {shown} on listener {self.listener}, "
            f"the plan says {self.planned}: its clients bypass the sidecar"
        )


@dataclass(frozen=True, slots=True)
class OwnAddresses:
    """Where the plan's sidecars and kafka-xds itself listen: never an upstream."""

    loopback_ips: Mapping[str, str]  # each Kafka cluster's loopback IP -> that cluster
    listens: Mapping[HostPort, str]  # kafka-xds' own listen addresses -> their setting

    @classmethod
    def of(cls, config: Config) -> OwnAddresses:
        listens: dict[HostPort, str] = {}
        for key, listen in (("xds.listen", config.xds.listen), ("debug.listen", config.debug.listen)):
            host, port = parse_listen(listen)
            host = "127.0.0.1" if host == "localhost" else host
            if is_ip(host):  # another name is not this host's to check
                listens[HostPort(host, port)] = key
        return cls({str(cluster.loopback_ip): cluster.name for cluster in config.kafka_clusters}, listens)

    def refusal(self, upstream: HostPort) -> str | None:
        """Why a sidecar must not forward to `upstream` (an IP), or None."""
        if not upstream.is_ip:
            return None
        ip = ipaddress.ip_address(upstream.host)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.10 reaches 127.0.0.10
        if ip.is_unspecified:
            return f"upstream {upstream} is no address to connect to (it reaches this host)"
        owner = self.loopback_ips.get(str(ip))
        if owner is not None:
            return (
                f"upstream {upstream} is on {owner}'s loopback IP, where sidecars listen: "
                "the sidecar would connect to itself; refused"
            )
        for listen, key in self.listens.items():
            wildcard = ipaddress.ip_address(listen.host).is_unspecified and ip.is_loopback
            if listen.port == upstream.port and (wildcard or ipaddress.ip_address(listen.host) == ip):
                return f"upstream {upstream} is kafka-xds' own {key} ({listen}): refused"
        return None


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    cluster: str
    loopback_ip: str
    brokers: tuple[PlannedBroker, ...]
    mismatches: tuple[PlanMismatch, ...]
    skipped: tuple[SkippedRegistration, ...]


def plan_cluster(
    cluster: KafkaCluster,
    topology: Topology,
    grace: GraceState,
    resolved: Mapping[str, Resolution] | None = None,
    own: OwnAddresses | None = None,
) -> ClusterPlan:
    """Plan one cluster; `resolved` holds the addresses of upstream hosts that are DNS names, `own`
    the addresses no upstream may be (without it: this cluster's loopback IP)."""
    resolved = resolved or {}
    own = own or OwnAddresses({str(cluster.loopback_ip): cluster.name}, {})
    loopback_ip = str(cluster.loopback_ip)
    planned: list[PlannedBroker] = []
    mismatches: list[PlanMismatch] = []
    skipped = list(topology.skipped)
    for broker in topology.brokers:
        port = cluster.broker_port(broker.broker_id)
        if port is None:
            skipped.append(_skip(cluster, broker, cluster.no_port_reason(broker.broker_id)))
            continue
        upstream = broker.endpoint(cluster.upstream_listener)
        if upstream is None:
            names = ", ".join(name for name, _ in broker.listeners) or "none"
            skipped.append(
                _skip(cluster, broker, f"no {cluster.upstream_listener!r} listener registered (has: {names})")
            )
            continue
        if cluster.upstream_port is not None:
            upstream = HostPort(upstream.host, cluster.upstream_port)
        if not 1 <= upstream.port <= 65535:  # a source's bug must not make Envoy refuse every cluster
            skipped.append(_skip(cluster, broker, f"upstream port {upstream.port} is outside 1..65535"))
            continue
        server_name = None
        if not upstream.is_ip:  # EDS endpoints must be IP addresses: use the name's resolved address
            resolution = resolved.get(upstream.host)
            if resolution is None or resolution.address is None:
                reason = (
                    resolution.error
                    if resolution and resolution.error
                    else f"{upstream.host} not resolved yet"
                )
                skipped.append(_skip(cluster, broker, reason))
                continue
            server_name, upstream = upstream.host, HostPort(resolution.address, upstream.port)
        refusal = own.refusal(upstream)
        if refusal is not None:
            resolves = f"{server_name} resolves to {upstream.host}: " if server_name else ""
            skipped.append(_skip(cluster, broker, resolves + refusal))
            continue
        listen = HostPort(loopback_ip, port)
        planned.append(
            PlannedBroker(
                cluster.name, broker.broker_id, listen, upstream, broker.rack, server_name=server_name
            )
        )
        if cluster.client_listener is not None:
            advertised = broker.endpoint(cluster.client_listener)
            if advertised != listen:
                mismatches.append(
                    PlanMismatch(cluster.name, broker.broker_id, cluster.client_listener, advertised, listen)
                )
    live_ids = {broker.broker_id for broker in planned}
    for gone in grace.departed:
        port = cluster.broker_port(gone.broker.broker_id)
        if port is None or gone.broker.broker_id in live_ids:
            continue
        if gone.broker.endpoint(cluster.upstream_listener) is None:
            continue  # it was never planned, so it has no listener to keep
        planned.append(
            PlannedBroker(
                cluster.name,
                gone.broker.broker_id,
                HostPort(loopback_ip, port),
                None,
                gone.broker.rack,
                BrokerStatus.IN_GRACE,
                gone.remove_at,
                server_name=_server_name(gone.broker.endpoint(cluster.upstream_listener)),
            )
        )
    planned.sort(key=lambda broker: broker.broker_id)
    return ClusterPlan(cluster.name, loopback_ip, tuple(planned), tuple(mismatches), tuple(skipped))


def waiting_plan(cluster: KafkaCluster, topology: Topology, own: OwnAddresses | None = None) -> ClusterPlan:
    """The plan a cluster's known brokers will get once every source has synced, every broker
    WAITING: before the first build, where each will be is already known (its port is a function of
    its id); a DNS name upstream is shown as the name, not resolved yet."""
    unresolved = {name: Resolution(name, name, None) for name in upstream_names(cluster, topology)}
    plan = plan_cluster(cluster, topology, GraceState(cluster.removal_grace_seconds), unresolved, own)
    return replace(
        plan, brokers=tuple(replace(broker, status=BrokerStatus.WAITING) for broker in plan.brokers)
    )


def _server_name(upstream: HostPort | None) -> str | None:
    return upstream.host if upstream is not None and not upstream.is_ip else None


def upstream_names(cluster: KafkaCluster, topology: Topology) -> set[str]:
    """The DNS names among the brokers' upstream hosts: what must be resolved before planning."""
    names = set()
    for broker in topology.brokers:
        name = _server_name(broker.endpoint(cluster.upstream_listener))
        if name is not None:
            names.add(name)
    return names


def _skip(cluster: KafkaCluster, broker: Broker, reason: str) -> SkippedRegistration:
    return SkippedRegistration(f"{cluster.name}/broker-{broker.broker_id}", reason, broker.broker_id)


PLAN_COLUMNS = ("cluster", "broker_id", "loopback_ip", "port", "upstream", "status")


def plan_rows(plans: Iterable[ClusterPlan]) -> list[dict[str, str | int]]:
    """The plan as rows a broker start-up script can read: which address each broker advertises."""
    return [
        {
            "cluster": broker.cluster,
            "broker_id": broker.broker_id,
            "loopback_ip": broker.listen.host,
            "port": broker.listen.port,
            "upstream": str(broker.upstream) if broker.upstream else "-",
            "status": broker.status.value,
        }
        for plan in plans
        for broker in plan.brokers
    ]


def rows_for_ids(
    cluster: KafkaCluster, broker_ids: Iterable[int], plan: ClusterPlan | None = None
) -> list[dict[str, str | int]]:
    """Plan rows for these broker ids, whether or not the brokers exist yet: a broker's address is a
    function of its id, so a start-up script can ask before its broker registers. Brokers in `plan`
    show where they run; the others are `planned`. ValueError for an id that has no port."""
    known = {row["broker_id"]: row for row in plan_rows([plan])} if plan is not None else {}
    rows: list[dict[str, str | int]] = []
    for broker_id in broker_ids:
        port = cluster.broker_port(broker_id)
        if port is None:
            raise ValueError(f"{cluster.name}: {cluster.no_port_reason(broker_id)}")
        rows.append(
            known.get(broker_id)
            or {
                "cluster": cluster.name,
                "broker_id": broker_id,
                "loopback_ip": str(cluster.loopback_ip),
                "port": port,
                "upstream": "-",
                "status": "planned",
            }
        )
    return rows


def format_plan_table(rows: Iterable[Mapping[str, str | int]]) -> str:
    lines = ["\t".join(PLAN_COLUMNS)]
    lines.extend("\t".join(str(row[column]) for column in PLAN_COLUMNS) for row in rows)
    return "\n".join(lines) + "\n"
