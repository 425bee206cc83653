"""The running application: owns every background task and stops them all on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from xds.config.model import Config
from xds.config.secret_files import readable_secrets
from xds.debug.server import DebugServer
from xds.health.follower import HealthFollowers
from xds.pipeline.controller import Controller
from xds.pipeline.metrics import Metrics
from xds.pipeline.publisher import Publisher
from xds.pipeline.sources.base import Source
from xds.pipeline.topology import Topology
from xds.process.fleet import Fleet, LocalFleet
from xds.process.spawn import Spawned, raise_file_limit
from xds.serving.access import access_policy
from xds.serving.stream_metrics import StreamMetrics
from xds.shared.addresses import join_listen, parse_listen, reserve_port
from xds.shared.log import event

log = logging.getLogger("kafka_xds.app")
_RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


def make_source(config: Config, cluster_name: str) -> Source:
    # Each kind imported when a cluster uses it: kazoo and aiokafka cost a tenth of a second of a
    # replica's start each, for nothing when no cluster needs them.
    cluster = config.cluster(cluster_name)
    if cluster.static is not None:
        from xds.pipeline.sources.static import StaticSource

        return StaticSource(cluster)
    if cluster.zookeeper is not None:
        from xds.pipeline.sources.zookeeper import ZookeeperSource

        return ZookeeperSource(cluster)
    from xds.pipeline.sources.kraft import KraftSource

    return KraftSource(cluster)


def _with_resolved_ports(config: Config) -> Config:
    """The config with both listen addresses checked free, port 0 replaced by the port reserved."""
    resolved = {}
    for key, settings in (("xds", config.xds), ("debug", config.debug)):
        host, _ = parse_listen(settings.listen)
        port = reserve_port(f"{key}.listen", settings.listen)
        resolved[key] = settings.model_copy(update={"listen": join_listen(host, port)})
    return config.model_copy(update=resolved)


class Application:
    """Sources -> controller -> cache -> the serving fleet, plus the debug server."""

    def __init__(
        self,
        config: Config,
        source_factory: Callable[[Config, str], Source] = make_source,
        prespawned: list[Spawned] | None = None,
    ) -> None:
        self._prespawned = prespawned
        self.config = config
        workers = config.xds.worker_count
        self.metrics = Metrics()
        self.metrics.start_clusters(cluster.name for cluster in config.kafka_clusters)
        self.cache = Publisher()
        self.controller = Controller(config, self.cache, metrics=self.metrics)
        self.fleet: Fleet = self._fleet(workers)
        # Partition state per cluster with `health:`, beside the pipeline: its own connections and
        # intervals, its decisions in threads, so it never slows a snapshot build.
        self.health = HealthFollowers.from_config(config, self.metrics.registry)
        self.debug = DebugServer(config, self.controller, self.cache, self.fleet, self.metrics, self.health)
        self.sources = [source_factory(config, cluster.name) for cluster in config.kafka_clusters]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def _fleet(self, workers: int) -> Fleet:
        if workers == 1:
            return LocalFleet(
                self.config.xds,
                self.cache,
                StreamMetrics(self.metrics.registry),
                access_policy(self.config.access),
            )
        from xds.process.supervisor import WorkerFleet

        return WorkerFleet(self.config, self.cache, self.metrics, self._prespawned)

    async def start(self) -> None:
        """Start serving; on failure (an address in use) nothing is left running."""
        started = time.monotonic()
        tls = self.config.xds.tls
        if tls is None:
            event(
                log,
                logging.WARNING,
                "xds.tls is null: the ADS server is plaintext; whoever reaches it reads every Kafka "
                "cluster's configuration and may claim any node id",
                listen=self.config.xds.listen,
            )
        elif tls.client_ca_file is None:
            event(
                log,
                logging.WARNING,
                "xds.tls has no client_ca_file: any client may connect and read every Kafka cluster's "
                "configuration",
                listen=self.config.xds.listen,
            )
        for secret in readable_secrets(self.config):
            event(
                log,
                logging.WARNING,
                "a secret file is readable by others than its owner: make it readable by its owner only",
                key=secret.key,
                file=secret.path,
                mode=f"{secret.mode:04o}",
            )
        for cluster in self.config.kafka_clusters:
            upstream_tls = self.config.tls_for(cluster)
            if upstream_tls is None:
                event(
                    log,
                    logging.WARNING,
                    "upstream_tls is null: sidecars reach these brokers over plain TCP",
                    cluster=cluster.name,
                )
            elif not upstream_tls.verify_broker_names:
                event(
                    log,
                    logging.WARNING,
                    "upstream_tls.verify_broker_names is false: sidecars accept any certificate the "
                    "broker CA signed as any broker of this cluster",
                    cluster=cluster.name,
                )
        # The sources and the first build run while the serving workers start: a replica is ready
        # when the slower of the two is done, not after both.
        self._tasks.append(asyncio.create_task(self.controller.run(), name="controller"))
        for source in self.sources:
            self._tasks.append(asyncio.create_task(self._supervise(source), name=f"source:{source.cluster}"))
        for follower in self.health:
            self._tasks.append(asyncio.create_task(follower.run(), name=f"health:{follower.cluster}"))
        try:
            await self.fleet.start()
            await self.debug.start()
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(asyncio.create_task(self._announce_ready(started), name="ready"))

    async def _announce_ready(self, started: float, interval: float = 0.05) -> None:
        """One INFO line when the replica first becomes ready (what /readyz answers 200 for)."""
        for attempt in itertools.count():
            if not self.debug.waiting():
                break
            await asyncio.sleep(min(interval * (attempt + 1), 1.0))
        event(
            log,
            logging.INFO,
            "ready: every source synced, every worker serving",
            clusters=len(self.config.kafka_clusters),
            brokers=sum(len(plan.brokers) for plan in self.controller.plans.values()),
            generation=self.cache.generation,
            xds=self.config.xds.listen,
            debug=self.config.debug.listen,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _supervise(self, source: Source) -> None:
        """Run a source forever; a crash is logged and the source restarted, its last topology kept."""
        failures = 0
        publish: Callable[[Topology], None] = self.controller.submit
        while True:
            try:
                await source.run(publish)
                return  # a source with nothing to follow (inline static brokers) is done
            except asyncio.CancelledError:
                raise
            except Exception as err:
                delay = _RESTART_BACKOFF_SECONDS[min(failures, len(_RESTART_BACKOFF_SECONDS) - 1)]
                failures += 1
                event(
                    log,
                    logging.ERROR,
                    "source failed; restarting it, last topology kept",
                    cluster=source.cluster,
                    source=source.kind,
                    error=repr(err),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        """Stop accepting, end the streams, cancel and await every task."""
        await self.fleet.stop()
        await self.debug.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


async def serve(
    config: Config,
    on_started: Callable[[Application], Awaitable[None]] | None = None,
    prespawned: list[Spawned] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly. Raises StartupError when it cannot start.
    `prespawned`: worker processes started early (see xds.process.spawn.prespawn); the fleet takes them."""
    raise_file_limit()  # kazoo, aiokafka and the debug server share this process's descriptors
    app = Application(_with_resolved_ports(config), prespawned=prespawned)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.request_stop)
    await app.start()
    try:
        if on_started is not None:
            await on_started(app)
        await app.wait()
        event(log, logging.WARNING, "shutting down: ending every stream within the grace")
    finally:
        await app.stop()
