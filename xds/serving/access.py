"""Who a sidecar is (its verified client certificate) and which Kafka clusters it may see.

A sidecar's identity is the first URI SAN (e.g. a SPIFFE id) of the client certificate gRPC
verified against `xds.tls.client_ca_file`, or else its first DNS SAN; the node id a sidecar sends
is its own claim and is never used for access. `AccessPolicy` maps identities to the clusters
their rules allow (the union over every matching rule); the result is the stream's `scope`, one
frozenset per distinct allowed set, so sidecars allowed the same share views and encoded bodies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from xds.serving.settings import AccessRuleSettings

_CACHE_LIMIT = 10_000  # distinct identities remembered; beyond that they are matched again

# The properties gRPC's TLS puts in a call's auth context for the verified peer certificate.
_URI_PROPERTY = "peer_uri"
_DNS_PROPERTY = "peer_dns"


def identity_of(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The verified peer's identity: its first URI SAN, or else its first DNS SAN; None without."""
    for prop in (_URI_PROPERTY, _DNS_PROPERTY):
        for value in auth_context.get(prop, ()):
            text = value.decode("utf-8", "replace").strip()
            if text:
                return text
    return None


class IdentityPattern:
    """An identity, exact or with `*` for any run of characters (slashes included, or none).

    Matched segment by segment, never by backtracking: the first literal segment must start the
    identity and the last end it, each one between is found left to right at its earliest place
    (the earliest is always as good as any later one), so a match costs time linear in the
    identity for any number of stars. A regular expression of `.*`s took exponential time."""

    __slots__ = ("_segments", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._segments = tuple(text.split("*"))

    def matches(self, identity: str) -> bool:
        segments = self._segments
        if len(segments) == 1:
            return identity == self.text
        first, *middle, last = segments
        if len(identity) < len(first) + len(last) or not identity.startswith(first):
            return False
        position, end = len(first), len(identity) - len(last)
        if not identity.endswith(last):
            return False
        for segment in middle:
            found = identity.find(segment, position, end)
            if found < 0:
                return False
            position = found + len(segment)
        return True


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: IdentityPattern
    kafka_clusters: frozenset[str]


class AccessPolicy:
    """The `access` section: which Kafka clusters each identity may see."""

    def __init__(self, rules: Iterable[tuple[str, Iterable[str]]]) -> None:
        self._rules = tuple(
            _Rule(IdentityPattern(identity), frozenset(clusters)) for identity, clusters in rules
        )
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        self._allowed: dict[str, frozenset[str]] = {}

    def allowed(self, identity: str) -> frozenset[str]:
        """The clusters `identity` may see (empty: none); equal sets are the same object."""
        found = self._allowed.get(identity)
        if found is None:
            union = frozenset().union(
                *(rule.kafka_clusters for rule in self._rules if rule.pattern.matches(identity))
            )
            found = self._interned.setdefault(union, union)
            if len(self._allowed) >= _CACHE_LIMIT:
                self._allowed.clear()
            self._allowed[identity] = found
        return found


def access_policy(rules: Sequence[AccessRuleSettings] | None) -> AccessPolicy | None:
    """The policy of a config's `access` section; None without one (every sidecar sees everything)."""
    if rules is None:
        return None
    return AccessPolicy((rule.identity, rule.kafka_clusters) for rule in rules)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a verified sidecar gets no stream: a `kafka_xds_streams_refused_total` reason, the gRPC
    status and the message the sidecar (and the log) is given."""

    reason: str
    code: grpc.StatusCode
    message: str


def admit(identity: str | None, policy: AccessPolicy | None) -> frozenset[str] | Refusal | None:
    """The stream's scope for a sidecar with a verified certificate: None (every cluster) without a
    policy, else the clusters the policy allows; a Refusal when that is none or there is no identity."""
    if policy is None:
        return None
    if identity is None:
        return Refusal(
            "unauthenticated",
            grpc.StatusCode.UNAUTHENTICATED,
            "the client certificate has no identity kafka-xds can use: give it a URI SAN "
            "(e.g. a SPIFFE id) or a DNS SAN",
        )
    allowed = policy.allowed(identity)
    if not allowed:
        return Refusal(
            "permission_denied",
            grpc.StatusCode.PERMISSION_DENIED,
            f"identity {identity!r} may see no Kafka cluster: no rule in the access policy allows it one",
        )
    return allowed
