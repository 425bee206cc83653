"""The compiled load processes (`ads_load.py --generator go`): benchmarks/loadgen, built with the Go
toolchain into the cache, driven over stdin/stdout with the same commands and reports as the Python
load processes (benchmarks/load_process.py).

Python's load processes spend most of their CPU in grpcio and the interpreter: at thousands of
streams opened at once they, not the server, set the pace. The Go generator opens and serves
streams as fast as a fleet of Envoys reconnecting after a control-plane restart does.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from benchmarks.ads_client import Move
from benchmarks.load_process import LoadPlan

SOURCE = Path(__file__).resolve().parent / "loadgen"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kafka-xds" / "loadgen"


def build() -> Path:
    """The generator binary, rebuilt when a source file is newer (go build itself is incremental)."""
    binary = cache_dir() / "loadgen"
    sources = [*SOURCE.glob("*.go"), SOURCE / "go.mod", SOURCE / "go.sum"]
    newest = max(path.stat().st_mtime for path in sources if path.exists())
    if not binary.exists() or binary.stat().st_mtime < newest:
        binary.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["go", "build", "-o", str(binary), "."], cwd=SOURCE, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"go build of benchmarks/loadgen failed: {done.stderr.strip()[-2000:]}")
    return binary


class GoFleet:
    """Go load processes with the interface of ads_load's Python fleet: send, collect, close."""

    def __init__(self, plans: list[LoadPlan]) -> None:
        binary = build()
        self._processes: list[subprocess.Popen[str]] = []
        for plan in plans:
            command = [
                str(binary),
                f"-target={plan.target}",
                f"-api={plan.api}",
                f"-first={plan.first_stream}",
                f"-streams={plan.streams}",
                f"-per-connection={plan.per_connection}",
                f"-ramp={plan.ramp_seconds}",
                f"-total={plan.total}",
            ]
            self._processes.append(
                subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
            )

    def send(self, command: str, argument: Any = None) -> None:
        message: dict[str, Any] = {"cmd": command}
        if command == "start":
            message["started"], message["deadline"] = argument
        elif command == "phase":
            message["name"] = argument
        elif command == "arm":
            assert isinstance(argument, Move)
            message.update(asdict(argument))
        line = json.dumps(message) + "\n"
        for process in self._processes:
            stdin: IO[str] | None = process.stdin
            assert stdin is not None
            stdin.write(line)
            stdin.flush()

    async def collect(self, kind: str, timeout: float) -> list[Any]:
        """One report of `kind` from every load process."""

        def receive(process: subprocess.Popen[str]) -> Any:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"a Go load process exited ({process.poll()}) before sending '{kind}'")
            message = json.loads(line)
            if message["kind"] != kind:
                raise RuntimeError(f"a Go load process sent '{message['kind']}', expected '{kind}'")
            return message["report"]

        deadline = time.monotonic() + timeout
        return list(
            await asyncio.wait_for(
                asyncio.gather(*(asyncio.to_thread(receive, process) for process in self._processes)),
                max(0.0, deadline - time.monotonic()),
            )
        )

    def close(self) -> None:
        for process in self._processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
