"""JSON views of pipeline state for the debug server. Private key material never leaves here."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from xds.pipeline.plan import BrokerStatus, ClusterPlan, PlannedBroker
from xds.pipeline.snapshot import Snapshot
from xds.pipeline.topology import Topology
from xds.shared.resource_types import SHORT_TYPE_NAMES

# Fields of Envoy's TLS messages (Secret, TlsCertificate) that may hold key material inline: a
# private key, its password, a PKCS#12 bundle, a generic secret, session ticket keys. kafka-xds only
# ever names files there, but whatever a resource holds, inline data under them is never shown.
_SECRET_FIELDS = frozenset(
    {
        "privateKey",
        "private_key",
        "password",
        "pkcs12",
        "genericSecret",
        "generic_secret",
        "sessionTicketKeys",
        "session_ticket_keys",
    }
)
_INLINE_KEYS = frozenset({"inlineBytes", "inline_bytes", "inlineString", "inline_string"})
REDACTED = "<redacted>"


def redact(value: Any, inside_secret: bool = False) -> Any:
    """Drop inline data under any field that may hold key material; file paths stay (they are not
    secrets)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _SECRET_FIELDS:
                out[key] = redact(item, inside_secret=True)
            elif inside_secret and key in _INLINE_KEYS:
                out[key] = REDACTED
            else:
                out[key] = redact(item, inside_secret)
        return out
    if isinstance(value, list):
        return [redact(item, inside_secret) for item in value]
    return value


def render_snapshot_chunks(
    snapshot: Snapshot, type_filter: str | None = None, name_filter: str | None = None
) -> Iterator[str]:
    """The snapshot as JSON text in pieces, one resource at a time, so large snapshots stream.

    `type_filter` takes a type URL or its short name (secrets, clusters, endpoints, listeners)."""
    # Imported here: the typed model costs well over half a second of import time, which a
    # replica's start does not need to pay.
    from xds.pipeline.resources.typed import decoded

    versions = {
        SHORT_TYPE_NAMES.get(type_url, type_url): version for type_url, version in snapshot.versions().items()
    }
    yield '{"versions":' + json.dumps(versions) + ',"types":{'
    first_type = True
    for type_url, typed in snapshot.by_type.items():
        short = SHORT_TYPE_NAMES.get(type_url, type_url)
        if type_filter and type_filter not in (type_url, short):
            continue
        yield ("" if first_type else ",") + json.dumps(short) + ":"
        yield '{"type_url":' + json.dumps(type_url) + ',"version":' + json.dumps(typed.version)
        yield ',"resources":{'
        first_type, first_resource = False, True
        for name, resource in typed.resources.items():
            if name_filter and name != name_filter:
                continue
            body = {"version": resource.version, "resource": redact(decoded(resource).to_dict())}
            yield ("" if first_resource else ",") + json.dumps(name) + ":" + json.dumps(body)
            first_resource = False
        yield "}}"
    yield "}}"


def render_snapshot(
    snapshot: Snapshot, type_filter: str | None = None, name_filter: str | None = None
) -> Any:
    return json.loads("".join(render_snapshot_chunks(snapshot, type_filter, name_filter)))


def render_topology(
    topologies: Mapping[str, Topology],
    plans: Mapping[str, ClusterPlan],
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Per Kafka cluster: source state, brokers as registered and as planned, mismatches, skips."""
    now = clock()
    clusters: dict[str, Any] = {}
    for name, topology in topologies.items():
        plan = plans.get(name)
        planned = {broker.broker_id: broker for broker in plan.brokers} if plan else {}
        brokers = []
        for broker in topology.brokers:
            entry: dict[str, Any] = {
                "id": broker.broker_id,
                "rack": broker.rack,
                "listeners": {listener: str(endpoint) for listener, endpoint in broker.listeners},
                "registered_at_ms": broker.registered_at_ms,
            }
            if broker.broker_id in planned:
                entry.update(_planned(planned[broker.broker_id]))
            brokers.append(entry)
        in_grace = [_planned(broker) for broker in planned.values() if broker.status is BrokerStatus.IN_GRACE]
        clusters[name] = {
            "source": {
                "kind": topology.source_kind,
                "state": topology.state.value,
                "stale_since": topology.stale_since,
                "stale_seconds": round(now - topology.stale_since, 1) if topology.stale_since else None,
                "error": topology.error,
                "cluster_id": topology.cluster_id,
            },
            "loopback_ip": plan.loopback_ip if plan else None,
            "brokers": brokers,
            "in_removal_grace": in_grace,
            "plan_mismatches": [mismatch.describe() for mismatch in plan.mismatches] if plan else [],
            "skipped": [
                {"where": skip.where, "broker_id": skip.broker_id, "reason": skip.reason}
                for skip in (plan.skipped if plan else topology.skipped)
            ],
        }
    return {"clusters": clusters}


def _planned(broker: PlannedBroker) -> dict[str, Any]:
    return {
        "id": broker.broker_id,
        "planned": str(broker.listen),
        "upstream": str(broker.upstream) if broker.upstream else None,
        "server_name": broker.server_name,
        "status": broker.status.value,
        "remove_at": broker.remove_at,
    }
