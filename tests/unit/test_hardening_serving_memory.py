"""What one admitted sidecar can make a worker hold is bounded by the limits, not by what it sends.

A hostile sidecar's requests go through what a worker keeps (the request cache, the stream's
protocol state, the snapshot's memo of views), as the transport hands them over, and the memory
still allocated afterwards (tracemalloc) is compared with the limits: names per subscription, the
request cache's bytes and the memo's bytes. Before these limits, 16 Delta requests of 25,000
invented names held 361 MiB, 32 subscribe/unsubscribe cycles 411 MiB, 32 SotW changes 194 MiB.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.support.protocol_world import EDS, NOW, World, name
from xds.config.model import XdsSettings
from xds.serving.protocol import (
    Delta,
    DeltaRequest,
    MalformedRequest,
    RequestParser,
    Sotw,
    SotwRequest,
    StreamProtocol,
    TooManyNames,
    Views,
)
from xds.serving.protocol.messages import MAX_NAME_BYTES
from xds.shared import wire

MiB = 1024 * 1024
LIMIT = XdsSettings().max_resource_names  # what every stream gets by default
CACHE_BYTES = 4 * MiB  # small limits keep the test fast; the bound is stated in them
MEMO_BYTES = 4 * MiB
# One stream's own state, and the request being handled: two subscriptions' worth of names.
STREAM_BYTES = 2 * LIMIT * 200


@dataclass
class Worker:
    """What a serving process keeps for its streams, fed as the transport feeds it."""

    parser: RequestParser
    views: Views
    stream: StreamProtocol
    ended: int = 0

    def sotw(self, names: list[str]) -> None:
        self._receive(self.parser.sotw, _sotw_request(names))

    def delta(self, subscribe: list[str], unsubscribe: list[str] | None = None) -> None:
        self._receive(self.parser.delta, _delta_request(subscribe, unsubscribe or []))

    def _receive(self, parse: Callable[[bytes], SotwRequest | DeltaRequest], raw: bytes) -> None:
        try:
            self.stream.receive(parse(raw), self.views, NOW)
        except TooManyNames:
            self.ended += 1  # the transport ends the stream; the sidecar reconnects
            self.stream = StreamProtocol(type(self.stream.variant)(), max_names=LIMIT)


@pytest.fixture
def worker() -> Worker:
    views = World().views({broker: f"10.0.0.{broker}" for broker in range(1, 31)})
    return Worker(RequestParser(max_bytes=CACHE_BYTES), views, StreamProtocol(Delta(), max_names=LIMIT))


def _held_after(worker: Worker, hostile: Iterator[None]) -> int:
    """Bytes still allocated once every hostile request was handled (the worker keeps them)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in hostile:
            pass
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _sotw_request(names: list[str]) -> bytes:
    """A DiscoveryRequest for endpoints, encoded fast (the typed model takes seconds for 25,000 names)."""
    return b"".join(wire.string(3, text) for text in names) + wire.string(4, EDS)


def _delta_request(subscribe: list[str], unsubscribe: list[str]) -> bytes:
    return b"".join(
        (
            wire.string(2, EDS),
            *(wire.string(3, text) for text in subscribe),
            *(wire.string(4, text) for text in unsubscribe),
        )
    )


def _invented(round_: int, count: int) -> list[str]:
    # One real name, so a response goes out and then waits for an ACK that never comes.
    return [name(1), *(f"invented-{round_}-{index}" for index in range(count - 1))]


BOUND = CACHE_BYTES + MEMO_BYTES + STREAM_BYTES


def _views_with_memo_limit(worker: Worker) -> None:
    worker.views = Views(worker.views.snapshot, worker.views.nonces, max_memo_bytes=MEMO_BYTES)


def test_delta_requests_of_25000_invented_names_hold_no_more_than_the_limits(worker):
    _views_with_memo_limit(worker)

    def hostile() -> Iterator[None]:
        for round_ in range(12):
            worker.delta(_invented(round_, 25_000))
            yield

    held = _held_after(worker, hostile())
    assert worker.ended == 12  # each request is beyond the limit: its stream ends
    assert held < BOUND, f"{held / MiB:.1f} MiB held"
    assert worker.parser.held_bytes <= CACHE_BYTES and worker.views.held_bytes <= MEMO_BYTES


def test_delta_subscription_churn_holds_no_more_than_the_limits(worker):
    _views_with_memo_limit(worker)

    def hostile() -> Iterator[None]:
        previous: list[str] = []
        for round_ in range(12):
            names = _invented(round_, LIMIT)
            worker.delta(names, previous)
            previous = names[1:]
            yield

    held = _held_after(worker, hostile())
    assert worker.ended == 0  # at the limit, not beyond it
    assert held < BOUND, f"{held / MiB:.1f} MiB held"
    assert worker.parser.held_bytes <= CACHE_BYTES and worker.views.held_bytes <= MEMO_BYTES


def test_sotw_subscription_changes_hold_no_more_than_the_limits(worker):
    _views_with_memo_limit(worker)
    worker.stream = StreamProtocol(Sotw(), max_names=LIMIT)

    def hostile() -> Iterator[None]:
        for round_ in range(16):
            worker.sotw(_invented(round_, LIMIT))
            yield

    held = _held_after(worker, hostile())
    assert worker.ended == 0
    assert held < BOUND, f"{held / MiB:.1f} MiB held"
    assert worker.parser.held_bytes <= CACHE_BYTES and worker.views.held_bytes <= MEMO_BYTES


def test_the_request_cache_counts_the_parsed_copies_against_its_bound():
    parser = RequestParser(max_bytes=CACHE_BYTES)

    def requests() -> Iterator[None]:
        for round_ in range(40):
            names = [f"invented-{round_}-{index}" for index in range(2_000)]
            parser.sotw(_sotw_request(names))
            yield

    held = _held_after(Worker(parser, World().views({}), StreamProtocol(Sotw())), requests())
    assert held < CACHE_BYTES * 1.25, f"{held / MiB:.1f} MiB held"
    assert parser.held_bytes <= CACHE_BYTES


def test_a_resource_name_longer_than_any_served_is_refused():
    parser = RequestParser()
    too_long = "x" * (MAX_NAME_BYTES + 1)
    with pytest.raises(MalformedRequest, match=f"longer than {MAX_NAME_BYTES}"):
        parser.delta(_delta_request([too_long], []))
    with pytest.raises(MalformedRequest, match=f"longer than {MAX_NAME_BYTES}"):
        parser.sotw(_sotw_request([too_long]))
    assert parser.sotw(_sotw_request(["x" * MAX_NAME_BYTES])).resource_names == {"x" * MAX_NAME_BYTES}
