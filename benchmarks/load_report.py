"""The ADS load benchmark's figures as a readable table (the raw figures go to JSON as they are)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

_MB = 1024 * 1024


def rank(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of sorted `values` (share 0.5 is the median, 1.0 the maximum)."""
    return values[max(0, math.ceil(share * len(values)) - 1)]


def _spread(values: Sequence[float | None], unit: float = 1000.0, digits: int = 0) -> str:
    """p50 / p99 / max of the values that are there, in ms by default."""
    present = sorted(v * unit for v in values if v is not None)
    if not present:
        return "no values"
    return " ".join(
        f"{label} {rank(present, share):.{digits}f}"
        for label, share in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
    )


def _codes(errors: dict[str, int]) -> str:
    return ", ".join(f"{code} {count}" for code, count in sorted(errors.items())) or "none"


def render(result: dict[str, Any]) -> str:
    params, server, generator = result["params"], result["server"], result["generator"]
    load = result["load_average"]
    streams = params["streams"]
    lines = [
        f"kafka-xds ADS load: {params['clusters']} clusters x {params['brokers']} brokers "
        f"({params['clusters'] * params['brokers']} each of listeners, clusters, endpoints); "
        f"{streams} {params['api']} streams, {params['per_connection']} per connection "
        f"({math.ceil(streams / params['per_connection'])} connections), "
        f"{params['processes']} load process(es)",
        f"server: {params['repo']} ({params['python']}); xds settings {params['xds']}",
        f"start: /readyz after {result['start']['ready_seconds']:.2f} s, first ADS response after "
        f"{result['start']['first_response_seconds']:.2f} s; start-up CPU "
        f"{server['before']['cpu_seconds']:.1f} s",
        "",
    ]
    sync = result["sync"]
    never = sum(1 for d in sync["seconds"] if d is None)
    lines.append(
        f"initial sync (first attempt -> CDS, EDS, LDS ACKed), ms:  {_spread(sync['seconds'])}   "
        f"never synced within {sync['deadline_seconds']:.0f} s: {never}/{streams}"
    )
    failed = [d for d in sync["first_error_seconds"] if d is not None]
    if failed:
        lines.append(
            f"  {len(failed)} streams failed before the sync deadline; their first failure came after "
            f"(s, from the first attempt): {_spread(failed, 1.0, 1)} min {min(failed):.1f}"
        )
    moves = result["moves"]
    if moves:
        delays = [d for move in moves for d in move["delay_seconds"]]
        missed = sum(1 for d in delays if d is None)
        lines.append(
            f"broker move (file write -> new IP in the stream's EDS), ms:  {_spread(delays)}   "
            f"missed: {missed}/{len(delays)} "
            f"({len(moves)} moves, at most {params['move_timeout']:.0f} s each)"
        )
        sizes = [b for move in moves for b in move["bytes"]]
        counts = [c for move in moves for c in move["responses"]]
        lines.append(f"  per stream per move: responses {_spread(counts, 1.0)}; bytes {_spread(sizes, 1.0)}")
    for phase in ("sync", "moves"):
        errors = result["errors"].get(phase, {})
        lines.append(
            f"stream errors during {phase}: {_codes(errors)}; reconnects "
            f"{result['reconnects'].get(phase, 0)}; connections hit "
            f"{len(result['connections_hit'][phase])}/{math.ceil(streams / params['per_connection'])}"
        )
    for code, details in sorted(result["error_details"].items()):
        lines.append(f"  {code}: {details}")
    if result["unexpected"]:
        lines.append(f"unexpected resources or types received: {result['unexpected']}")
    before, synced, after = server["before"], server["after_sync"], server["after_moves"]
    per_move = (after["cpu_seconds"] - synced["cpu_seconds"]) / max(1, len(moves))
    lines += [
        "",
        f"server CPU: sync {synced['cpu_seconds'] - before['cpu_seconds']:.2f} s, "
        f"moves {after['cpu_seconds'] - synced['cpu_seconds']:.2f} s ({per_move:.2f} s per move); "
        f"{after['processes']} process(es)",
        f"server memory (RSS / PSS, MiB): before streams {before['rss_bytes'] / _MB:.0f} / "
        f"{before['pss_bytes'] / _MB:.0f}, after sync {synced['rss_bytes'] / _MB:.0f} / "
        f"{synced['pss_bytes'] / _MB:.0f}, per stream "
        f"{(synced['rss_bytes'] - before['rss_bytes']) / streams / 1024:.1f} KiB RSS",
        f"load generator CPU: sync {generator['sync_cpu_seconds']:.2f} s, moves "
        f"{generator['moves_cpu_seconds']:.2f} s ({params['processes']} load process(es) + orchestrator)",
        "load average (1/5/15 min): start {}, after sync {}, after moves {}".format(
            *(" ".join(f"{v:.2f}" for v in load[key]) for key in ("start", "after_sync", "after_moves"))
        ),
        f"wall time: sync {result['wall']['sync_seconds']:.1f} s, "
        f"moves {result['wall']['moves_seconds']:.1f} s",
    ]
    return "\n".join(lines)
