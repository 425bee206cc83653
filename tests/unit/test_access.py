"""Who a sidecar is (its certificate's SANs) and which Kafka clusters the access policy lets it see."""

from __future__ import annotations

import grpc
import pytest

from tests.support.protocol_world import CDS, NOW, World, sotw_stream
from tests.support.xds_wire import sotw_request as request
from xds.serving.access import AccessPolicy, Refusal, admit, identity_of
from xds.serving.protocol import Sent

PAYMENTS = "spiffe://prod/ns/payments/*"
ANALYTICS = "spiffe://prod/ns/analytics/*"


def _policy() -> AccessPolicy:
    return AccessPolicy(
        [
            (PAYMENTS, ["kafka-a"]),
            (ANALYTICS, ["kafka-a", "kafka-b"]),
            ("spiffe://prod/ns/payments/sa/ledger", ["kafka-c"]),
        ]
    )


def test_the_uri_san_is_the_identity_even_when_there_is_a_dns_san():
    context = {"peer_uri": [b"spiffe://prod/ns/payments/sa/app"], "peer_dns": [b"app.payments.svc"]}
    assert identity_of(context) == "spiffe://prod/ns/payments/sa/app"


def test_without_a_uri_san_the_dns_san_is_the_identity():
    assert identity_of({"peer_dns": [b"app.payments.svc", b"other.svc"]}) == "app.payments.svc"


def test_a_certificate_with_neither_san_has_no_identity():
    assert identity_of({"x509_common_name": [b"app"], "peer_uri": [b" "]}) is None


def test_a_star_matches_any_run_of_characters_slashes_included():
    policy = _policy()
    assert policy.allowed("spiffe://prod/ns/payments/sa/app") == {"kafka-a"}
    assert policy.allowed("spiffe://prod/ns/payments/") == {"kafka-a"}  # an empty run
    assert policy.allowed("spiffe://prod/ns/payments/a/b/c") == {"kafka-a"}


@pytest.mark.parametrize(
    "identity",
    [
        "spiffe://prod/ns/payments",  # the pattern's slash is literal
        "xspiffe://prod/ns/payments/sa/app",  # anchored at the start
        "spiffe://prod/ns/paymentsX/sa/app",
        "spiffe://staging/ns/payments/sa/app",
    ],
)
def test_an_identity_no_rule_matches_is_allowed_nothing(identity):
    assert _policy().allowed(identity) == frozenset()


def test_a_pattern_without_a_star_is_exact():
    policy = AccessPolicy([("spiffe://prod/ns/a/sa/x", ["kafka-a"])])
    assert policy.allowed("spiffe://prod/ns/a/sa/x") == {"kafka-a"}
    assert policy.allowed("spiffe://prod/ns/a/sa/xy") == frozenset()


def test_characters_that_mean_something_in_regular_expressions_are_literal():
    policy = AccessPolicy([("app.payments.svc", ["kafka-a"]), ("(a|b)+", ["kafka-b"])])
    assert policy.allowed("app.payments.svc") == {"kafka-a"}
    assert policy.allowed("appXpayments.svc") == frozenset()
    assert policy.allowed("(a|b)+") == {"kafka-b"}
    assert policy.allowed("ab") == frozenset()


def test_an_identity_gets_the_union_of_every_rule_it_matches():
    assert _policy().allowed("spiffe://prod/ns/payments/sa/ledger") == {"kafka-a", "kafka-c"}


def test_identities_allowed_the_same_clusters_get_the_very_same_set():
    policy = _policy()
    first = policy.allowed("spiffe://prod/ns/payments/sa/app")
    second = policy.allowed("spiffe://prod/ns/payments/sa/checkout")
    assert first is second


def test_two_sidecars_matching_the_same_pattern_share_one_encoded_response():
    """Per-sidecar policies cost no per-sidecar work: equal scopes share views and bodies."""
    world = World()
    views = world.views({1: "10.0.0.1"}, extra={"kafka-b": {1: "10.0.1.1"}})
    policy = _policy()
    first = sotw_stream(policy.allowed("spiffe://prod/ns/payments/sa/app"))
    second = sotw_stream(policy.allowed("spiffe://prod/ns/payments/sa/checkout"))
    (one,) = first.receive(request(CDS), views, NOW)
    (two,) = second.receive(request(CDS), views, NOW)
    assert isinstance(one, Sent) and isinstance(two, Sent)
    assert one.body is two.body
    assert one.body.resources == 1  # kafka-a's broker only


def test_a_sidecar_allowed_more_gets_a_response_of_its_own():
    world = World()
    views = world.views({1: "10.0.0.1"}, extra={"kafka-b": {1: "10.0.1.1"}})
    policy = _policy()
    payments = sotw_stream(policy.allowed("spiffe://prod/ns/payments/sa/app"))
    analytics = sotw_stream(policy.allowed("spiffe://prod/ns/analytics/sa/report"))
    (one,) = payments.receive(request(CDS), views, NOW)
    (two,) = analytics.receive(request(CDS), views, NOW)
    assert isinstance(one, Sent) and isinstance(two, Sent)
    assert (one.body.resources, two.body.resources) == (1, 2)


def test_without_a_policy_a_verified_sidecar_is_admitted_to_everything():
    assert admit("spiffe://prod/ns/anyone/sa/x", None) is None
    assert admit(None, None) is None


def test_an_identity_allowed_nothing_is_refused_naming_it():
    refusal = admit("spiffe://prod/ns/marketing/sa/web", _policy())
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.code) == ("permission_denied", grpc.StatusCode.PERMISSION_DENIED)
    assert "'spiffe://prod/ns/marketing/sa/web'" in refusal.message


def test_under_a_policy_a_certificate_without_an_identity_is_refused_saying_so():
    refusal = admit(None, _policy())
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.code) == ("unauthenticated", grpc.StatusCode.UNAUTHENTICATED)
    assert "URI SAN" in refusal.message and "DNS SAN" in refusal.message


def test_an_allowed_identity_is_admitted_to_its_clusters():
    assert admit("spiffe://prod/ns/analytics/sa/x", _policy()) == frozenset({"kafka-a", "kafka-b"})
