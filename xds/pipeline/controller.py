"""The pipeline: topologies in, snapshots out (grace, plan, resources, snapshot, cache).

Sources call `submit` on the event loop; `run` debounces bursts, waits until every source has synced
once, then rebuilds and publishes. A Kafka cluster whose resources fail to build keeps its last good
ones while the other clusters update; a build that fails as a whole keeps the last good snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from xds.config.model import Config, UpstreamTls
from xds.pipeline.grace import GraceState
from xds.pipeline.history import EventKind, EventLog, Severity, plan_changes, source_change
from xds.pipeline.metrics import Metrics
from xds.pipeline.plan import (
    BrokerStatus,
    ClusterPlan,
    OwnAddresses,
    PlannedBroker,
    plan_cluster,
    upstream_names,
    waiting_plan,
)
from xds.pipeline.publisher import Publisher
from xds.pipeline.resolve import HostResolver
from xds.pipeline.resources.builder import ResourceBuilder
from xds.pipeline.snapshot import Snapshot
from xds.pipeline.topology import SourceState, Topology
from xds.shared.log import event

log = logging.getLogger("kafka_xds.controller")
_SETTLE_SECONDS = 0.01

BuildInputs = list[tuple[PlannedBroker, UpstreamTls | None]]


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What the latest rebuild did: the debug server and the benchmarks read it."""

    at: float
    seconds: float
    built: int
    reused: int
    published: bool
    error: str | None = None


class Controller:
    def __init__(
        self,
        config: Config,
        cache: Publisher,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        events: EventLog | None = None,
    ) -> None:
        self._config = config
        self._cache = cache
        self._clock = clock
        self._builder = ResourceBuilder()
        self._resolver = HostResolver(config.dns.refresh_seconds, config.dns.timeout_seconds)
        self._topologies: dict[str, Topology] = {
            cluster.name: Topology.create(cluster.name, cluster.source_kind, SourceState.SYNCING)
            for cluster in config.kafka_clusters
        }
        self._grace = {
            cluster.name: GraceState(cluster.removal_grace_seconds) for cluster in config.kafka_clusters
        }
        self._own = OwnAddresses.of(config)
        self._plans: dict[str, ClusterPlan] = {}
        # Per Kafka cluster, the plan and inputs of its last resources that built: what it keeps
        # serving while its new ones fail. And why each failing cluster fails (logged when it changes).
        self._built: dict[str, tuple[ClusterPlan, BuildInputs]] = {}
        self._failing: dict[str, str] = {}
        self._dirty = asyncio.Event()
        self._dirty.set()
        self._change_seen_at: float | None = None  # monotonic; the oldest change not yet published
        self._metrics = metrics or Metrics()
        self.events = events if events is not None else EventLog()
        self.last_build: BuildReport | None = None

    @property
    def topologies(self) -> Mapping[str, Topology]:
        return dict(self._topologies)

    @property
    def plans(self) -> Mapping[str, ClusterPlan]:
        return dict(self._plans)

    def current_plans(self) -> Mapping[str, ClusterPlan]:
        """The plans being served; before the first build, the plan each cluster's known brokers
        will get (an address is a function of the broker id; a DNS name is shown unresolved), every
        broker WAITING, so /debug/plan and the page say where brokers will be before anything is
        pushed."""
        if self._plans:
            return dict(self._plans)
        return {
            cluster.name: waiting_plan(cluster, self._topologies[cluster.name], self._own)
            for cluster in self._config.kafka_clusters
        }

    def waiting(self) -> dict[str, str]:
        """Clusters whose source has not completed a first sync, with why (for /readyz)."""
        return {
            name: topology.error or f"{topology.source_kind} source has not completed its first sync"
            for name, topology in self._topologies.items()
            if not topology.synced_once
        }

    def submit(self, topology: Topology) -> None:
        """Take a source's latest topology (on the event loop thread)."""
        if topology.cluster not in self._topologies:
            raise KeyError(f"no Kafka cluster named {topology.cluster!r} in the config")
        previous = self._topologies[topology.cluster]
        if previous.state is not topology.state:
            event(
                log,
                logging.WARNING
                if topology.state in (SourceState.STALE, SourceState.UNAVAILABLE)
                else logging.INFO,
                "source state changed",
                cluster=topology.cluster,
                source=topology.source_kind,
                before=previous.state.value,
                after=topology.state.value,
                brokers=len(topology.brokers),
                error=topology.error,
            )
            change = source_change(previous, topology, self._clock())
            if change is not None:
                self.events.record(change[0], change[2], topology.cluster, change[1])
        # Counted while the source is in trouble (stale or unavailable), not for notices such as
        # "waiting for a first answer" or "no broker has registered yet".
        in_trouble = topology.state in (SourceState.STALE, SourceState.UNAVAILABLE)
        if in_trouble and topology.error is not None and topology.error != previous.error:
            self._metrics.source_errors.labels(topology.cluster).inc()
        self._topologies[topology.cluster] = topology
        if self._change_seen_at is None:
            self._change_seen_at = time.monotonic()
        self._dirty.set()

    async def run(self) -> None:
        """Rebuild after changes and at each removal-grace deadline, at most once per debounce
        window; never returns.

        The first change after a quiet window goes out at once (after a few milliseconds for events
        fired together, such as a broker's two znode watches); changes that follow within the window
        wait for its end and go out together, so a rolling restart of 30 brokers is a few pushes,
        not 30, and an isolated broker move is not delayed by the window."""
        loop = asyncio.get_running_loop()
        debounce = self._config.xds.debounce_ms / 1000
        settle = min(debounce, _SETTLE_SECONDS)
        last_build = -math.inf
        while True:
            await self._wait_for_work()
            wait = max(settle, last_build + debounce - loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            last_build = loop.time()
            await self.rebuild()

    async def _wait_for_work(self) -> None:
        """Until a source changed, a removal-grace deadline passed, or DNS answers are due again."""
        timeouts = [
            deadline - self._clock()
            for grace in self._grace.values()
            if (deadline := grace.next_deadline) is not None
        ]
        if (refresh := self._resolver.next_refresh) is not None:
            timeouts.append(refresh - time.monotonic())
        if not timeouts:
            await self._dirty.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._dirty.wait(), timeout=max(0.0, min(timeouts)))

    def _report_new_plan_skips(self, plans: Mapping[str, ClusterPlan]) -> None:
        """Log brokers the plan could not place (no port, unresolvable host) once, when they appear.

        Registrations the source already skipped were logged by the source."""
        for name, plan in plans.items():
            before = set(self._plans[name].skipped) if name in self._plans else set()
            from_source = set(self._topologies[name].skipped)
            for skip in plan.skipped:
                if skip not in before and skip not in from_source:
                    event(
                        log,
                        logging.ERROR,
                        "broker left out of the plan; other brokers unaffected",
                        cluster=name,
                        broker=skip.broker_id,
                        where=skip.where,
                        reason=skip.reason,
                    )

    def _build_snapshot(self, by_cluster: Mapping[str, BuildInputs]) -> tuple[Snapshot, dict[str, str]]:
        """The snapshot, and the clusters whose own inputs failed to build (they keep their last).

        Runs in a worker thread. The common case is one build of everything; only when that fails
        is each cluster built on its own, to find which ones fail."""
        sidecar = self._config.sidecar
        everything = itertools.chain(*by_cluster.values())
        with contextlib.suppress(Exception):  # which cluster failed is found below
            return Snapshot.from_brokers(self._builder.build(everything, sidecar)), {}
        failed: dict[str, str] = {}
        for name, inputs in by_cluster.items():
            try:
                Snapshot.from_brokers(self._builder.build(inputs, sidecar))
            except Exception as err:
                failed[name] = repr(err)
        kept = (self._built[name][1] if name in self._built else [] for name in failed)
        good = (inputs for name, inputs in by_cluster.items() if name not in failed)
        return Snapshot.from_brokers(self._builder.build(itertools.chain(*good, *kept), sidecar)), failed

    def _report_build_failures(self, failed: Mapping[str, str], plans: Mapping[str, ClusterPlan]) -> None:
        """Count every failed cluster build; log a failure when it starts or changes, and its end."""
        for name, error in failed.items():
            self._metrics.cluster_build_failures.labels(name).inc()
            if self._failing.get(name) != error:
                event(
                    log,
                    logging.ERROR,
                    "cluster's resources failed to build; keeping its last good ones, others unaffected",
                    cluster=name,
                    error=error,
                    brokers_kept=len(self._built[name][0].brokers) if name in self._built else 0,
                )
                self.events.record(
                    EventKind.BUILD_FAILED,
                    f"its resources failed to build; its last good ones kept: {error}",
                    name,
                    Severity.ERROR,
                )
        for name in self._failing.keys() - failed.keys():
            event(
                log,
                logging.WARNING,
                "cluster resources build again",
                cluster=name,
                brokers=len(plans[name].brokers),
            )
            self.events.record(EventKind.BUILD_RECOVERED, "its resources build again", name)
        self._failing = dict(failed)

    def _report_plan_mismatches(self, plans: Mapping[str, ClusterPlan]) -> None:
        """Log a broker that advertises another client address than its plan once, when that
        appears or changes, and once when it advertises the plan's address again."""
        for name, plan in plans.items():
            before = (
                {(m.broker_id, m.listener): m for m in self._plans[name].mismatches}
                if name in self._plans
                else {}
            )
            now = {(m.broker_id, m.listener): m for m in plan.mismatches}
            for key, mismatch in now.items():
                if before.get(key) != mismatch:
                    event(
                        log,
                        logging.WARNING,
                        "broker advertises another address than its plan; its clients bypass the sidecar",
                        cluster=name,
                        broker=mismatch.broker_id,
                        listener=mismatch.listener,
                        advertised=str(mismatch.advertised) if mismatch.advertised else None,
                        planned=str(mismatch.planned),
                    )
                    self.events.record(EventKind.PLAN_MISMATCH, mismatch.describe(), name, Severity.WARNING)
            live = {broker.broker_id for broker in plan.brokers if broker.status is BrokerStatus.LIVE}
            for key, mismatch in before.items():
                if key not in now and mismatch.broker_id in live:  # not merely gone
                    event(
                        log,
                        logging.INFO,  # as for a source that recovers: the warning said what was wrong
                        "plan mismatch resolved: broker advertises its planned address",
                        cluster=name,
                        broker=mismatch.broker_id,
                        listener=mismatch.listener,
                        planned=str(mismatch.planned),
                    )
                    self.events.record(
                        EventKind.PLAN_MISMATCH_RESOLVED,
                        f"broker {mismatch.broker_id} advertises its planned address {mismatch.planned} "
                        f"on listener {mismatch.listener} again",
                        name,
                    )

    async def rebuild(self) -> BuildReport | None:
        """One pass of the pipeline. Publishes nothing until every source has synced once."""
        if self.waiting():
            return None
        started = time.perf_counter()
        names = set().union(
            *(
                upstream_names(cluster, self._topologies[cluster.name])
                for cluster in self._config.kafka_clusters
            )
        )
        resolved = await self._resolver.resolve(names)
        now = self._clock()
        plans = {}
        for cluster in self._config.kafka_clusters:
            grace = self._grace[cluster.name].advance(self._topologies[cluster.name], now)
            self._grace[cluster.name] = grace
            plans[cluster.name] = plan_cluster(
                cluster, self._topologies[cluster.name], grace, resolved, self._own
            )
        by_cluster: dict[str, BuildInputs] = {
            cluster.name: [
                (planned, self._config.tls_for(cluster)) for planned in plans[cluster.name].brokers
            ]
            for cluster in self._config.kafka_clusters
        }
        built_before, reused_before = self._builder.counts
        try:
            # A full build is tens of milliseconds of CPU work (resources and snapshot both): keep it
            # off the event loop, which goes on serving streams meanwhile.
            snapshot, failed = await asyncio.to_thread(self._build_snapshot, by_cluster)
        except Exception as err:  # a bug or an input we did not foresee: keep serving the last snapshot
            event(log, logging.ERROR, "snapshot build failed; keeping the last snapshot", error=repr(err))
            self.events.record(
                EventKind.BUILD_FAILED,
                f"snapshot build failed; the last one kept: {err!r}",
                None,
                Severity.ERROR,
            )
            self._metrics.snapshot_build_failures.inc()
            self.last_build = BuildReport(now, time.perf_counter() - started, 0, 0, False, repr(err))
            return self.last_build
        self._report_build_failures(failed, plans)
        for name in failed:  # the plan shown is the one served: the last that built, or nothing
            plans[name] = self._built[name][0] if name in self._built else _nothing_built(plans[name])
        self._built.update(
            (name, (plans[name], by_cluster[name])) for name in by_cluster if name not in failed
        )
        self._report_new_plan_skips(plans)
        self._report_plan_mismatches(plans)
        for name, plan in plans.items():
            if name in self._plans:
                for kind, severity, text in plan_changes(self._plans[name], plan):
                    self.events.record(kind, text, name, severity)
        self._plans = plans
        seen_at, self._change_seen_at = self._change_seen_at, None
        published = self._cache.publish(snapshot, seen_at)
        self._metrics.snapshot_build_seconds.observe(time.perf_counter() - started)
        self._metrics.record_plans(plans.values())
        built, reused = self._builder.counts
        failures = "; ".join(f"{name}: {error}" for name, error in failed.items()) or None
        self.last_build = BuildReport(
            now,
            time.perf_counter() - started,
            built - built_before,
            reused - reused_before,
            published,
            failures,
        )
        if published:
            event(
                log,
                logging.INFO,
                "snapshot published",
                generation=self._cache.generation,
                brokers=sum(len(inputs) for _, inputs in self._built.values()),
                built=self.last_build.built,
                reused=self.last_build.reused,
                seconds=round(self.last_build.seconds, 4),
            )
            brokers = sum(len(plan.brokers) for plan in plans.values())
            self.events.record(
                EventKind.SNAPSHOT_PUBLISHED,
                f"snapshot generation {self._cache.generation} published: {brokers} "
                f"broker{'' if brokers == 1 else 's'}, {self.last_build.built} resources built, "
                f"{self.last_build.reused} reused",
            )
        return self.last_build


def _nothing_built(plan: ClusterPlan) -> ClusterPlan:
    """The plan of a cluster none of whose resources ever built: no brokers served, its skips kept."""
    return ClusterPlan(plan.cluster, plan.loopback_ip, (), (), plan.skipped)
