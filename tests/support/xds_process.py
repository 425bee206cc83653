"""kafka-xds as operators run it: `python -m xds serve --config FILE`, in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.wait import eventually
from xds.demo.processes import spawn_kafka_xds


class XdsProcess:
    def __init__(self, directory: Path, config: dict[str, Any], name: str = "kafka-xds") -> None:
        self.directory = directory
        self.config_path = directory / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = directory / f"{name}.log"
        self.debug_url = f"http://{config['debug']['listen']}"
        self.returncode: int | None = None
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, wait_ready: bool = True) -> XdsProcess:
        self._log = self.log_path.open("ab")
        self._process = await spawn_kafka_xds(
            self.config_path, self._log, os.environ.get("KAFKA_XDS_LOG_LEVEL", "info")
        )
        await eventually(self._healthy, timeout=30, what="kafka-xds /healthz")
        if wait_ready:
            await eventually(self.ready, timeout=30, what="kafka-xds /readyz")
        return self

    async def _healthy(self) -> bool:
        if self._process is not None and self._process.returncode is not None:
            raise RuntimeError(f"kafka-xds exited with {self._process.returncode}: {self.log_text()}")
        status, _ = await self.get("/healthz")
        return status == 200

    async def ready(self) -> bool:
        status, _ = await self.get("/readyz")
        return status == 200

    async def get(self, path: str) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.debug_url + path, timeout=aiohttp.ClientTimeout(5)) as response,
        ):
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except json.JSONDecodeError:
                return response.status, text

    async def terminate(self, timeout: float = 10.0) -> float:
        """SIGTERM; return how long the process took to exit."""
        assert self._process is not None
        started = time.monotonic()
        self._process.send_signal(signal.SIGTERM)
        self.returncode = await asyncio.wait_for(self._process.wait(), timeout)
        self._log.close()
        return time.monotonic() - started

    def send_signal(self, signum: int) -> None:
        """E.g. SIGSTOP/SIGCONT: freeze the process, as a long GC pause or a stalled VM would."""
        assert self._process is not None
        self._process.send_signal(signum)

    async def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
            self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
