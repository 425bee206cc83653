"""How the main process starts its serving workers, and the frames between them: a length, then a
pickle.

Frames only ever travel on a private socket pair between a kafka-xds process and the workers it
started, so both ends are the same program and trust each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import resource
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

_MAX_FRAME = 512 * 1024 * 1024
_MAX_FILES = 1 << 20  # Linux's default fs.nr_open: a soft limit to raise to when the hard one is unlimited


def frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(4, "big") + data


def send(writer: asyncio.StreamWriter, message: Any) -> None:
    """Queue one message (one write, so frames from different coroutines never interleave)."""
    writer.write(frame(message))


async def receive(reader: asyncio.StreamReader) -> Any:
    """The next message; raises asyncio.IncompleteReadError when the other end went away."""
    size = int.from_bytes(await reader.readexactly(4), "big")
    if size > _MAX_FRAME:
        raise ValueError(f"frame of {size} bytes from the other process")
    return pickle.loads(await reader.readexactly(size))


# A burst of initial syncs holds hundreds of response buffers of ~100 KB in gRPC at once. glibc
# raises its mmap threshold after the first large frees and then serves such buffers from the heap,
# which it rarely returns to the system: a worker kept ~2x the memory its streams need after one
# burst. A fixed threshold keeps large buffers in their own mappings, returned when freed.
# (glibc reads it from the environment at start; other allocators ignore it; an operator's own
# setting wins.)
_WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}


@dataclass(frozen=True)
class Spawned:
    """A worker process just started, and the main process's end of its socket."""

    process: subprocess.Popen[bytes]
    channel: socket.socket

    def close(self) -> None:
        """A worker never given its settings: closing the socket makes it exit at once."""
        self.channel.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def spawn() -> Spawned:
    """Start one worker process; it imports what it needs, then waits for its settings."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "xds.process.worker", str(child.fileno())],
            pass_fds=(child.fileno(),),
            env={**_WORKER_MALLOC, **os.environ},  # the environment as it is now
        )
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    parent.setblocking(False)
    return Spawned(process, parent)


def raise_file_limit() -> None:
    """Raise this process's soft file descriptor limit to its hard limit, before any worker starts
    (they inherit it): a container's soft limit of 1024 is small for a replica whose sources,
    debug server and workers' pipes share it, and running out makes the sources stale."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _MAX_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # not allowed here: keep the limit given
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def prespawn(count: int) -> list[Spawned]:
    """Start the workers before the main process has loaded everything it needs: their start
    (about a second of Python imports each) then overlaps its own, and a replica is ready sooner."""
    return [spawn() for _ in range(count)]
