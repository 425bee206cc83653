"""The debug server's connections, bounded: held-open or slow connections cannot take the
process's file descriptors from the sources, nor the port from the kubelet's probes.

At most `limit` connections are open. When one more arrives, the oldest connection without a
request in progress is closed to make room (a half-open connection holds a slot, but only until
someone needs it); when every connection is mid-request, the new one is closed at once. A
connection that has not sent a complete request `header_timeout` seconds after it opened is
closed; aiohttp's keep-alive timeout closes it when idle between requests. The limit is also
kept within an eighth of the process's file descriptor limit (`connection_limit`).
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def connection_limit(configured: int) -> int:
    """`debug.max_connections`, within an eighth of the file descriptors this process may open:
    the rest stay for the sources, the serving side and the workers' pipes."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft // 8))


class _Refused(asyncio.Protocol):
    """A connection beyond the limit: closed as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class ConnectionGuard:
    """The protocol factory of the debug server's listening socket (see the module docstring)."""

    def __init__(self, limit: int, header_timeout: float) -> None:
        self.limit, self._header_timeout = limit, header_timeout
        self.server: Server | None = None  # aiohttp's, once its runner is set up
        # Per connection, forgotten once aiohttp no longer lists it (its handlers take no weakrefs).
        self._spoke: set[RequestHandler] = set()  # sent a request
        self._busy: dict[RequestHandler, int] = {}  # requests in progress
        self._closed: set[RequestHandler] = set()  # closed by the guard, still listed
        self.refused = 0
        self.evicted = 0

    def __call__(self) -> asyncio.BaseProtocol:
        server = self.server
        assert server is not None, "the guard listens only after the runner is set up"
        listed = server.connections  # oldest first
        live = set(listed)
        self._spoke &= live
        self._closed &= live
        for gone in self._busy.keys() - live:
            del self._busy[gone]
        connections = [handler for handler in listed if handler not in self._closed]
        if len(connections) >= self.limit:
            idle = next((handler for handler in connections if not self._busy.get(handler)), None)
            if idle is None:
                self.refused += 1
                return _Refused()
            self.evicted += 1
            self._close(idle)
        handler = server()
        asyncio.get_running_loop().call_later(self._header_timeout, self._unless_spoke, handler)
        return handler

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection as one that sent a request, and as busy while it is answered."""
        protocol = request.protocol
        self._spoke.add(protocol)
        self._busy[protocol] = self._busy.get(protocol, 0) + 1
        try:
            return await handler(request)
        finally:
            self._busy[protocol] = self._busy.get(protocol, 1) - 1

    def _unless_spoke(self, handler: RequestHandler) -> None:
        if handler not in self._spoke and self.server is not None and handler in self.server.connections:
            self._close(handler)

    def _close(self, handler: RequestHandler) -> None:
        self._closed.add(handler)
        handler.force_close()
