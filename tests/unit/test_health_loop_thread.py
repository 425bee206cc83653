"""A reader on a loop of its own (xds.health.loop_thread): fetches run off the caller's loop, a
cancelled fetch is cancelled there too, and close ends the thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.support.health import cluster, orders
from xds.health.fetch import FetchedState
from xds.health.loop_thread import ThreadedReader


class _Recording:
    """Records the thread each call ran on; `hang` makes fetches wait until cancelled."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.threads: list[str] = []
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.closed_on: str | None = None

    async def fetch(self, timeout: float) -> FetchedState:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        if self.hang:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return FetchedState(cluster(orders()), "10.0.0.1:9092", None, (), 0.0)

    async def close(self) -> None:
        self.closed_on = threading.current_thread().name


async def test_fetches_run_on_the_readers_own_thread_and_close_ends_it():
    inner = _Recording()
    reader = ThreadedReader(inner, name="health:kafka-a")
    fetched = await reader.fetch(5)
    await reader.fetch(5)
    assert len(fetched.state.partitions) == 4
    assert inner.threads == ["health:kafka-a", "health:kafka-a"]
    await reader.close()
    assert inner.closed_on == "health:kafka-a"
    assert not any(t.name == "health:kafka-a" for t in threading.enumerate())


async def test_a_fetch_cancelled_by_the_caller_is_cancelled_on_the_readers_loop():
    inner = _Recording(hang=True)
    reader = ThreadedReader(inner, name="health:kafka-b")
    fetching = asyncio.create_task(reader.fetch(5))
    assert await asyncio.to_thread(inner.started.wait, 5)
    fetching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetching
    assert await asyncio.to_thread(inner.cancelled.wait, 5)
    await reader.close()
    assert not any(t.name == "health:kafka-b" for t in threading.enumerate())


async def test_a_reader_never_used_is_closed_without_a_thread():
    inner = _Recording()
    await ThreadedReader(inner).close()
    assert inner.closed_on == threading.current_thread().name
