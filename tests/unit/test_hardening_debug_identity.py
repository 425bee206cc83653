"""Identity patterns (`*` = any run of characters) match in linear time, in the access policy and
in `/debug/streams?identity=`: no pattern can stall a serving event loop."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.protocol_world import World
from tests.unit.test_debug_streams import _fleet
from xds.serving.access import AccessPolicy, IdentityPattern
from xds.serving.reports import MAX_IDENTITY_QUERY_CHARS, MAX_IDENTITY_QUERY_STARS, StreamQuery, report

# Nine stars took a backtracking regular expression 4 s on one identity; thirteen, an hour.
_HOSTILE = "*a" * 13 + "b"
_VICTIM = "a" * 60


def _reference(pattern: str, identity: str) -> bool:
    """The meaning of a pattern, as the regular expression it used to be compiled into."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, identity, re.DOTALL) is not None


@given(st.text("ab/*", max_size=8), st.text("ab/", max_size=10))
def test_a_pattern_means_what_the_regular_expression_meant(pattern, identity):
    assert IdentityPattern(pattern).matches(identity) == _reference(pattern, identity)


def test_many_stars_match_in_linear_time_in_the_access_policy():
    policy = AccessPolicy([(_HOSTILE, ["kafka-a"]), ("spiffe://prod/*", ["kafka-b"])])
    started = time.perf_counter()
    assert policy.allowed(_VICTIM) == frozenset()
    assert policy.allowed("a" * 5000 + "b") == {"kafka-a"}
    assert time.perf_counter() - started < 0.1


def test_many_stars_match_in_linear_time_in_a_stream_query():
    views = World().views({1: "10.0.0.1"})
    streams = _fleet(views)
    for stream in streams:
        stream.identity = _VICTIM
    started = time.perf_counter()
    body = report(streams, views, StreamQuery(identity=_HOSTILE))
    assert body["matched"] == 0
    assert time.perf_counter() - started < 1.0  # a thousand streams


@pytest.mark.parametrize(
    "identity",
    ["*" * (MAX_IDENTITY_QUERY_STARS + 1), "a" * (MAX_IDENTITY_QUERY_CHARS + 1)],
)
def test_a_query_pattern_beyond_the_caps_is_refused(identity):
    with pytest.raises(ValueError, match="identity"):
        StreamQuery(identity=identity)
