"""The debug HTTP server. It reads pipeline state and never changes it."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from xds.cache import SnapshotCache
from xds.config import DebugSettings, parse_listen
from xds.controller import Controller
from xds.debug.render import render_snapshot, render_topology
from xds.log import event
from xds.server import AdsServer

log = logging.getLogger("kafka_xds.debug")


class DebugServer:
    def __init__(
        self, settings: DebugSettings, controller: Controller, cache: SnapshotCache, ads: AdsServer
    ) -> None:
        self._settings = settings
        self._controller = controller
        self._cache = cache
        self._ads = ads
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/debug/snapshot", self._snapshot)
        app.router.add_get("/debug/topology", self._topology)
        return app

    async def start(self) -> None:
        host, port = parse_listen(self._settings.listen)
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        event(log, logging.INFO, "debug server listening", address=f"{host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        waiting = self._controller.waiting()
        if waiting:
            return web.json_response({"ready": False, "waiting": waiting}, status=503)
        if self._cache.snapshot is None:
            return web.json_response(
                {"ready": False, "waiting": {"snapshot": "first build running"}}, status=503
            )
        return web.json_response({"ready": True})

    async def _snapshot(self, request: web.Request) -> web.Response:
        snapshot = self._cache.snapshot
        if snapshot is None:
            return web.json_response(
                {"error": "no snapshot yet", "waiting": self._controller.waiting()}, status=503
            )
        body: dict[str, Any] = render_snapshot(
            snapshot, type_filter=request.query.get("type"), name_filter=request.query.get("name")
        )
        return web.json_response(body)

    async def _topology(self, request: web.Request) -> web.Response:
        return web.json_response(render_topology(self._controller.topologies, self._controller.plans))
