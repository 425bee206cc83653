"""The /health routes of the debug server: what the health followers know, per Kafka cluster.

    GET /health                                          every cluster's summary
    GET /health/clusters/{cluster}/brokers/{id}/ready    200 ready / 503 not ready, reasons as JSON
                                                         (?max_age_seconds=: 503 from an older state)
    GET /health/clusters/{cluster}/restartable           the restart plan (503 while unreachable)
    GET /health/clusters/{cluster}/placement             the placement report (?limit= violations)

The readiness route is for Kubernetes httpGet readiness probes, which cannot send a bearer token:
like /readyz it needs none (`OPEN_ROUTE`), and without the token it says kinds and counts only (no
partition, topic, cluster or server name). Every other route needs the token when one is set.
Handlers read the followers' last immutable values: nothing here waits on a cluster.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from xds.debug.health_views import broker_view, cluster_summary, placement_view, restart_view
from xds.health.follower import HealthFollower, HealthFollowers

__all__ = ["OPEN_ROUTE", "HealthRoutes"]

OPEN_ROUTE = "/health/clusters/{cluster}/brokers/{broker_id}/ready"
_MAX_LIMIT = 100_000


class HealthRoutes:
    """The handlers over one set of followers; `authorized(request)` says whether the request
    carries the debug token (always true without one)."""

    def __init__(self, followers: HealthFollowers, authorized: Callable[[web.Request], bool]) -> None:
        self._followers = followers
        self._authorized = authorized

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/health", self._all)
        router.add_get(OPEN_ROUTE, self._ready)
        router.add_get("/health/clusters/{cluster}/restartable", self._restartable)
        router.add_get("/health/clusters/{cluster}/placement", self._placement)

    def _follower(self, request: web.Request) -> HealthFollower | web.Response:
        name = request.match_info["cluster"]
        follower = self._followers.get(name)
        if follower is not None:
            return follower
        if name in self._followers.without_health:
            return web.json_response(
                {
                    "error": f"cluster {name!r} has no health settings: add `health: {{}}` to its "
                    "kafka_clusters entry (a ZooKeeper or static cluster also needs "
                    "health.connection.bootstrap_servers); see docs/operations.md",
                },
                status=404,
            )
        body: dict[str, object] = {"error": f"unknown cluster {name!r}"}
        if self._authorized(request):  # the probe route answers anyone: names only with the token
            body["clusters"] = list(self._followers.names)
        return web.json_response(body, status=404)

    async def _all(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "clusters": {s.cluster: cluster_summary(s) for s in self._followers.statuses()},
                "without_health": list(self._followers.without_health),
            }
        )

    async def _ready(self, request: web.Request) -> web.Response:
        found = self._follower(request)
        if isinstance(found, web.Response):
            return found
        text = request.match_info["broker_id"]
        if not text.isdigit():
            return web.json_response({"error": f"broker id {text!r} is not a whole number"}, status=400)
        try:
            max_age = float(request.query["max_age_seconds"]) if "max_age_seconds" in request.query else None
        except ValueError:
            max_age = -1.0
        if max_age is not None and not 0 < max_age < float("inf"):
            return web.json_response({"error": "max_age_seconds must be a number of seconds > 0"}, status=400)
        status = found.status()
        answer = status.broker(int(text), max_age)
        view = broker_view(answer, status, detailed=self._authorized(request))
        return web.json_response(view, status=200 if answer.ready else 503)

    async def _restartable(self, request: web.Request) -> web.Response:
        found = self._follower(request)
        if isinstance(found, web.Response):
            return found
        status = found.status()
        return web.json_response(restart_view(status), status=200 if status.problem is None else 503)

    async def _placement(self, request: web.Request) -> web.Response:
        found = self._follower(request)
        if isinstance(found, web.Response):
            return found
        try:
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            limit = -1
        if not 0 <= limit <= _MAX_LIMIT:
            return web.json_response({"error": f"limit must be within 0..{_MAX_LIMIT}"}, status=400)
        status = found.status()
        view = placement_view(status, limit)
        if view is None:
            return web.json_response(
                {
                    "error": f"cluster {found.cluster!r} has no placement settings: set "
                    "health.placement.rack_pattern (e.g. '(?P<cluster>[^.]+)\\.(?P<zone>.+)') "
                    "or health.placement.brokers; see docs/operations.md",
                },
                status=404,
            )
        return web.json_response(view, status=200 if status.problem is None else 503)
