"""From a broker's znode change in ZooKeeper to the new endpoint live in a real Envoy.

Runs a real ZooKeeper, kafka-xds (its own process, ZooKeeper source) and one Envoy sidecar on
loopback, then:
  1. re-registers one broker at a new address N times (a new session and a new ephemeral znode, as a
     rescheduled pod does) and, separately, rewrites its znode in place N times; for each change,
     the time from just before the znode write to Envoy's admin /clusters showing the new endpoint;
  2. restarts 30 brokers of another cluster back to back (a fast rolling restart) and times how
     long until Envoy has every new endpoint, and how many endpoint pushes that took.
Target: p99 under 500 ms for a single change. Figures only; nothing here asserts a timing.

    .venv/bin/python benchmarks/zk_convergence.py [--changes 60] [--brokers 30] [--debounce-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

from benchmarks.support import EnvoyWatch, summary
from tests.support.envoy import Envoy
from tests.support.wait import free_port
from tests.support.xds_process import XdsProcess
from tests.support.zookeeper import ZooKeeperServer, broker_znode

SINGLE, ROLLING = "kafka-a", "kafka-b"


class Registration:
    """One broker's session and ephemeral znode, driven synchronously (called via to_thread)."""

    def __init__(self, hosts: str, chroot: str, broker_id: int) -> None:
        self.hosts, self.path = hosts, f"{chroot}/brokers/ids/{broker_id}"
        self.client: KazooClient | None = None

    def register(self, address: str) -> float:
        """New session, then the znode; returns the time just before the znode was written."""
        self.close()
        self.client = KazooClient(hosts=self.hosts, timeout=10)
        self.client.start(timeout=15)
        written_at = time.perf_counter()
        self.client.create(self.path, broker_znode({"MESH": address}), ephemeral=True, makepath=True)
        return written_at

    def rewrite(self, address: str) -> float:
        assert self.client is not None
        written_at = time.perf_counter()
        self.client.set(self.path, broker_znode({"MESH": address}))
        return written_at

    def close(self) -> None:
        if self.client is not None:
            self.client.stop()
            self.client.close()
            self.client = None


def _config(hosts: str, debounce_ms: int) -> dict[str, Any]:
    return {
        "xds": {"listen": f"127.0.0.1:{free_port()}", "debounce_ms": debounce_ms, "tls": None},
        "debug": {"listen": f"127.0.0.1:{free_port()}"},
        "upstream_tls": None,  # Envoy never connects here: only its view of the endpoints is timed
        "kafka_clusters": [
            {
                "name": name,
                "loopback_ip": loopback,
                "port_base": 9090,
                "upstream_listener": "MESH",
                "removal_grace_seconds": 300,
                "zookeeper": {"hosts": hosts, "chroot": f"/{name}"},
            }
            for name, loopback in ((SINGLE, "127.0.0.10"), (ROLLING, "127.0.0.11"))
        ],
    }


async def _pushes(server: XdsProcess) -> int:
    _, text = await server.get("/metrics")
    for line in str(text).splitlines():
        if line.startswith('kafka_xds_pushes_total{type="endpoints"}'):
            return int(float(line.split()[-1]))
    return 0


async def _single_changes(
    watch: EnvoyWatch, broker: Registration, changes: int, in_place: bool
) -> list[float]:
    took = []
    for index in range(changes):
        address = f"127.0.0.{21 + index % 2}:{20000 + index + (5000 if in_place else 0)}"
        change = broker.rewrite if in_place else broker.register
        written_at = await asyncio.to_thread(change, address)
        live_at = await watch.until({f"{SINGLE}/broker-1": address})
        took.append(live_at - written_at)
        await asyncio.sleep(0.05)  # let each change be its own push, not part of a burst
    return took


async def _rolling_restart(watch: EnvoyWatch, brokers: list[Registration], server: XdsProcess) -> None:
    pushes_before = await _pushes(server)
    expected = {
        f"{ROLLING}/broker-{index + 1}": f"127.0.0.23:{30000 + index}" for index in range(len(brokers))
    }

    def restart_all() -> tuple[float, float]:
        started = time.perf_counter()
        for broker, address in zip(brokers, expected.values(), strict=True):
            broker.register(address)  # closes the old session (znode gone), then registers again
        return started, time.perf_counter()

    started, last_written = await asyncio.to_thread(restart_all)
    live_at = await watch.until(expected, timeout=60)
    await asyncio.sleep(0.5)
    pushes = await _pushes(server) - pushes_before
    print(
        f"rolling restart of {len(brokers)} brokers (back to back, {last_written - started:.2f} s of znode "
        f"changes): all live in Envoy {(live_at - started) * 1000:.0f} ms after the first change, "
        f"{(live_at - last_written) * 1000:.0f} ms after the last; {pushes} endpoint pushes"
    )


async def main(changes: int, brokers: int, debounce_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="zk-convergence-") as temporary:
        directory = Path(temporary)
        zookeeper = await asyncio.to_thread(ZooKeeperServer(directory / "zookeeper").start)
        single = Registration(zookeeper.hosts, f"/{SINGLE}", 1)
        rolling = [Registration(zookeeper.hosts, f"/{ROLLING}", index + 1) for index in range(brokers)]
        server: XdsProcess | None = None
        envoy: Envoy | None = None
        watch: EnvoyWatch | None = None
        try:
            await asyncio.to_thread(single.register, "127.0.0.21:19999")
            for index, broker in enumerate(rolling):
                await asyncio.to_thread(broker.register, f"127.0.0.22:{30000 + index}")
            config = _config(zookeeper.hosts, debounce_ms)
            server = await XdsProcess(directory, config).start()
            envoy = await Envoy(directory, "app-1", int(config["xds"]["listen"].rsplit(":", 1)[1])).start()
            watch = EnvoyWatch(envoy.admin_port)
            initial = {f"{SINGLE}/broker-1": "127.0.0.21:19999"}
            initial.update({f"{ROLLING}/broker-{i + 1}": f"127.0.0.22:{30000 + i}" for i in range(brokers)})
            await watch.until(initial, timeout=60)
            print(f"ZooKeeper -> kafka-xds (debounce {debounce_ms} ms) -> Envoy, {brokers + 1} brokers")
            moved = await _single_changes(watch, single, changes, in_place=False)
            print(summary("re-registration at a new address", moved))
            rewritten = await _single_changes(watch, single, changes, in_place=True)
            print(summary("znode rewritten in place", rewritten))
            await _rolling_restart(watch, rolling, server)
        finally:
            if watch is not None:
                await watch.close()
            if envoy is not None:
                await envoy.stop()
            if server is not None:
                await server.kill()
            for broker in [single, *rolling]:
                await asyncio.to_thread(broker.close)
            await asyncio.to_thread(zookeeper.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=60, help="single changes of each kind (>= 50)")
    parser.add_argument("--brokers", type=int, default=30, help="brokers in the rolling restart")
    parser.add_argument("--debounce-ms", type=int, default=100, help="kafka-xds xds.debounce_ms")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.changes, arguments.brokers, arguments.debounce_ms))
