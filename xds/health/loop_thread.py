"""A reader whose fetches run on an event loop of their own, in a thread: a cluster's partition state
is decoded as it arrives (aiokafka's protocol decoding, then xds.kafka's strict one), about 80 ms of
CPU for 2,000 partitions and proportionally more for more, which on the main loop would be as long
a pause for the xDS pipeline and the debug server.

    reader = ThreadedReader(ClusterStateReader(cluster, settings))
    fetched = await reader.fetch(timeout)   # from the main loop; runs on the reader's own
    await reader.close()                    # closes the connection there, then ends the thread

The thread starts with the first fetch and ends with `close`; a fetch cancelled on the caller's side
is cancelled on the reader's loop too. The wrapped reader is used from that loop only.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from xds.health.fetch import FetchedState

__all__ = ["Reader", "ThreadedReader"]

T = TypeVar("T")


class Reader(Protocol):
    """What fetches a cluster's state: `ClusterStateReader`, this module's `ThreadedReader` around
    one, or a scripted one in unit tests."""

    async def fetch(self, timeout: float) -> FetchedState: ...

    async def close(self) -> None: ...


class ThreadedReader:
    """`reader`'s fetches and close on a loop in a thread of its own (see the module)."""

    def __init__(self, reader: Reader, name: str = "health") -> None:
        self._reader = reader
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def _on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._started()))

    async def fetch(self, timeout: float) -> FetchedState:
        return await self._on_loop(self._reader.fetch(timeout))

    async def _shutdown(self) -> None:
        """On the reader's loop: end what a cancelled fetch left running, then close the reader."""
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._reader.close()

    async def close(self) -> None:
        """Close the reader on its loop, then end the thread (awaited in a thread of the default
        executor: joining takes as long as the loop's last callbacks)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            await self._reader.close()  # never started: nothing of it ran anywhere else
            return
        try:
            await self._on_loop(self._shutdown())
        finally:
            self._loop = self._thread = None
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, 10)
            if not thread.is_alive():
                loop.close()
