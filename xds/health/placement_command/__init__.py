"""`kafka-xds placement`: the replica placement of each Kafka cluster with `health.placement`, and
with `--plan FILE` the reassignment that fixes it (or a migration draining brokers, in batches).

It reads the options (`request`), asks every cluster at once (`xds.health.fetch`, each within its
timeout), checks the rules (`xds.health.placement`), plans (`xds.health.planner`), writes Kafka's
own kafka-reassign-partitions JSON (`files`) and answers as text (`text`) or JSON (`document`). It
never executes a reassignment: it prints the commands the operator runs. Exit 0 without
violations, 1 with, 2 for a usage or config error or an unreachable cluster (as every kafka-xds
command refuses). No secret is in any output: the settings hold only the files passwords are read
from.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xds.health.dimensions import place
from xds.health.placement import report
from xds.health.placement_command.answer import ClusterAnswer, ClusterReport, Unreachable
from xds.health.placement_command.document import document
from xds.health.placement_command.files import REASSIGN_TOOL, write_plan
from xds.health.placement_command.request import Request, Target, UsageError, drained_brokers, read_request
from xds.health.placement_command.text import text
from xds.health.planner import Drain, plan
from xds.health.state import PartitionId

if TYPE_CHECKING:
    from xds.health.fetch import ClusterUnreachable, FetchedState

__all__ = ["DEFAULT_THROTTLE_BYTES", "add_command", "run"]

EXIT_OK, EXIT_VIOLATIONS, EXIT_USAGE = 0, 1, 2
DEFAULT_THROTTLE_BYTES = 50_000_000  # bytes/s per broker, the value Kafka's own docs use
MAX_TIMEOUT_SECONDS = 300.0

_DESCRIPTION = f"""\
Report the replica placement of each Kafka cluster with health.placement: the brokers as a matrix
of the placement's two dimensions (e.g. Kubernetes cluster x zone) with replicas and leaders per
cell, unplaced brokers, the violations per topic and rule, and the worst partitions.

With --plan FILE, also write the reassignment that fixes every fixable violation with as few replica
moves as it can, in the JSON of Kafka's kafka-reassign-partitions tool, and say what cannot be
fixed and why. --drain (broker ids such as 101-103,105, or dimension values such as cluster=vm)
moves every replica off those brokers; --topics limits it; --batch-size N writes at most N
partitions per file: FILE.json becomes FILE.1.json, FILE.2.json, ... to apply one after another.

kafka-xds executes nothing: it prints the {REASSIGN_TOOL} commands (--execute with a
--throttle, then --verify until complete) that the operator runs.

Exit 0 without violations, 1 with violations, 2 for a usage or config error or an unreachable
cluster (the line says which)."""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_TIMEOUT_SECONDS:  # also NaN
        raise argparse.ArgumentTypeError(f"expected seconds in (0, {MAX_TIMEOUT_SECONDS:g}], got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register `placement` on the CLI's subcommands (argparse's _SubParsersAction)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "placement",
        help="replica placement over two dimensions (cluster x zone), and a plan that fixes it",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="the kafka-xds config")
    parser.add_argument(
        "--cluster", metavar="NAME", help="only this cluster (default: every one with health.placement)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the text")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="ask each cluster within this long (default: its health.timeout_seconds, 5)",
    )
    parser.add_argument(
        "--topics",
        action="append",
        metavar="TOPICS",
        help="only these topics, reported and planned: names (a,b) or a regex matching the whole "
        "name (orders\\..*); repeatable",
    )
    planning = parser.add_argument_group("the plan (written, never executed)")
    planning.add_argument(
        "--plan",
        type=Path,
        metavar="FILE",
        help="write the reassignment here (kafka-reassign-partitions JSON); needs one cluster",
    )
    planning.add_argument(
        "--drain",
        action="append",
        metavar="BROKERS",
        help="move every replica off these brokers: ids (101-103,105) or dimension values "
        "(cluster=vm, or cluster=vm,zone=az-a for both); repeatable",
    )
    planning.add_argument(
        "--batch-size",
        type=_positive,
        metavar="N",
        help="at most N partitions per file: FILE.json becomes FILE.1.json, FILE.2.json, ...",
    )
    planning.add_argument(
        "--throttle",
        type=_positive,
        default=DEFAULT_THROTTLE_BYTES,
        metavar="BYTES",
        help="replication throttle of the printed --execute commands, bytes/s per broker "
        f"(default {DEFAULT_THROTTLE_BYTES})",
    )
    parser.set_defaults(run=run, parser=parser)
    return parser


async def _fetch_all(targets: Sequence[Target]) -> list[FetchedState | ClusterUnreachable]:
    from xds.health.fetch import ClusterUnreachable, fetch_cluster_state

    async def one(target: Target) -> FetchedState | ClusterUnreachable:
        try:
            return await fetch_cluster_state(target.name, target.settings, target.timeout)
        except ClusterUnreachable as err:
            return err

    return list(await asyncio.gather(*(one(target) for target in targets)))


def _answer(request: Request, target: Target, fetched: FetchedState) -> ClusterReport:
    state = fetched.state
    placement = place(target.dimensions, state.brokers.values())
    selected = request.topics.select(state.topics) if request.topics is not None else None
    shown = state
    if selected is not None:
        wanted = frozenset(selected)
        shown = replace(state, partitions=tuple(p for p in state.partitions if p.id.topic in wanted))
    files = None
    if request.plan_file is not None:
        drained = drained_brokers(request, state, placement)
        drain = Drain(broker_ids=drained) if drained else None
        found = plan(state, placement, drain=drain, topics=selected)
        outside: tuple[PartitionId, ...] = ()
        if drained and selected is not None:
            wanted = frozenset(selected)
            outside = tuple(
                p.id for p in state.partitions if p.id.topic not in wanted and drained & set(p.replicas)
            )
        files = write_plan(
            request.plan_file, found, target.settings, request.batch_size, request.throttle, outside
        )
    return ClusterReport(
        target.name,
        shown,
        placement,
        report(shown, placement, worst=target.worst),
        fetched.server,
        fetched.elapsed_seconds,
        fetched.warnings,
        selected,
        files,
    )


def _exit_code(answers: Sequence[ClusterAnswer]) -> int:
    if any(isinstance(answer, Unreachable) for answer in answers):
        return EXIT_USAGE
    if any(isinstance(answer, ClusterReport) and answer.report.violations for answer in answers):
        return EXIT_VIOLATIONS
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """The command: parse, ask every cluster at once, check, plan, answer (see the module)."""
    try:
        request = read_request(args)
    except UsageError as err:
        print(f"kafka-xds placement: {err}", file=sys.stderr)
        return EXIT_USAGE
    from xds.health.fetch import ClusterUnreachable
    from xds.shared.log import configure

    configure("error")  # aiokafka's and asyncio's lines, redacted, only for errors (stderr)
    fetched = asyncio.run(_fetch_all(request.targets))
    answers: list[ClusterAnswer] = []
    try:
        for target, result in zip(request.targets, fetched, strict=True):
            if isinstance(result, ClusterUnreachable):
                answers.append(Unreachable(target.name, result.problems, result.timed_out))
            else:
                answers.append(_answer(request, target, result))
    except UsageError as err:
        print(f"kafka-xds placement: {err}", file=sys.stderr)
        return EXIT_USAGE
    code = _exit_code(answers)
    if request.json:
        sys.stdout.write(json.dumps(document(answers, code), indent=2) + "\n")
    else:
        sys.stdout.write(text(answers))
    for answer in answers:
        if isinstance(answer, Unreachable):
            print(f"kafka-xds placement: {answer.cluster}: cluster unreachable", file=sys.stderr)
    return code
