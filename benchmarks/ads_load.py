"""Many Envoy-like ADS streams against one kafka-xds: initial sync, broker moves, errors, CPU, memory.

Builds a static topology (C Kafka clusters x B brokers, one static broker file per cluster) in a
temporary folder, starts kafka-xds from a source tree as its own process, and opens S streams,
`--per-connection` to a gRPC connection, spread over spawned load processes. Each stream acts as
Envoy on SotW ADS (benchmarks/ads_client.py): CDS and LDS wildcard, EDS by name for every cluster
of each CDS response, every response ACKed, reconnects with Envoy's backoff. Then it moves a random
broker to a new IP `--moves` times, one move at a time, by rewriting its cluster's file atomically,
and times each stream from the write to the ClusterLoadAssignment with the new address.

Prints a table: initial sync and move delays per stream (p50/p99/max), bytes and responses per
stream per move, stream errors by gRPC status (sync and moves apart), the server's CPU seconds and
memory (its whole process tree, from /proc), the generator's own CPU and the load average. `--json`
writes the raw per-stream figures; `--profile DIR` runs py-spy on the server for the run (folded
stacks in DIR, the top 15 printed; py-spy comes with the `bench` extra). Figures only: nothing
here asserts a timing. On a shared machine compare CPU seconds rather than latencies.

    .venv/bin/python benchmarks/ads_load.py --clusters 3 --brokers 30 --streams 1000
    .venv/bin/python benchmarks/ads_load.py --clusters 10 --brokers 100 --streams 1000 --moves 10 \\
        --json /tmp/ads-10x100-1000.json --profile /tmp/profiles
    .venv/bin/python benchmarks/ads_load.py --repo ../other-tree --workers 2 \\
        --xds-extra '{"max_concurrent_streams": 20000}' --streams 10000
    make bench-load          # the standard cases; ARGS="..." is passed to each

`--repo` runs that tree's kafka-xds with its own .venv/bin/python (else this interpreter, with
PYTHONPATH); `--workers N` adds `xds: {workers: N}` (a server that does not know the key refuses
it); `--api delta` drives DeltaAggregatedResources instead. The server listens on free loopback
ports; to keep runs apart, run it inside a private network namespace:
`unshare --net sh -c 'ip link set lo up && .venv/bin/python benchmarks/ads_load.py ...'`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

from benchmarks.ads_client import Move
from benchmarks.folded import summarise, top_entries, top_table
from benchmarks.go_load import GoFleet
from benchmarks.load_process import LoadPlan, load_process
from benchmarks.load_report import render
from benchmarks.server_under_test import Profiler, ServerUnderTest, TreeUsage, python_for
from xds.demo.processes import free_port

REPO = Path(__file__).resolve().parent.parent
_SIDECAR_TLS = {  # only names for Envoy: nothing here reads them
    "ca_file": "/etc/kafka-xds/ca.pem",
    "cert_file": "/etc/kafka-xds/client.pem",
    "key_file": "/etc/kafka-xds/client.key",
    "broker_names": {"dns": ["{broker_id}.{cluster}.svc"]},
}


def _ip(first: int, second: int, number: int) -> str:
    return f"127.{first + number // 256}.{second}.{number % 256}"


@dataclass
class Topology:
    """C clusters x B brokers, each cluster's brokers in its own static file."""

    directory: Path
    clusters: int
    brokers: int

    def __post_init__(self) -> None:
        self.hosts = {(c, b): _ip(1, c, b) for c in range(self.clusters) for b in range(1, self.brokers + 1)}
        for c in range(self.clusters):
            self._write(c)

    @staticmethod
    def name(c: int) -> str:
        return f"kafka-{c}"

    def file(self, c: int) -> Path:
        return self.directory / f"brokers-{self.name(c)}.yaml"

    def _write(self, c: int) -> None:
        """Atomically, as an operator's config management would (and as the tests do)."""
        brokers = [{"id": b, "host": self.hosts[c, b], "port": 9094} for b in range(1, self.brokers + 1)]
        temporary = self.file(c).with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump({"brokers": brokers}))
        temporary.replace(self.file(c))

    def move(self, c: int, b: int, ip: str) -> float:
        """Move one broker; return when the new file was in place (monotonic)."""
        self.hosts[c, b] = ip
        self._write(c)
        return time.monotonic()

    def config(self, xds: dict[str, Any]) -> dict[str, Any]:
        return {
            "xds": xds,
            "debug": {"listen": f"127.0.0.1:{free_port()}"},
            "upstream_tls": _SIDECAR_TLS,
            "kafka_clusters": [
                {
                    "name": self.name(c),
                    "loopback_ip": f"127.0.0.{10 + c}",
                    "port_base": 9090,
                    "upstream_listener": "MESH",
                    "removal_grace_seconds": 300,
                    "static": {"file": str(self.file(c)), "poll_interval_seconds": 0.05},
                }
                for c in range(self.clusters)
            ],
        }


class _Fleet:
    """The load processes (spawned), and their pipes."""

    def __init__(self, plans: list[LoadPlan]) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for plan in plans:
            ours, theirs = context.Pipe()
            process = context.Process(target=load_process, args=(plan, theirs), daemon=True)
            process.start()
            theirs.close()
            self._pipes.append(ours)
            self._processes.append(process)

    def send(self, command: str, argument: Any = None) -> None:
        for pipe in self._pipes:
            pipe.send((command, argument))

    async def collect(self, kind: str, timeout: float) -> list[Any]:
        """One message of `kind` from every load process."""
        deadline = time.monotonic() + timeout

        def receive(pipe: Connection) -> Any:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"a load process sent no '{kind}' within {timeout:.0f} s")
            got, payload = pipe.recv()
            if got != kind:
                raise RuntimeError(f"a load process sent '{got}', expected '{kind}'")
            return payload

        return list(await asyncio.gather(*(asyncio.to_thread(receive, pipe) for pipe in self._pipes)))

    def close(self) -> None:
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()


def _plans(args: argparse.Namespace, target: str) -> list[LoadPlan]:
    """Streams split over processes in whole connections."""
    connections = math.ceil(args.streams / args.per_connection)
    plans, first = [], 0
    for index in range(args.processes):
        share = connections // args.processes + (1 if index < connections % args.processes else 0)
        count = min(share * args.per_connection, args.streams - first)
        if count > 0:
            plans.append(
                LoadPlan(target, args.api, first, count, args.per_connection, args.ramp, args.streams)
            )
        first += count
    return plans


def _usage(usage: TreeUsage) -> dict[str, Any]:
    return {
        "processes": usage.processes,
        "cpu_seconds": usage.cpu_seconds,
        "rss_bytes": usage.rss_bytes,
        "pss_bytes": usage.pss_bytes,
    }


def _merge(counters: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for counter in counters:
        for key, value in counter.items():
            if isinstance(value, dict):
                merged[key] = _merge([merged.get(key, {}), value])
            else:
                merged[key] = merged.get(key, 0) + value
    return merged


async def run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    # Plaintext xDS, as the figures before xds.tls existed were measured; --legacy-config leaves the
    # key out for such a server (it refuses keys it does not know).
    plaintext = {} if args.legacy_config else {"tls": None}
    xds: dict[str, Any] = {"listen": f"127.0.0.1:{free_port()}", **plaintext, **args.xds_extra}
    if args.workers is not None:
        xds["workers"] = args.workers
    topology = Topology(directory, args.clusters, args.brokers)
    config = topology.config(xds)
    config_path = directory / "kafka-xds.yaml"
    config_path.write_text(yaml.safe_dump(config))
    server = ServerUnderTest(args.repo, config_path, config["debug"]["listen"], xds["listen"])
    label = f"{args.clusters}x{args.brokers}-{args.streams}-{args.api}"
    profiler = Profiler(args.profile / f"ads-load-{label}.folded") if args.profile else None
    fleet: _Fleet | GoFleet | None = None
    load: dict[str, Any] = {"start": os.getloadavg()}
    try:
        await server.spawn()
        if profiler is not None:  # from /healthz on: py-spy cannot attach before Python runs
            await server.until_healthy()
            await profiler.start(server.pid)
        ready_seconds, first_seconds = await server.until_serving()
        before = await server.usage()
        plans = _plans(args, xds["listen"])
        fleet = GoFleet(plans) if args.generator == "go" else _Fleet(plans)
        cpu_start = sum(await fleet.collect("hello", 120)) + time.process_time()
        started = time.monotonic() + 0.2
        sync_deadline = started + args.ramp + args.sync_timeout
        fleet.send("start", (started, sync_deadline))
        synced = await fleet.collect("synced", sync_deadline - time.monotonic() + 60)
        after_sync = await server.usage()
        load["after_sync"] = os.getloadavg()
        synced_at = time.monotonic()
        cpu_synced = sum(report["cpu"] for report in synced) + time.process_time()
        fleet.send("phase", "moves")
        moves = []
        chooser = random.Random(args.seed)
        for index in range(args.moves):
            c, b = chooser.randrange(args.clusters), chooser.randrange(1, args.brokers + 1)
            deadline = time.monotonic() + args.move_timeout
            move = Move(index, f"{topology.name(c)}/broker-{b}", _ip(200, 0, index + 1), deadline)
            fleet.send("arm", move)
            await fleet.collect("armed", 60)
            written_at = await asyncio.to_thread(topology.move, c, b, move.ip)
            reports = await fleet.collect("moved", args.move_timeout + 60)
            moves.append(
                {
                    "cluster": move.cluster,
                    "ip": move.ip,
                    "delay_seconds": [
                        None if seen is None else seen - written_at
                        for report in reports
                        for seen in report["seen_at"]
                    ],
                    "bytes": [size for report in reports for size in report["bytes"]],
                    "responses": [count for report in reports for count in report["responses"]],
                }
            )
        after_moves = await server.usage()
        load["after_moves"] = os.getloadavg()
        moved_at = time.monotonic()
        fleet.send("stop")
        finals = await fleet.collect("final", 120)
        cpu_end = sum(report["cpu"] for report in finals) + time.process_time()
    finally:
        if fleet is not None:
            fleet.close()
        if profiler is not None:
            await profiler.stop()
        await server.stop()
    result: dict[str, Any] = {
        "params": {
            "clusters": args.clusters,
            "brokers": args.brokers,
            "streams": args.streams,
            "per_connection": args.per_connection,
            "processes": len(finals),
            "api": args.api,
            "moves": args.moves,
            "move_timeout": args.move_timeout,
            "repo": str(args.repo),
            "python": python_for(args.repo)[0],
            "xds": {key: value for key, value in xds.items() if key != "listen"},
            "seed": args.seed,
        },
        "start": {"ready_seconds": ready_seconds, "first_response_seconds": first_seconds},
        "sync": {
            "deadline_seconds": args.sync_timeout,
            "seconds": [d for report in synced for d in report["durations"]],
            "first_error_seconds": [d for report in synced for d in report["first_errors"]],
        },
        "moves": moves,
        "errors": _merge([report["errors"] for report in finals]),
        "reconnects": _merge([report["reconnects"] for report in finals]),
        "error_details": {k: v for report in finals for k, v in report["details"].items()},
        "connections_hit": {
            phase: sorted(c for report in finals for c in report["connections_hit"].get(phase, []))
            for phase in ("sync", "moves")
        },
        "unexpected": sum(report["unexpected"] for report in finals),
        "server": {
            "before": _usage(before),
            "after_sync": _usage(after_sync),
            "after_moves": _usage(after_moves),
        },
        "generator": {
            "sync_cpu_seconds": cpu_synced - cpu_start,
            "moves_cpu_seconds": cpu_end - cpu_synced,
        },
        "load_average": load,
        "wall": {"sync_seconds": synced_at - started, "moves_seconds": moved_at - synced_at},
    }
    if profiler is not None:
        profile = summarise(profiler.output.read_text())
        result["profile"] = {"file": str(profiler.output), **top_entries(profile, 15)}
        result["profile_table"] = top_table(profile, 15)
    return result


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--brokers", type=int, default=30, help="per cluster, ids 1..B")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--per-connection", type=int, default=100, help="streams per gRPC connection")
    parser.add_argument("--processes", type=int, help="default: 1 per 1500 streams, at most one per core")
    parser.add_argument("--api", choices=("sotw", "delta"), default="sotw")
    parser.add_argument(
        "--generator",
        choices=("python", "go"),
        default="python",
        help="the load processes: grpcio (python) or compiled (go: benchmarks/loadgen, built with the Go "
        "toolchain; opens streams as fast as Envoys reconnecting at once)",
    )
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--sync-timeout", type=float, default=120.0, help="seconds for the initial sync")
    parser.add_argument("--move-timeout", type=float, default=20.0, help="seconds for one move to be seen")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread the streams' starts over this")
    parser.add_argument("--repo", type=Path, default=REPO, help="the kafka-xds source tree to run")
    parser.add_argument("--workers", type=int, help="add xds.workers to the config")
    parser.add_argument(
        "--legacy-config",
        action="store_true",
        help="for a kafka-xds from before xds.tls existed: leave that key out of the config",
    )
    parser.add_argument("--xds-extra", type=yaml.safe_load, default={}, help="YAML/JSON: more xds settings")
    parser.add_argument("--seed", type=int, default=1, help="which brokers move")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--profile", type=Path, help="py-spy the server into this folder")
    parser.add_argument("--workdir", type=Path, help="keep the topology, config and server log here")
    args = parser.parse_args()
    if not isinstance(args.xds_extra, dict):
        parser.error(f"--xds-extra must be a mapping, not {args.xds_extra!r}")
    if not 1 <= args.clusters <= 245:
        parser.error(f"--clusters {args.clusters}: 1..245 (loopback IPs 127.0.0.10 and up)")
    if not 1 <= args.brokers <= 65535 - 9090:
        parser.error(f"--brokers {args.brokers}: 1..{65535 - 9090} (ports from 9090 + id)")
    for name in ("streams", "per_connection", "processes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.processes is None:
        args.processes = max(1, min(os.cpu_count() or 1, math.ceil(args.streams / 1500)))
    args.repo = args.repo.resolve()
    return args


def main() -> None:
    args = _arguments()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # the load processes' gRPC: no per-stream noise
    try:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            result = asyncio.run(run(args, args.workdir.resolve()))
        else:
            with tempfile.TemporaryDirectory(prefix="ads-load-") as temporary:
                result = asyncio.run(run(args, Path(temporary)))
    except (RuntimeError, TimeoutError) as err:  # the server would not start, a load process died
        sys.exit(f"ads_load: {err}")
    print(render(result))
    if "profile_table" in result:
        print(f"\nserver profile ({result['profile']['file']}):\n{result.pop('profile_table')}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
