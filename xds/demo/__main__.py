"""`make demo` (`python -m xds.demo`): watch a sidecar follow a broker to a new IP, on loopback.

Starts, in a temp dir: three stand-in brokers of cluster kafka-a (mTLS servers that require a client
certificate, on 127.0.0.21-23), kafka-xds on config/demo.yaml (its own process, as operators run
it), a real Envoy sidecar, and a client that sends through 127.0.0.10:9091-9093 every second and
prints which broker answered. After a few seconds broker 2 is "rescheduled" onto 127.0.0.32: the
client keeps using 127.0.0.10:9092 and the answers come from the new pod, no restart anywhere.
Ctrl-C (or --duration) stops everything and removes the temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from xds.config import parse_config, parse_listen
from xds.demo.brokers import TlsUpstream, exchange, make_certs
from xds.demo.processes import EnvoyProcess, terminate

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
BROKER_HOSTS = {1: "127.0.0.21", 2: "127.0.0.22", 3: "127.0.0.23"}
RESCHEDULED_HOST = "127.0.0.32"
ADMIN_PORT = 9901


class Demo:
    def __init__(self, workdir: Path, config_path: Path, reschedule_after: float) -> None:
        self.workdir = workdir
        self.certs = make_certs(workdir / "certs")
        self.reschedule_after = reschedule_after
        raw: dict[str, Any] = yaml.safe_load(config_path.read_text())
        # The sidecar and the brokers live in this temp dir: point the config at its certificates.
        raw["upstream_tls"] = {
            "ca_file": str(self.certs.ca_file),
            "cert_file": str(self.certs.client_cert),
            "key_file": str(self.certs.client_key),
        }
        self.brokers_file = workdir / "brokers-a.yaml"
        raw["kafka_clusters"][0]["static"]["file"] = str(self.brokers_file)
        self.config = parse_config(raw)
        self.config_path = workdir / "kafka-xds.yaml"
        self.config_path.write_text(yaml.safe_dump(raw))
        self.cluster = self.config.kafka_clusters[0]
        self.brokers: dict[int, TlsUpstream] = {}
        self.server: asyncio.subprocess.Process | None = None
        self.envoy: EnvoyProcess | None = None

    async def start(self) -> None:
        for broker_id, host in BROKER_HOSTS.items():
            self.brokers[broker_id] = await self._broker(broker_id, host)
        self._write_brokers()
        log = (self.workdir / "kafka-xds.log").open("ab")
        self.server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "xds",
            "serve",
            "--config",
            str(self.config_path),
            "--log-level",
            "info",
            stdout=log,
            stderr=log,
        )
        xds_port = parse_listen(self.config.xds.listen)[1]
        self.envoy = EnvoyProcess(self.workdir, "demo-app", xds_port, ADMIN_PORT)
        await self.envoy.start()
        print(
            f"kafka-xds: ADS on {self.config.xds.listen}, status on http://{self.config.debug.listen}/readyz"
        )
        print(f"sidecar:   Envoy admin on http://127.0.0.1:{ADMIN_PORT}/  (logs in {self.workdir})")
        print(f"client:    sends through {self.cluster.loopback_ip}:9091-9093 every second\n")

    async def _broker(self, broker_id: int, host: str) -> TlsUpstream:
        return await TlsUpstream(f"broker-{broker_id}@{host}", host, self.certs.server_context(host)).start()

    def _write_brokers(self) -> None:
        entries = [
            {"id": broker_id, "host": upstream.host, "port": upstream.port, "rack": f"az{broker_id}"}
            for broker_id, upstream in sorted(self.brokers.items())
        ]
        temporary = self.brokers_file.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump({"brokers": entries}))
        temporary.replace(self.brokers_file)

    async def run(self, duration: float | None) -> None:
        started = time.monotonic()
        rescheduled = False
        while duration is None or time.monotonic() - started < duration:
            if not rescheduled and time.monotonic() - started >= self.reschedule_after:
                await self.reschedule(2)
                rescheduled = True
            await self.probe()
            await asyncio.sleep(1)

    async def probe(self) -> None:
        answers = []
        for broker_id in sorted(BROKER_HOSTS):
            port = 9090 + broker_id
            try:
                answer = (await exchange(str(self.cluster.loopback_ip), port, "hello", timeout=2)).split()[0]
            except (OSError, TimeoutError, ConnectionError) as err:
                answer = f"waiting ({type(err).__name__})"
            answers.append(f":{port} -> {answer:<24}")
        print(time.strftime("%H:%M:%S"), "  ".join(answers), flush=True)

    async def reschedule(self, broker_id: int) -> None:
        old = self.brokers[broker_id]
        self.brokers[broker_id] = await self._broker(broker_id, RESCHEDULED_HOST)
        self._write_brokers()
        await old.stop()
        print(
            f"\n*** broker {broker_id}'s pod was rescheduled: {old.host} -> {RESCHEDULED_HOST}. "
            f"Clients keep using {self.cluster.loopback_ip}:{9090 + broker_id}.\n",
            flush=True,
        )

    async def stop(self) -> None:
        if self.envoy is not None:
            await self.envoy.stop()
        if self.server is not None:
            await terminate(self.server)
        for upstream in self.brokers.values():
            await upstream.stop()


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="kafka-xds-demo-"))
    demo = Demo(workdir, args.config, args.reschedule_after)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await demo.start()
        runner = asyncio.create_task(demo.run(args.duration))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (runner, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        print("\nstopping: sidecar, kafka-xds, brokers", flush=True)
        await demo.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m xds.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=None, help="seconds to run, then exit 0")
    parser.add_argument("--reschedule-after", type=float, default=6.0, help="seconds before broker 2 moves")
    parser.add_argument("--config", type=Path, default=REPO_CONFIG)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
