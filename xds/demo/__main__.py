"""`make demo` (`python -m xds.demo`): a sidecar follows real Kafka brokers while clients keep going.

By default the demo runs real Apache Kafka (xds/demo/real.py): a ZooKeeper-mode cluster (3.9) and a
KRaft cluster (4.1), kafka-xds on config/demo.yaml, a real Envoy sidecar, and per cluster a producer
and a consumer whose only bootstrap is the sidecar's address. Every second it prints the bytes that
went through each broker's port and the records produced and consumed; after a few seconds kafka-a's
broker 2 is rescheduled onto a new IP (same id and data) and the clients keep going. `--stand-ins`
runs the fast demo instead (xds/demo/standins.py: TLS stand-ins registering in ZooKeeper, no Java).
Ctrl-C (or --duration) stops everything and removes the temp dir. Every address and port is an
option (`--help`, xds/demo/layout.py), so a second demo, or a test, can run beside the first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Protocol

from xds.demo import layout, real, standins
from xds.demo.kafka import KRAFT_RELEASE, ZOOKEEPER_RELEASE, KafkaNotInstalled, release_libs
from xds.demo.layout import CONTROLLER_HOST, DemoAddresses
from xds.demo.processes import envoy_binary
from xds.demo.zookeeper import ZK_SERVER

EXIT_REFUSED = 2  # as every kafka-xds command exits on a problem it names


class DemoError(Exception):
    """Why the demo cannot run, said in one line."""


class Demo(Protocol):
    """What the run loop drives: the real-Kafka demo or the stand-ins."""

    status_url: str

    async def start(self) -> None: ...

    def banner(self) -> str: ...

    def rescheduling(self) -> str: ...

    async def reschedule(self) -> str: ...

    async def probe(self) -> list[str]: ...

    async def summary(self) -> str: ...

    async def stop(self) -> None: ...


def _check_prerequisites(addresses: DemoAddresses, stand_ins: bool) -> None:
    if not ZK_SERVER.exists():
        raise DemoError(
            f"ZooKeeper is not installed ({ZK_SERVER} is missing): run `make demo`, which installs it"
        )
    try:
        envoy_binary()
    except RuntimeError as err:
        raise DemoError(f"{err}; `make demo` installs it") from None
    ports = [addresses.xds_port, addresses.debug_port, addresses.admin_port]
    bound = [(addresses.services, port) for port in ports]
    if stand_ins:
        bound += [(ip, standins.MESH_PORT) for ip in addresses.pod_ips()]
    else:
        if shutil.which("java") is None:
            raise DemoError(
                "no `java` on PATH (the demo runs real Kafka): run `make demo`, which installs it"
            )
        for version in (ZOOKEEPER_RELEASE, KRAFT_RELEASE):
            try:
                release_libs(version)
            except KafkaNotInstalled as err:
                raise DemoError(f"{err} (or run the fast demo: --stand-ins)") from None
        bound += [(ip, port) for ip in addresses.pod_ips() for port in (real.INTERNAL_PORT, real.MESH_PORT)]
        bound.append((addresses.ip(CONTROLLER_HOST), 0))
    for host, port in bound:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers will bind
            try:
                sock.bind((host, port))
            except OSError:
                raise DemoError(
                    f"{host}:{port} is in use (is another demo running? --loopback-net and the --*-port "
                    "options run this one elsewhere)"
                ) from None


async def run(demo: Demo, duration: float | None, reschedule_after: float, what: str) -> None:
    print(f"starting {what} ...", flush=True)
    started = time.monotonic()
    try:
        await demo.start()
    except (RuntimeError, TimeoutError, OSError) as err:
        raise DemoError(f"start-up failed: {err}") from None
    print(demo.banner(), flush=True)
    print(f"(started in {time.monotonic() - started:.1f} s)\n", flush=True)
    loop = asyncio.get_running_loop()
    started = tick = loop.time()
    moving: asyncio.Task[str] | None = None
    reported = False
    try:
        while duration is None or loop.time() - started < duration:
            if moving is None and loop.time() - started >= reschedule_after:
                _say(demo.rescheduling())
                moving = asyncio.create_task(demo.reschedule())  # the clients keep going meanwhile
            if moving is not None and moving.done() and not reported:
                _say(moving.result())
                reported = True
            print("\n".join(await demo.probe()), flush=True)
            tick += 1
            await asyncio.sleep(max(0.0, tick - loop.time()))
        if moving is not None and not reported:
            if not moving.done():
                print("(waiting for the reschedule to finish)", flush=True)
            _say(await moving)
        _say(await demo.summary())
    finally:
        if moving is not None and not moving.done():
            moving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await moving


def _say(text: str) -> None:
    if text:
        print(text, flush=True)


async def main_async(args: argparse.Namespace) -> int:
    addresses = layout.from_arguments(args)
    _check_prerequisites(addresses, args.stand_ins)
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            print("\n(already stopping: a few seconds more)", flush=True)
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="kafka-xds-demo-"))
    demo: Demo
    if args.stand_ins:
        demo, what = (
            standins.StandInDemo(workdir, addresses),
            "ZooKeeper, 5 stand-in brokers, kafka-xds and Envoy",
        )
    else:
        demo = await asyncio.to_thread(real.RealKafkaDemo, workdir, addresses)
        what = "ZooKeeper, 5 Kafka brokers (ZooKeeper mode and KRaft), kafka-xds, Envoy and clients"
    try:
        runner = asyncio.create_task(run(demo, args.duration, args.reschedule_after, what))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (runner, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # a DemoError of the runner goes on from here
    finally:
        print("\nstopping: clients, sidecar, kafka-xds, brokers, ZooKeeper", flush=True)
        await demo.stop()
        await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        print(f"stopped; removed {workdir}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m xds.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds to run once started, then stop everything and exit 0 (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--reschedule-after",
        type=float,
        default=6.0,
        help="seconds before kafka-a's broker 2 moves to a new address (default: 6)",
    )
    parser.add_argument(
        "--stand-ins",
        action="store_true",
        help="the fast demo: TLS stand-ins that register in ZooKeeper instead of Kafka (no Java)",
    )
    layout.add_arguments(parser)
    args = parser.parse_args()
    try:
        return asyncio.run(main_async(args))
    except DemoError as err:
        print(f"python -m xds.demo: {err}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
