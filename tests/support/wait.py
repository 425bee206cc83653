"""Waiting for things to become true, with generous deadlines (shared, noisy machines)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from xds.demo.processes import free_port

__all__ = ["eventually", "free_port"]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> T:
    """Await `probe()` until it returns a truthy value or raises no AssertionError; return that value."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = await probe()
            if value:
                return value
            last_error = None
        except (AssertionError, OSError, ConnectionError) as err:
            last_error = err
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last_error!r}")
        await asyncio.sleep(interval)
