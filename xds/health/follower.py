"""Following a Kafka cluster's partition state from the running control plane: one `HealthFollower`
per cluster with `health:` settings polls it (`ClusterStateReader`, one kept connection, on an event
loop of its own in a thread, `loop_thread`: decoding an answer of thousands of partitions takes
CPU), decides everything from each answer (`assessment.assess`, in a thread too: a large fraction
of a second for 10,000 partitions with placement) and keeps what the endpoints, metrics and page
show as one immutable value, `ClusterHealth`: the last good assessment, and the last failure while
polls fail. The main loop only hands the work over and takes the results.

    followers = HealthFollowers.from_config(config, registry)
    tasks = [asyncio.create_task(follower.run()) for follower in followers]   # the app owns them

A cluster it cannot reach is unreachable, never healthy: every readiness answer is then "not ready:
cluster unreachable for N s", however good the last state was. Polls come every
`poll_interval_seconds` (start to start, within 10% either way, so replicas drift apart); after a
failure sooner, backing off from 1 s up to the interval. New topics are checked as they appear: one
that breaks placement is logged once at WARNING, counted, and kept as a recent anomaly, like a
Cruise Control anomaly; a violation that persists is not logged again. Repeated failures are
logged once, then at most once a minute with how often they came (`Repeats`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from xds.config.health import HealthSettings
from xds.config.model import Config, KraftSettings
from xds.health.assessment import Anomaly, Assessment, HealthRules, assess, new_topic_anomalies
from xds.health.fetch import ClusterStateReader, ClusterUnreachable, FetchedState
from xds.health.loop_thread import Reader, ThreadedReader
from xds.health.metrics import HealthMetrics
from xds.health.readiness import Readiness
from xds.health.state import BrokerState
from xds.shared.log import Repeats, event

__all__ = [
    "BrokerAnswer",
    "ClusterHealth",
    "HealthFollower",
    "HealthFollowers",
    "PollFailure",
    "Polled",
]

log = logging.getLogger("kafka_xds.health")

BACKOFF_FIRST_SECONDS = 1.0  # the first retry after a failure; doubled each time, up to the interval
JITTER = 0.1  # each delay is within this fraction either way
RECENT_ANOMALIES = 50  # kept per cluster, newest first
LOGGED_ANOMALIES = 10  # new topics logged one by one per poll; the rest in one line
_WARNINGS_SECONDS = 3600.0  # a fetch warning that persists is written again at most this often


@dataclass(frozen=True, slots=True)
class Polled:
    """One good poll: what was decided, and from which answer (wall-clock `at`)."""

    assessment: Assessment
    server: str
    cluster_id: str | None
    warnings: tuple[str, ...]
    fetch_seconds: float
    at: float


@dataclass(frozen=True, slots=True)
class PollFailure:
    """Polls failing since `since` (wall clock), `failures` in a row, the last one's `error` at `at`."""

    error: str
    at: float
    since: float
    failures: int


@dataclass(frozen=True, slots=True)
class BrokerAnswer:
    """A broker's readiness as the follower can answer it now: `readiness` from the last good poll,
    or None when nothing is known yet; `problem` when the cluster cannot be asked (then not ready,
    whatever `readiness` says)."""

    cluster: str
    broker_id: int
    readiness: Readiness | None
    problem: str | None = None
    error: str | None = None  # the last error behind `problem` (names servers: shown with the token)

    @property
    def ready(self) -> bool:
        return self.problem is None and self.readiness is not None and self.readiness.ready

    def summary(self, with_error: bool = True) -> str:
        """The probe's line, e.g. "not ready: cluster unreachable for 42 s: 10.0.0.1:9092: timed out"."""
        if self.problem is not None:
            error = f": {self.error}" if with_error and self.error else ""
            return f"not ready: {self.problem}{error}"
        assert self.readiness is not None
        return self.readiness.summary()


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    """Everything the follower knows of one cluster at one moment (wall-clock `now`).

    `state`: `unknown` (no poll answered yet), `reachable`, `unreachable` (the last poll failed),
    or `stale` (the last good poll is older than `max_age_seconds` and no failure says why: the
    follower itself is stuck); only `reachable` answers readiness from the state."""

    cluster: str
    settings: HealthSettings
    last_good: Polled | None
    failure: PollFailure | None
    anomalies: tuple[Anomaly, ...]
    anomaly_count: int
    now: float

    @property
    def max_age_seconds(self) -> float:
        return 2 * self.settings.poll_interval_seconds + self.settings.timeout_seconds

    @property
    def state(self) -> str:
        if self.failure is not None:
            return "unreachable"
        if self.last_good is None:
            return "unknown"
        if self.age_seconds is not None and self.age_seconds > self.max_age_seconds:
            return "stale"
        return "reachable"

    @property
    def age_seconds(self) -> float | None:
        return None if self.last_good is None else max(0.0, self.now - self.last_good.at)

    @property
    def assessment(self) -> Assessment | None:
        """The last good assessment (shown, marked, while the cluster is unreachable)."""
        return None if self.last_good is None else self.last_good.assessment

    @property
    def problem(self) -> str | None:
        """Why no answer may come from the state now; None when the cluster is reachable."""
        state = self.state
        if state == "unreachable":
            assert self.failure is not None
            since = max(0.0, self.now - self.failure.since)
            return f"cluster unreachable for {since:.0f} s"
        if state == "unknown":
            return "cluster state not known yet (the first poll has not answered)"
        if state == "stale":
            return f"cluster state is {self.age_seconds:.0f} s old (polls have stopped)"
        return None

    def broker(self, broker_id: int, max_age_seconds: float | None = None) -> BrokerAnswer:
        """A broker's answer; with `max_age_seconds`, not ready either when the state is older (a
        probe that must not be answered from a poll before its broker restarted)."""
        assessment = self.assessment
        readiness = assessment.broker(broker_id) if assessment is not None else None
        error = self.failure.error if self.failure is not None else None
        problem = self.problem
        age = self.age_seconds
        if problem is None and max_age_seconds is not None and age is not None and age > max_age_seconds:
            problem = f"cluster state is {age:.1f} s old, older than the {max_age_seconds:g} s asked for"
        return BrokerAnswer(self.cluster, broker_id, readiness, problem, error)


def _jittered(seconds: float, draw: Callable[[], float]) -> float:
    return seconds * (1 + JITTER * (2 * draw() - 1))


class HealthFollower:
    """Polls one cluster forever (`run`); `status()` is what it knows now. See the module."""

    def __init__(
        self,
        cluster: str,
        connection: KraftSettings,
        settings: HealthSettings,
        *,
        metrics: HealthMetrics | None = None,
        reader: Reader | None = None,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self._rules = HealthRules.from_settings(settings)
        self._reader: Reader = reader or ThreadedReader(
            ClusterStateReader(cluster, connection), name=f"health:{cluster}"
        )
        self._metrics = metrics
        self._clock, self._draw = clock, draw
        self._last_good: Polled | None = None
        self._failure: PollFailure | None = None
        self._anomalies: deque[Anomaly] = deque(maxlen=RECENT_ANOMALIES)
        self._anomaly_count = 0
        self._poll_seconds = 0.0  # the last poll's, fetch and decisions
        self._seen: dict[int, BrokerState] = {}  # every broker registered at some poll, as last seen
        self._failures = Repeats()
        self._warnings = Repeats(interval=_WARNINGS_SECONDS)
        if metrics is not None:
            metrics.start_cluster(cluster)

    def status(self) -> ClusterHealth:
        return ClusterHealth(
            self.cluster,
            self.settings,
            self._last_good,
            self._failure,
            tuple(self._anomalies),
            self._anomaly_count,
            self._clock(),
        )

    async def run(self) -> None:
        """Poll until cancelled; the reader's connection is closed on the way out."""
        try:
            while True:
                await self.poll()
                await asyncio.sleep(self.next_delay())
        finally:
            await self._reader.close()

    def next_delay(self) -> float:
        """Seconds until the next poll: the interval after a good one (less the time the poll took),
        else 1 s doubling with each failure, up to the interval."""
        interval = self.settings.poll_interval_seconds
        if self._failure is None:
            return max(0.0, _jittered(interval, self._draw) - self._poll_seconds)
        backoff = BACKOFF_FIRST_SECONDS * 2 ** (self._failure.failures - 1)
        return _jittered(min(interval, backoff), self._draw)

    async def poll(self) -> None:
        """One poll: fetch, decide, record. Never raises but CancelledError: a failure is recorded."""
        started = time.monotonic()
        try:
            fetched = await self._reader.fetch(self.settings.timeout_seconds)
            assessment = await asyncio.to_thread(
                assess, fetched.state, self._rules, tuple(self._seen.values())
            )
        except ClusterUnreachable as err:
            self._failed(err.detail or "no server answered")
        except Exception as err:  # a bug of ours must not end the follower, nor say healthy
            self._failed(f"poll failed: {err!r}")
        else:
            self._succeeded(fetched, assessment)
        finally:
            self._poll_seconds = time.monotonic() - started
            if self._metrics is not None:
                self._metrics.poll_seconds.labels(self.cluster).observe(self._poll_seconds)

    def _failed(self, error: str) -> None:
        now = self._clock()
        previous = self._failure
        since = previous.since if previous is not None else now
        failures = previous.failures + 1 if previous is not None else 1
        self._failure = PollFailure(error, now, since, failures)
        if self._metrics is not None:
            self._metrics.poll_failures.labels(self.cluster).inc()
        admitted = self._failures.admit(error)
        if admitted is not None:
            event(
                log,
                logging.WARNING,
                "health: cluster unreachable; its brokers answer not ready",
                cluster=self.cluster,
                error=error,
                failures=failures,
                unreachable_seconds=round(now - since, 1),
                retry_in=round(self.next_delay(), 1),
                **admitted,
            )

    def _succeeded(self, fetched: FetchedState, assessment: Assessment) -> None:
        now = self._clock()
        previous, failure = self._last_good, self._failure
        self._last_good = Polled(
            assessment, fetched.server, fetched.cluster_id, fetched.warnings, fetched.elapsed_seconds, now
        )
        self._failure = None
        state = assessment.state
        self._seen.update(state.brokers)
        if failure is not None:
            self._failures.clear()
            event(
                log,
                logging.INFO,
                "health: cluster reachable again",
                cluster=self.cluster,
                failures=failure.failures,
                unreachable_seconds=round(now - failure.since, 1),
                server=fetched.server,
            )
        elif previous is None:
            event(
                log,
                logging.INFO,
                "health: following the cluster's partitions",
                cluster=self.cluster,
                server=fetched.server,
                brokers=len(state.brokers),
                topics=len(state.topics),
                partitions=len(state.partitions),
                fetch_seconds=round(fetched.elapsed_seconds, 3),
            )
        for warning in fetched.warnings:
            admitted = self._warnings.admit(warning, failure=False)
            if admitted is not None:
                event(log, logging.WARNING, "health: " + warning, cluster=self.cluster, **admitted)
        if previous is None:
            self._first_report(assessment)
        else:
            self._record_anomalies(new_topic_anomalies(previous.assessment.topics, assessment, now))

    def _first_report(self, assessment: Assessment) -> None:
        """The placement the follower found on its first poll, said once (not an anomaly)."""
        found = assessment.report
        if found is None or not found.violations:
            return
        event(
            log,
            logging.WARNING,
            "health: existing topics break replica placement (see /health/clusters/{cluster}/placement)",
            cluster=self.cluster,
            violations=len(found.violations),
            topics=len(found.by_topic),
            rules=",".join(f"{rule}={count}" for rule, count in found.by_rule.items()),
        )

    def _record_anomalies(self, anomalies: tuple[Anomaly, ...]) -> None:
        for index, anomaly in enumerate(anomalies):
            self._anomalies.appendleft(anomaly)
            if index < LOGGED_ANOMALIES:
                event(
                    log,
                    logging.WARNING,
                    "health: new topic breaks replica placement",
                    cluster=self.cluster,
                    topic=anomaly.topic,
                    rules=",".join(f"{rule}={count}" for rule, count in anomaly.rules.items()),
                    partitions=",".join(str(p) for p in anomaly.partitions[:20])
                    + (",..." if len(anomaly.partitions) > 20 else ""),
                    example=anomaly.example,
                )
        if len(anomalies) > LOGGED_ANOMALIES:
            event(
                log,
                logging.WARNING,
                "health: more new topics break replica placement (listed at /health)",
                cluster=self.cluster,
                topics=len(anomalies) - LOGGED_ANOMALIES,
            )
        self._anomaly_count += len(anomalies)
        if self._metrics is not None and anomalies:
            self._metrics.new_topic_anomalies.labels(self.cluster).inc(len(anomalies))


class HealthFollowers:
    """One follower per Kafka cluster with `health:` settings, by name, and the names of the clusters
    without (for the endpoints' answers). Iterating gives the followers, for their owner to run."""

    def __init__(
        self, followers: dict[str, HealthFollower], without_health: tuple[str, ...], names: tuple[str, ...]
    ) -> None:
        self._followers = followers
        self.without_health = without_health
        self.names = names  # every cluster of the config, in its order, followed or not

    @classmethod
    def from_config(cls, config: Config, registry: CollectorRegistry | None = None) -> HealthFollowers:
        metrics = HealthMetrics(registry) if registry is not None else None
        followers: dict[str, HealthFollower] = {}
        without: list[str] = []
        for cluster in config.kafka_clusters:
            connection = cluster.health_connection
            if cluster.health is None or connection is None:
                without.append(cluster.name)
                continue
            followers[cluster.name] = HealthFollower(
                cluster.name, connection, cluster.health, metrics=metrics
            )
        found = cls(followers, tuple(without), tuple(c.name for c in config.kafka_clusters))
        if metrics is not None:
            metrics.follow(found.statuses)
        return found

    def __iter__(self) -> Iterator[HealthFollower]:
        return iter(self._followers.values())

    def __len__(self) -> int:
        return len(self._followers)

    def get(self, cluster: str) -> HealthFollower | None:
        return self._followers.get(cluster)

    def statuses(self) -> list[ClusterHealth]:
        return [follower.status() for follower in self._followers.values()]
