"""The kafka-xds under load: spawned from any source tree, timed to ready, and watched through /proc
(CPU seconds and memory of its whole process tree), optionally under py-spy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
from grpc import aio

from benchmarks.ads_client import CHANNEL_OPTIONS, METHODS
from benchmarks.ads_wire import SotwRequests, node
from xds.shared.resource_types import CLUSTER_TYPE

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class TreeUsage:
    """CPU and memory of a process and all its descendants, at one moment."""

    processes: int
    cpu_seconds: float  # utime + stime of each, plus what its reaped children used
    rss_bytes: int  # summed: pages shared between forked workers count once per process
    pss_bytes: int  # proportional set size: shared pages split between their sharers


def tree_usage(root: int) -> TreeUsage:
    """Read /proc for `root` and every descendant of it (synchronous: call via to_thread)."""
    stats: dict[int, list[str]] = {}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            text = (entry / "stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        if pid in stats:
            tree.append(pid)
            pending.extend(children.get(pid, []))
    cpu = rss = pss = 0.0
    for pid in tree:
        fields = stats[pid]
        cpu += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / _TICKS
        rss += int(fields[21]) * _PAGE
        pss += _pss(pid)
    return TreeUsage(len(tree), cpu, int(rss), int(pss))


def _pss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def python_for(repo: Path) -> tuple[str, dict[str, str]]:
    """The interpreter to run `repo`'s kafka-xds with: its own .venv if it has one."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    venv_python = repo / ".venv" / "bin" / "python"
    return (str(venv_python) if venv_python.exists() else sys.executable), env


class ServerUnderTest:
    """`python -m xds serve --config FILE` from a source tree, in its own session."""

    def __init__(self, repo: Path, config_path: Path, debug_listen: str, xds_listen: str) -> None:
        self.repo, self.config_path = repo, config_path
        self.debug_url = f"http://{debug_listen}"
        self.xds_listen = xds_listen
        self.log_path = config_path.with_suffix(".log")
        self.process: asyncio.subprocess.Process | None = None
        self.spawned_at = 0.0
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def spawn(self) -> None:
        python, env = python_for(self.repo)
        self._log = self.log_path.open("ab")
        self.spawned_at = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            python,
            "-m",
            "xds",
            "serve",
            "--config",
            str(self.config_path),
            "--log-level",
            "warning",
            cwd=self.repo,
            env=env,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )

    async def until_serving(self) -> tuple[float, float]:
        """Seconds from the spawn to /readyz 200, and to the first ADS response."""
        ready, first = await asyncio.gather(self._until_ready(), self._first_ads_response())
        return ready - self.spawned_at, first - self.spawned_at

    async def until_healthy(self, timeout: float = 60.0) -> None:
        await self._poll("/healthz", timeout)

    async def _until_ready(self, timeout: float = 300.0) -> float:
        return await self._poll("/readyz", timeout)

    async def _poll(self, path: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                self._check_alive()
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(self.debug_url + path, timeout=aiohttp.ClientTimeout(2)) as r:
                        if r.status == 200:
                            return time.monotonic()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kafka-xds: no 200 on {path} after {timeout} s: see {self.log_path}")
                await asyncio.sleep(0.05)

    async def _first_ads_response(self, timeout: float = 300.0) -> float:
        """One probe stream (CDS wildcard), retried until the server answers it."""
        request = SotwRequests.request(
            SotwRequests().subscription(CLUSTER_TYPE, ()), node_bytes=node("probe", "load")
        )
        deadline = time.monotonic() + timeout
        async with aio.insecure_channel(self.xds_listen, options=CHANNEL_OPTIONS) as channel:
            method: Any = channel.stream_stream(METHODS["sotw"])
            while True:
                self._check_alive()
                call: Any = method()
                try:
                    await call.write(request)
                    response = await call.read()
                    if response is not aio.EOF:
                        return time.monotonic()
                except aio.AioRpcError:
                    pass
                finally:
                    call.cancel()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kafka-xds: no ADS response after {timeout} s")
                await asyncio.sleep(0.05)

    def _check_alive(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            log = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"kafka-xds exited with {self.process.returncode}:\n{log}")

    async def usage(self) -> TreeUsage:
        return await asyncio.to_thread(tree_usage, self.pid)

    async def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Profiler:
    """`py-spy record --subprocesses --format raw` on a running process, until stopped."""

    def __init__(self, output: Path, rate: int = 100) -> None:
        self.output, self.rate = output, rate
        self.log_path = output.with_suffix(".py-spy.log")
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, pid: int) -> None:
        binary = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if binary is None:
            raise RuntimeError("no py-spy: pip install 'kafka-xds[bench]' (or: make bench-load)")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                binary,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                str(self.rate),
                "--nonblocking",  # never pause the server: its CPU figures stay its own
                "--output",
                str(self.output),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    async def stop(self, timeout: float = 60.0) -> None:
        """SIGINT makes py-spy write its samples and exit."""
        if self._process is None or self._process.returncode is not None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
