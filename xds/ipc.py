"""Frames between the main process and its serving workers: a length, then a pickle.

Only ever used on a private socket pair between a kafka-xds process and the workers it started,
so both ends are the same program and trust each other.
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

_MAX_FRAME = 512 * 1024 * 1024


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
