"""The debug HTTP server (aiohttp). It reads pipeline state and never changes it.

Handlers only read immutable values (snapshots, topologies, plans) and per-stream protocol state on
the event loop, so a slow or failing request cannot touch the xDS path. Bound to loopback by
default; with `debug.token_file`, everything but /healthz and /readyz needs `Authorization: Bearer`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xds.cache import SnapshotCache
from xds.config import Config, ConfigError, parse_listen
from xds.controller import Controller
from xds.debug.page import render_page
from xds.debug.render import render_snapshot_chunks, render_streams, render_topology
from xds.log import event, register_secret
from xds.metrics import Metrics
from xds.plan import format_plan_table, plan_rows
from xds.server import AdsServer

log = logging.getLogger("kafka_xds.debug")
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError("debug.token_file", f"cannot read {path}: {err.strerror or err}") from None
    if not token:
        raise ConfigError("debug.token_file", f"{path} is empty")
    register_secret(token)  # e.g. in an access log line for `?token=`
    return token


class DebugServer:
    def __init__(
        self,
        config: Config,
        controller: Controller,
        cache: SnapshotCache,
        ads: AdsServer,
        metrics: Metrics,
    ) -> None:
        self._config = config
        self._settings = config.debug
        self._controller = controller
        self._cache = cache
        self._ads = ads
        self._metrics = metrics
        self._token = read_token(self._settings.token_file) if self._settings.token_file else None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/", self._page)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/debug/snapshot", self._snapshot)
        app.router.add_get("/debug/topology", self._topology)
        app.router.add_get("/debug/streams", self._streams)
        app.router.add_get("/debug/plan", self._plan)
        app.router.add_get("/metrics", self._scrape)
        return app

    async def start(self) -> None:
        host, port = parse_listen(self._settings.listen)
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        event(log, logging.INFO, "debug server listening", address=f"{host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is None or request.path in _OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        offered = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        offered = offered or request.query.get("token", "")
        if not hmac.compare_digest(offered.encode(), self._token.encode()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _waiting(self) -> dict[str, str]:
        waiting = self._controller.waiting()
        if not waiting and self._cache.snapshot is None:
            waiting = {"snapshot": "the first snapshot is being built"}
        return waiting

    async def _readyz(self, request: web.Request) -> web.Response:
        waiting = self._waiting()
        if waiting:
            return web.json_response({"ready": False, "waiting": waiting}, status=503)
        return web.json_response({"ready": True})

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        snapshot = self._cache.snapshot
        if snapshot is None:
            return web.json_response({"error": "no snapshot yet", "waiting": self._waiting()}, status=503)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        # Hundreds of brokers make megabytes of JSON: stream it type by type.
        for chunk in render_snapshot_chunks(snapshot, request.query.get("type"), request.query.get("name")):
            await response.write(chunk.encode())
        await response.write_eof()
        return response

    async def _topology(self, request: web.Request) -> web.Response:
        return web.json_response(render_topology(self._controller.topologies, self._controller.plans))

    async def _streams(self, request: web.Request) -> web.Response:
        node = request.query.get("node")
        streams = [stream for stream in self._ads.streams.values() if node is None or stream.node_id == node]
        if node is not None and not streams:
            return web.json_response({"error": f"no stream from node {node!r}"}, status=404)
        return web.json_response(render_streams(streams, self._cache.snapshot))

    async def _plan(self, request: web.Request) -> web.Response:
        rows = plan_rows(self._controller.plans.values())
        if "text/plain" in request.headers.get("Accept", ""):
            return web.Response(text=format_plan_table(rows), content_type="text/plain")
        return web.json_response({"rows": rows})

    async def _scrape(self, request: web.Request) -> web.Response:
        self._metrics.record_sources(self._controller.topologies)
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _page(self, request: web.Request) -> web.Response:
        html = render_page(
            topology=render_topology(self._controller.topologies, self._controller.plans),
            streams=render_streams(list(self._ads.streams.values()), self._cache.snapshot),
            waiting=self._waiting(),
            versions=self._cache.snapshot.versions() if self._cache.snapshot else {},
        )
        return web.Response(text=html, content_type="text/html")
