"""Envoy-like ADS streams for the load generator.

A SotW stream does what Envoy does on `StreamAggregatedResources`: CDS and LDS wildcard requests
(the first carrying the Node), an ACK for every response (its version and nonce, the same names),
and after every CDS response an EDS subscription to exactly the clusters in it. A delta stream does
the same on `DeltaAggregatedResources`. A broken stream is retried on the same connection with
Envoy's jittered exponential backoff. Times are `time.monotonic()`, one clock for every process
of the machine.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

from grpc import aio

from benchmarks.ads_wire import (
    Resources,
    ResponseReader,
    SotwRequests,
    delta_request,
    node,
)
from xds.shared.resource_types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE

_SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
METHODS = {"sotw": _SERVICE + "StreamAggregatedResources", "delta": _SERVICE + "DeltaAggregatedResources"}
CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # every channel its own TCP connection, as one Envoy each
    ("grpc.max_receive_message_length", -1),
]
# grpc.aio's INTERNAL for a write that lost the race with the server ending the stream; the status
# the server sent is gone by then, so it is counted as what it is.
_CORE_WRITE_ERROR = "Internal error from Core"


@dataclass(frozen=True, slots=True)
class Move:
    """A broker moved: a stream has seen it once its cluster's endpoints carry the new IP."""

    index: int
    cluster: str
    ip: str
    deadline: float  # monotonic: report what was seen by then


class _Backoff:
    """Envoy's JitteredExponentialBackOffStrategy: uniform in [0, base * (2^n - 1)), capped."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self._base, self._cap, self._retry = base, cap, 1

    def next(self) -> float:
        ceiling = self._base * ((1 << self._retry) - 1)
        if ceiling <= self._cap:
            self._retry += 1
        return min(random.uniform(0, ceiling), self._cap)

    def reset(self) -> None:
        self._retry = 1


class StreamHost(Protocol):
    """What a stream reports to, and shares with the other streams of its load process."""

    reader: ResponseReader
    requests: SotwRequests
    unexpected: int  # resources or types nobody subscribed to

    def lost(self, code: str, details: str | None, connection: int) -> None: ...
    def reconnected(self) -> None: ...
    def synced_one(self) -> None: ...
    def seen(self) -> None: ...


@dataclass
class _Tally:
    """What one stream measured."""

    first_attempt_at: float | None = None
    synced_at: float | None = None
    first_error_at: float | None = None
    seen_at: float | None = None  # the current move
    move_bytes: int = 0
    move_responses: int = 0


class AdsStream:
    """The transport-independent half: the run loop, sync and move bookkeeping."""

    api = ""

    def __init__(self, index: int, load: StreamHost) -> None:
        self.node = node(f"load-{index}", "load")
        self.tally = _Tally()
        self._load = load
        self._cds_acked = self._lds_acked = False
        self._eds_names: tuple[str, ...] = ()
        self._eds_missing: set[str] | None = None  # None: nothing of the subscription received yet
        self._watch: Move | None = None

    @property
    def synced(self) -> bool:
        return self.tally.synced_at is not None

    async def run(self, channel: aio.Channel, connection: int, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        method: Any = channel.stream_stream(METHODS[self.api])
        backoff = _Backoff()
        self.tally.first_attempt_at = time.monotonic()
        while True:
            call: Any = method()
            try:
                for request in self._opening():
                    await call.write(request)
                while True:
                    data = await call.read()
                    if data is aio.EOF:
                        self._load.lost((await call.code()).name, await call.details(), connection)
                        self._failed()
                        break
                    backoff.reset()
                    for request in self._answer(data):
                        await call.write(request)
                    self._check_synced()
            except asyncio.CancelledError:
                call.cancel()
                raise
            except Exception as err:  # counted by status; never the end of this sidecar
                self._load.lost(*await _status(call, err), connection)
                self._failed()
            await asyncio.sleep(backoff.next())
            self._load.reconnected()

    def _failed(self) -> None:
        if self.tally.first_error_at is None:
            self.tally.first_error_at = time.monotonic()

    def arm(self, move: Move) -> None:
        self._watch = move
        self.tally.seen_at = None
        self.tally.move_bytes = self.tally.move_responses = 0

    def _opening(self) -> list[bytes]:
        raise NotImplementedError

    def _answer(self, data: bytes) -> list[bytes]:
        raise NotImplementedError

    def _received(self, size: int) -> None:
        self.tally.move_bytes += size
        self.tally.move_responses += 1

    def _clusters(self, names: tuple[str, ...]) -> bool:
        """A CDS response listed these clusters; True when the EDS subscription changes."""
        names = tuple(sorted(names))
        self._cds_acked = True
        if names == self._eds_names:
            return False
        self._eds_names, self._eds_missing = names, None
        return True

    def _endpoints(self, resources: Resources) -> None:
        if self._eds_missing is None:
            self._eds_missing = set() if resources.names == self._eds_names else set(self._eds_names)
        if self._eds_missing:
            self._eds_missing.difference_update(resources.names)
        if resources.names != self._eds_names:
            self._load.unexpected += len(set(resources.names).difference(self._eds_names))
        watch = self._watch
        if watch is not None and self.tally.seen_at is None:
            ips = resources.addresses.get(watch.cluster)
            if ips is not None and watch.ip in ips:
                self.tally.seen_at = time.monotonic()
                self._load.seen()

    def _check_synced(self) -> None:
        if (
            not self.synced
            and self._cds_acked
            and self._lds_acked
            and self._eds_names
            and self._eds_missing is not None
            and not self._eds_missing
        ):
            self.tally.synced_at = time.monotonic()
            self._load.synced_one()


class SotwStream(AdsStream):
    """State of the world: every response is ACKed with its version and nonce and the same names."""

    api = "sotw"

    def __init__(self, index: int, load: StreamHost) -> None:
        super().__init__(index, load)
        self._versions = {CLUSTER_TYPE: "", ENDPOINT_TYPE: "", LISTENER_TYPE: ""}
        self._nonces = dict.fromkeys(self._versions, "")
        self._wildcard = load.requests.subscription(CLUSTER_TYPE, ())
        self._listeners = load.requests.subscription(LISTENER_TYPE, ())
        self._eds: bytes | None = None  # the encoded EDS subscription

    def _opening(self) -> list[bytes]:
        """As Envoy after a (re)connect: every subscription, with the versions it has, no nonce."""
        self._nonces = dict.fromkeys(self._versions, "")
        requests = [self._request(CLUSTER_TYPE, self._wildcard, node_bytes=self.node)]
        if self._eds is not None:
            requests.append(self._request(ENDPOINT_TYPE, self._eds))
        requests.append(self._request(LISTENER_TYPE, self._listeners))
        return requests

    def _request(self, type_url: str, subscription: bytes, node_bytes: bytes = b"") -> bytes:
        return SotwRequests.request(
            subscription, self._versions[type_url], self._nonces[type_url], node_bytes
        )

    def _answer(self, data: bytes) -> list[bytes]:
        self._received(len(data))
        response = self._load.reader.sotw(data)
        type_url = response.type_url
        self._versions[type_url], self._nonces[type_url] = response.version_info, response.nonce
        if type_url == CLUSTER_TYPE:
            requests = [self._request(CLUSTER_TYPE, self._wildcard)]
            if self._clusters(response.resources.names):
                self._eds = self._load.requests.subscription(ENDPOINT_TYPE, self._eds_names)
                requests.append(self._request(ENDPOINT_TYPE, self._eds))
            return requests
        if type_url == ENDPOINT_TYPE and self._eds is not None:
            self._endpoints(response.resources)
            return [self._request(ENDPOINT_TYPE, self._eds)]
        if type_url == LISTENER_TYPE:
            self._lds_acked = True
            return [self._request(LISTENER_TYPE, self._listeners)]
        self._load.unexpected += 1
        return []


class DeltaStream(AdsStream):
    """Incremental: ACKs carry only the nonce; subscriptions change by names added and removed."""

    api = "delta"

    def __init__(self, index: int, load: StreamHost) -> None:
        super().__init__(index, load)
        self._have: dict[str, dict[str, str]] = {CLUSTER_TYPE: {}, ENDPOINT_TYPE: {}, LISTENER_TYPE: {}}

    def _opening(self) -> list[bytes]:
        requests = [
            delta_request(
                CLUSTER_TYPE, ["*"], initial_versions=self._have[CLUSTER_TYPE], node_bytes=self.node
            )
        ]
        if self._eds_names:
            requests.append(
                delta_request(ENDPOINT_TYPE, self._eds_names, initial_versions=self._have[ENDPOINT_TYPE])
            )
        requests.append(delta_request(LISTENER_TYPE, ["*"], initial_versions=self._have[LISTENER_TYPE]))
        return requests

    def _answer(self, data: bytes) -> list[bytes]:
        self._received(len(data))
        response = self._load.reader.delta(data)
        type_url = response.type_url
        have = self._have.get(type_url)
        if have is None:
            self._load.unexpected += 1
            return []
        for name in response.removed:
            have.pop(name, None)
        have.update(zip(response.resources.names, response.resources.versions, strict=True))
        requests = [delta_request(type_url, nonce=response.nonce)]
        if type_url == CLUSTER_TYPE:
            before = set(self._eds_names)
            if self._clusters(tuple(have)):
                now = set(self._eds_names)
                for gone in before - now:
                    self._have[ENDPOINT_TYPE].pop(gone, None)
                requests.append(delta_request(ENDPOINT_TYPE, sorted(now - before), sorted(before - now)))
                # what this stream already has of the new subscription does not need to come again
                self._eds_missing = set(now) - self._have[ENDPOINT_TYPE].keys()
        elif type_url == ENDPOINT_TYPE:
            self._endpoints(response.resources)
        else:
            self._lds_acked = True
        return requests


async def _status(call: Any, err: Exception) -> tuple[str, str | None]:
    """The gRPC status that ended the call, or what failed on this side."""
    if isinstance(err, aio.AioRpcError):
        if err.details() == _CORE_WRITE_ERROR:
            return "WRITE_ON_ENDED_STREAM", "a request written as the server ended the stream (status lost)"
        return err.code().name, err.details()
    if call.done():
        return (await call.code()).name, await call.details()
    call.cancel()
    return f"client {type(err).__name__}", str(err)
