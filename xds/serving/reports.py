"""`/debug/streams` and the status page's sidecar section, useful at ten thousand sidecars.

A report starts with counts (by sync state, and by the version each sidecar ACKed per type), then
lists sidecars one page at a time, problems first: NACKed, then lagging (a response unanswered for
longer than `LAGGING_SECONDS`), pending, idle, and in sync last. Each serving process reports on its
own streams (`report`); the main process merges the reports of every worker (`merge`). Plain data
in and out (no aiohttp here), so a worker can answer over its pipe.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xds.serving.access import IdentityPattern
from xds.serving.protocol import StreamProtocol, SyncState, Views
from xds.shared.resource_types import SHORT_TYPE_NAMES

if TYPE_CHECKING:
    from xds.serving.transport import StreamInfo

LAGGING_SECONDS = 10.0
MAX_PAGE = 500
# A query's identity pattern is matched against every stream on each serving loop: matching is
# linear (IdentityPattern), and these caps keep one query's cost small whatever it asks.
MAX_IDENTITY_QUERY_CHARS = 512
MAX_IDENTITY_QUERY_STARS = 16
STATES = ("nacked", "lagging", "pending", "idle", "in_sync")
_RANK = {state: rank for rank, state in enumerate(STATES)}


@dataclass(frozen=True, slots=True)
class StreamQuery:
    state: str | None = None  # one of STATES
    node: str | None = None  # exact node id
    stream: str | None = None  # exact stream id
    offset: int = 0
    limit: int = 100
    identity: str | None = None  # verified identity, exact or with `*` as in the access policy

    def __post_init__(self) -> None:
        identity = self.identity
        if identity is not None and (
            len(identity) > MAX_IDENTITY_QUERY_CHARS or identity.count("*") > MAX_IDENTITY_QUERY_STARS
        ):
            raise ValueError(
                f"identity must be at most {MAX_IDENTITY_QUERY_CHARS} characters with at most "
                f"{MAX_IDENTITY_QUERY_STARS} '*'"
            )

    def matches(self, stream: StreamInfo, sync: str) -> bool:
        return (
            (self.state is None or sync == self.state)
            and (self.node is None or stream.node_id == self.node)
            and (self.stream is None or stream.stream_id == self.stream)
            and (
                self.identity is None
                or (stream.identity is not None and _matches(self.identity, stream.identity))
            )
        )


def _matches(pattern: str, identity: str) -> bool:
    return pattern == identity or ("*" in pattern and _pattern(pattern).matches(identity))


@functools.lru_cache(maxsize=64)
def _pattern(text: str) -> IdentityPattern:
    return IdentityPattern(text)  # split once per query text, not once per stream


def report(
    streams: Iterable[StreamInfo], views: Views | None, query: StreamQuery, now: float | None = None
) -> dict[str, Any]:
    """Counts over every stream, and the rows of the page `query` asks for (problems first).

    This runs on a serving event loop, over every stream it serves: per stream only the counts and
    the sort key are computed; whole rows only for the page."""
    now = time.monotonic() if now is None else now
    by_state: Counter[str] = Counter()
    by_version: dict[str, Counter[str]] = {short: Counter() for short in SHORT_TYPE_NAMES.values()}
    matched: list[tuple[tuple[int, float, str], StreamInfo, str, float | None]] = []
    total = 0
    for stream in streams:
        total += 1
        sync, pending = _sync(stream, views, now)
        by_state[sync] += 1
        for type_url, state in stream.protocol.types.items():
            if state.requested:
                by_version[SHORT_TYPE_NAMES[type_url]][state.acked_version or "-"] += 1
        if query.matches(stream, sync):
            matched.append((_order(sync, pending, stream.stream_id), stream, sync, pending))
    matched.sort(key=lambda entry: entry[0])
    window = matched[: query.offset + query.limit]
    return {
        "total": total,
        "by_state": {state: by_state.get(state, 0) for state in STATES},
        "by_version": {name: dict(counts) for name, counts in by_version.items() if counts},
        "matched": len(matched),
        "rows": [_row(stream, sync, pending) for _, stream, sync, pending in window],
    }


def merge(reports: Sequence[dict[str, Any]], query: StreamQuery) -> dict[str, Any]:
    """One report from the reports of every worker, with the page `query` asks for."""
    by_state: Counter[str] = Counter()
    by_version: dict[str, Counter[str]] = {}
    rows: list[dict[str, Any]] = []
    total = matched = 0
    for part in reports:
        total += part["total"]
        matched += part["matched"]
        by_state.update(part["by_state"])
        for type_name, counts in part["by_version"].items():
            by_version.setdefault(type_name, Counter()).update(counts)
        rows.extend(part["rows"])
    rows.sort(key=_sort_key)
    page = rows[query.offset : query.offset + query.limit]
    following = query.offset + len(page)
    return {
        "total": total,
        "by_state": {state: by_state.get(state, 0) for state in STATES},
        "by_version": {name: dict(counts.most_common()) for name, counts in by_version.items()},
        "matched": matched,
        "offset": query.offset,
        "limit": query.limit,
        "next_offset": following if following < matched else None,
        "streams": page,
    }


def _order(sync: str, pending: float | None, stream_id: str) -> tuple[int, float, str]:
    # Problems first; within a state the longest-waiting first, then by stream id for stable pages.
    return (_RANK[sync], -(pending or 0.0), stream_id)


def _sort_key(row: dict[str, Any]) -> tuple[int, float, str]:
    return _order(row["sync"], row["pending_seconds"], row["stream_id"])


def _sync(stream: StreamInfo, views: Views | None, now: float) -> tuple[str, float | None]:
    """The stream's state as the report shows it (lagging: pending too long), and for how long it
    has waited for an answer."""
    sync = stream.protocol.sync_state(views).value
    pending = round(now - stream.pending_since, 1) if stream.pending_since is not None else None
    if sync == SyncState.PENDING.value and pending is not None and pending > LAGGING_SECONDS:
        sync = "lagging"
    return sync, pending


def _row(stream: StreamInfo, sync: str, pending: float | None) -> dict[str, Any]:
    protocol: StreamProtocol = stream.protocol
    node = protocol.node
    types = {}
    for type_url, state in protocol.types.items():
        if not state.requested:
            continue
        nack = state.nack
        types[SHORT_TYPE_NAMES[type_url]] = {
            "wildcard": state.wildcard,
            "subscribed": sorted(state.names)[:50],
            "subscribed_count": len(state.names),
            "sent_version": state.sent_version,
            "sent_nonce": state.sent_nonce or None,
            "awaiting_ack": state.awaiting_ack,
            "acked_version": state.acked_version,
            "rejected": state.is_rejected,
            "last_nack": None
            if nack is None
            else {"version": nack.version, "error": nack.message, "code": nack.code, "at": nack.at},
        }
    ignored = dict(protocol.ignored_types)
    return {
        "stream_id": stream.stream_id,
        "node_id": node.id if node else "",
        "node_cluster": node.cluster if node else "",
        "envoy_version": node.envoy_version if node else "",
        "identity": stream.identity,
        "allowed_clusters": None if stream.allowed is None else sorted(stream.allowed),
        "api": stream.api,
        "peer": stream.peer,
        "connected_at": stream.connected_at,
        "sync": sync,
        "pending_seconds": pending,
        "responses": stream.responses,
        "response_bytes": stream.response_bytes,
        "types": types,
        "ignored_types": ignored,
        "ignored_types_overflow": protocol.ignored_overflow,
    }
