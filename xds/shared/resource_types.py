"""The xDS resource types kafka-xds serves, and what a version is.

Kept free of heavy imports: the serving processes use it without loading the typed Envoy model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
# The order a change is applied in (make before break): the secrets clusters use, clusters, then
# their endpoints, then listeners.
TYPE_ORDER = (SECRET_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE)
SHORT_TYPE_NAMES = {
    SECRET_TYPE: "secrets",
    CLUSTER_TYPE: "clusters",
    ENDPOINT_TYPE: "endpoints",
    LISTENER_TYPE: "listeners",
}
TYPES_BY_SHORT_NAME = {short: type_url for type_url, short in SHORT_TYPE_NAMES.items()}


def set_version(named_versions: Iterable[tuple[str, str]]) -> str:
    """The version of a set of resources from their (name, version) pairs: equal sets, in any order,
    have equal versions, so every replica and every restart computes the same one."""
    # One hash over every line: the digest of one update per line, without a call per resource.
    lines = "".join([f"{name}\0{version}\n" for name, version in sorted(named_versions)])
    return hashlib.sha256(lines.encode()).hexdigest()[:16]
