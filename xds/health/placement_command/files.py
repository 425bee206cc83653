"""A plan as files: Kafka's reassignment JSON, one file or one per batch (`plan.json` ->
`plan.1.json`, `plan.2.json`, ...), and the kafka-reassign-partitions commands that apply each,
printed for the operator and never run here."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from xds.config.model import KraftSettings
from xds.health.placement_command.answer import CLIENT_PROPERTIES, PlanFiles
from xds.health.placement_command.request import UsageError
from xds.health.planner import Move, Plan, reassignment
from xds.health.state import PartitionId

__all__ = ["REASSIGN_TOOL", "write_plan"]

REASSIGN_TOOL = "kafka-reassign-partitions.sh"


def write_plan(
    path: Path,
    found: Plan,
    settings: KraftSettings,
    batch_size: int | None,
    throttle: int,
    outside_topics: tuple[PartitionId, ...] = (),
) -> PlanFiles:
    """Write `found`'s moves to `path` (or, with `batch_size`, at most that many partitions a file,
    numbered), and say which commands apply them. No moves, no file."""
    batches = _batches(found, batch_size)
    files = _batch_files(path, len(batches)) if batch_size is not None else (path,) * len(batches)
    for file, moves in zip(files, batches, strict=True):
        _write_reassignment(file, moves)
    stale = _stale_batch_files(path, len(files)) if batch_size is not None else ()
    commands = tuple(_commands(settings, file, throttle) for file in files)
    return PlanFiles(found, batches, files, commands, batch_size, outside_topics, stale)


def _batches(found: Plan, size: int | None) -> tuple[tuple[Move, ...], ...]:
    if not found.moves:
        return ()
    return found.batches(size, partitions=True) if size is not None else (found.moves,)


def _batch_files(path: Path, count: int) -> tuple[Path, ...]:
    """`plan.json` -> `plan.1.json`, `plan.2.json`, ...; a name without a suffix gets `.json`."""
    suffix = path.suffix or ".json"
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return tuple(path.with_name(f"{stem}.{n}{suffix}") for n in range(1, count + 1))


def _stale_batch_files(path: Path, count: int) -> tuple[Path, ...]:
    """Batch files beside `path` numbered past `count`: an earlier plan's, which this one replaces."""
    suffix = path.suffix or ".json"
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    pattern = re.compile(re.escape(stem) + r"\.(\d+)" + re.escape(suffix))
    found = []
    for candidate in path.parent.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match is not None and int(match[1]) > count:
            found.append((int(match[1]), candidate))
    return tuple(candidate for _, candidate in sorted(found))


def _write_reassignment(path: Path, moves: Sequence[Move]) -> None:
    """Kafka's JSON, one partition a line (readable, diffable), replaced whole."""
    document = reassignment(moves)
    entries = ",\n".join("  " + json.dumps(entry) for entry in document["partitions"])
    body = f'{{"version": {document["version"]},\n "partitions": [\n{entries}\n]}}\n'
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(body)
        temporary.replace(path)
    except OSError as err:
        raise UsageError("--plan", f"cannot write {path}: {err.strerror or err}") from None


def _commands(settings: KraftSettings, file: Path, throttle: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The operator's --execute and --verify commands for one file (never run here)."""
    base = [REASSIGN_TOOL, "--bootstrap-server", ",".join(settings.bootstrap_servers)]
    if settings.security_protocol != "PLAINTEXT":
        base += ["--command-config", CLIENT_PROPERTIES]
    base += ["--reassignment-json-file", str(file)]
    return (*base, "--execute", "--throttle", str(throttle)), (*base, "--verify")
