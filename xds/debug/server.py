"""The debug HTTP server (aiohttp). It reads pipeline state and never changes it.

Handlers only read immutable values (snapshots, topologies, plans) and reports the serving side
makes of its streams, so a slow or failing request cannot touch the xDS path. Bound to loopback by
default; with `debug.token_file`, everything but /healthz, /readyz and a broker's readiness
(/health/clusters/{cluster}/brokers/{id}/ready, xds.debug.health_routes) needs the token: as
`Authorization: Bearer <token>` (scheme case-insensitive), or once as `?token=` from a browser,
which is redirected to the same address without it and holds it in an HttpOnly cookie, so the
page's links work without the token in the page or the address bar. /readyz tells what it waits
for only to a request with the token. Connections are bounded (xds.debug.connections); the token
file is followed as it changes (xds.debug.token). The status page's last hour is sampled by a task
this server owns (xds.debug.sampler), started and stopped with it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from xds import __version__
from xds.config.model import Config
from xds.debug.connections import ConnectionGuard, connection_limit
from xds.debug.health_routes import OPEN_ROUTE, HealthRoutes
from xds.debug.health_views import page_view
from xds.debug.page import render_page
from xds.debug.render import render_snapshot_chunks, render_topology
from xds.debug.sampler import Sampler
from xds.debug.sections.view import ReplicaView, SnapshotView, StatusView
from xds.debug.token import DebugToken
from xds.health.follower import HealthFollowers
from xds.pipeline.controller import Controller
from xds.pipeline.metrics import Metrics
from xds.pipeline.plan import format_plan_table, plan_rows
from xds.pipeline.publisher import Publisher
from xds.process.fleet import Fleet
from xds.serving.reports import MAX_PAGE, STATES, StreamQuery
from xds.shared.addresses import parse_listen
from xds.shared.errors import StartupError
from xds.shared.log import event
from xds.shared.resource_types import SHORT_TYPE_NAMES, TYPES_BY_SHORT_NAME

log = logging.getLogger("kafka_xds.debug")
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_COOKIE = "kafka_xds_token"
# Connections the kernel may queue before the guard accepts them. They hold no file descriptor of
# this process, so the queue is not the connection limit: a queue as short as the limit drops a
# probe's SYN during a burst of connections, and the probe waits a second to send it again.
_BACKLOG = 1024
# asyncio accepts up to its `backlog` connections per wakeup before the guard sees any of them, so
# the listening socket is created with this batch and its kernel queue raised to _BACKLOG after:
# a batch of 1024 takes more descriptors than a small limit leaves (EMFILE, accepting paused 1 s).
_ACCEPT_BATCH = 16
_AUTHORIZED = web.RequestKey("authorized", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _deepen_queue(fileno: int) -> None:
    """Raises a listening socket's kernel queue to _BACKLOG (listen() again on a duplicate of the
    same socket), leaving asyncio's accept batch as it was created."""
    duplicate = socket.socket(fileno=os.dup(fileno))
    try:
        duplicate.listen(_BACKLOG)
    finally:
        duplicate.close()


class _FleetCollector(Collector):
    """The serving workers' metrics, in this process's scrape."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def collect(self):  # type: ignore[no-untyped-def]
        return self._fleet.collect()


class DebugServer:
    def __init__(
        self,
        config: Config,
        controller: Controller,
        cache: Publisher,
        fleet: Fleet,
        metrics: Metrics,
        health: HealthFollowers | None = None,
    ) -> None:
        self._config = config
        names = tuple(cluster.name for cluster in config.kafka_clusters)
        self._health = health if health is not None else HealthFollowers({}, names, names)
        self._settings = config.debug
        self._controller = controller
        self._cache = cache
        self._fleet = fleet
        self._metrics = metrics
        self._token = DebugToken(self._settings.token_file) if self._settings.token_file else None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._guard = ConnectionGuard(self._settings.max_connections, self._settings.header_timeout_seconds)
        metrics.registry.register(_FleetCollector(fleet))
        self._sampler = Sampler(metrics.registry, fleet, controller.events)
        self._started_at = time.time()
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard.middleware, self._auth])
        app.router.add_get("/", self._page)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/debug/snapshot", self._snapshot)
        app.router.add_get("/debug/topology", self._topology)
        app.router.add_get("/debug/streams", self._streams)
        app.router.add_get("/debug/plan", self._plan)
        app.router.add_get("/debug/events", self._events)
        app.router.add_get("/metrics", self._scrape)
        HealthRoutes(self._health, lambda request: request[_AUTHORIZED]).add_to(app.router)
        return app

    async def start(self) -> None:
        host, port = parse_listen(self._settings.listen)
        self._guard.limit = connection_limit(self._settings.max_connections)
        self._runner = web.AppRunner(
            self.app(), access_log=None, keepalive_timeout=self._settings.idle_timeout_seconds
        )
        await self._runner.setup()
        self._guard.server = self._runner.server
        try:
            # Listening through the guard, not an aiohttp site: it decides which connections stay.
            self._listener = await asyncio.get_running_loop().create_server(
                self._guard, host, port, backlog=_ACCEPT_BATCH
            )
            for listening in self._listener.sockets:
                _deepen_queue(listening.fileno())
        except OSError as err:
            await self.stop()
            raise StartupError(
                f"debug.listen: cannot listen on {self._settings.listen}: {err.strerror or err}"
            ) from None
        self.port = self._listener.sockets[0].getsockname()[1]
        event(
            log,
            logging.INFO,
            "debug server listening",
            address=f"{host}:{self.port}",
            max_connections=self._guard.limit,
        )
        self._sampler.start()

    async def stop(self) -> None:
        await self._sampler.stop()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if listener is not None:
            await listener.wait_closed()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        authorized = self._authorized(request)
        request[_AUTHORIZED] = authorized
        if not authorized and request.path not in _OPEN_PATHS and not _open_route(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        from_query = request.query.get("token")
        if authorized and from_query and self._token is not None:
            # A browser login: the token goes into a cookie, and out of the address bar (and its
            # history) by sending the browser to the same address without it.
            address = str(request.rel_url.without_query_params("token"))
            response = web.Response(status=303, headers={"Location": address})
            response.set_cookie(_COOKIE, from_query, httponly=True, samesite="Strict", path="/")
            return response
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        """Whether the request carries the token (always, without one configured)."""
        if self._token is None:
            return True
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        offered = credentials.strip() if scheme.lower() == "bearer" else ""
        offered = offered or request.query.get("token", "") or request.cookies.get(_COOKIE, "")
        return hmac.compare_digest(offered.encode(), self._token.current().encode())

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def waiting(self) -> dict[str, str]:
        """What keeps this replica from being ready (/readyz), by name; empty when it is ready."""
        waiting = self._controller.waiting()
        if not waiting and self._cache.snapshot is None:
            waiting = {"snapshot": "the first snapshot is being built"}
        waiting.update(self._fleet.waiting())
        return waiting

    async def _readyz(self, request: web.Request) -> web.Response:
        waiting = self.waiting()
        if not waiting:
            return web.json_response({"ready": True})
        body: dict[str, object] = {"ready": False, "waiting_count": len(waiting)}
        if request[_AUTHORIZED]:
            # What it waits for names ZooKeeper hosts, chroots and file paths: not for anyone
            # who can reach the probe port.
            body["waiting"] = waiting
        return web.json_response(body, status=503)

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        snapshot = self._cache.snapshot
        if snapshot is None:
            return web.json_response({"error": "no snapshot yet", "waiting": self.waiting()}, status=503)
        type_filter, name_filter = request.query.get("type"), request.query.get("name")
        type_url = None
        if type_filter is not None:
            type_url = TYPES_BY_SHORT_NAME.get(type_filter, type_filter)
            if type_url not in SHORT_TYPE_NAMES:
                known = ", ".join(SHORT_TYPE_NAMES.values())
                return web.json_response(
                    {"error": f"unknown type {type_filter!r}: expected one of {known} or a type URL"},
                    status=400,
                )
        if name_filter is not None:
            types = [type_url] if type_url else list(SHORT_TYPE_NAMES)
            if not any(name_filter in snapshot.resources(each) for each in types):
                return web.json_response({"error": f"no resource named {name_filter!r}"}, status=404)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        # Hundreds of brokers make megabytes of JSON: stream it type by type.
        for chunk in render_snapshot_chunks(snapshot, type_url, name_filter):
            await response.write(chunk.encode())
        await response.write_eof()
        return response

    async def _topology(self, request: web.Request) -> web.Response:
        return web.json_response(
            render_topology(self._controller.topologies, self._controller.current_plans())
        )

    async def _streams(self, request: web.Request) -> web.Response:
        try:
            query = _stream_query(request)
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        body = await self._fleet.streams(query)
        wanted = [
            f"{what} {value!r}"
            for what, value in (("node", query.node), ("stream", query.stream), ("identity", query.identity))
            if value is not None
        ]
        if wanted and not body["matched"]:
            silent = body.get("workers_not_answering")
            if silent:
                # The stream asked for may be on a worker that did not answer: not a "no".
                error = (
                    f"no stream from {' and '.join(wanted)} on the workers that answered; "
                    f"{len(silent)} did not answer"
                )
                return web.json_response({"error": error, **body}, status=503)
            return web.json_response({"error": f"no stream from {' and '.join(wanted)}"}, status=404)
        return web.json_response(body)

    async def _plan(self, request: web.Request) -> web.Response:
        rows = plan_rows(self._controller.current_plans().values())
        if "text/plain" in request.headers.get("Accept", ""):
            return web.Response(text=format_plan_table(rows), content_type="text/plain")
        return web.json_response({"rows": rows})

    async def _scrape(self, request: web.Request) -> web.Response:
        self._metrics.record_sources(self._controller.topologies)
        await self._fleet.refresh_metrics()
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _events(self, request: web.Request) -> web.Response:
        """The recent events, newest first; `?after=N` only those after sequence N (a poller's
        cursor), `?limit=`."""
        try:
            after = int(request.query.get("after", "0"))
            limit = int(request.query.get("limit", str(self._controller.events.capacity)))
        except ValueError:
            return web.json_response({"error": "after and limit must be whole numbers"}, status=400)
        if after < 0 or limit < 1:
            return web.json_response({"error": "after must be >= 0 and limit >= 1"}, status=400)
        events = [recorded for recorded in self._controller.events.recent() if recorded.sequence > after]
        return web.json_response(
            {
                "capacity": self._controller.events.capacity,
                "events": [recorded.to_json() for recorded in events[:limit]],
            }
        )

    async def status_view(self) -> StatusView:
        """Everything the status page shows, as one immutable value (gathered on the loop; cheap:
        the stream report is each serving process's own first page)."""
        snapshot = self._cache.snapshot
        waiting = self.waiting()
        workers = self._config.xds.worker_count
        tls = self._config.xds.tls
        replica = ReplicaView(
            host=socket.gethostname(),
            version=__version__,
            pid=os.getpid(),
            started_at=self._started_at,
            workers=workers,
            workers_serving=workers - sum(1 for part in waiting if part.startswith("worker ")),
            xds_listen=self._config.xds.listen,
            xds_security="plaintext" if tls is None else "TLS" if tls.client_ca_file is None else "mTLS",
            debug_listen=f"{parse_listen(self._settings.listen)[0]}:{self.port}",
        )
        last_build = self._controller.last_build
        return StatusView(
            now=time.time(),
            replica=replica,
            waiting=waiting,
            topology=render_topology(self._controller.topologies, self._controller.current_plans()),
            streams=await self._fleet.streams(StreamQuery(limit=50)),
            snapshot=None
            if snapshot is None
            else SnapshotView.of(snapshot, self._cache.generation, self._cache.publications),
            events=self._controller.events.recent(),
            samples=self._sampler.samples,
            sample_interval=self._sampler.interval,
            event_capacity=self._controller.events.capacity,
            build_error=last_build.error if last_build is not None else None,
        )

    async def _page(self, request: web.Request) -> web.Response:
        # Rendered in a thread from immutable values: a page of many sidecars and events is
        # milliseconds of string building the event loop (serving streams, with one worker) skips.
        html = await asyncio.to_thread(
            render_page,
            await self.status_view(),
            health=[page_view(status) for status in self._health.statuses()],
        )
        return web.Response(text=html, content_type="text/html")


def _open_route(request: web.Request) -> bool:
    """A route a probe reaches without the token (a broker's readiness: Kubernetes' httpGet probes
    send no bearer token); its handler says details only to a request with it."""
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical == OPEN_ROUTE


def _stream_query(request: web.Request) -> StreamQuery:
    query = request.query
    state = query.get("state")
    if state is not None and state not in STATES:
        raise ValueError(f"unknown state {state!r}: expected one of {', '.join(STATES)}")
    try:
        offset = int(query.get("offset", "0"))
        limit = int(query.get("limit", "100"))
    except ValueError:
        raise ValueError("offset and limit must be whole numbers") from None
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"offset must be >= 0 and limit within 1..{MAX_PAGE}")
    return StreamQuery(state, query.get("node"), query.get("stream"), offset, limit, query.get("identity"))
