"""The ZooKeeper source: follows a Kafka cluster's broker registrations (`<chroot>/brokers/ids`) live.

Every registration is read once per connection (kazoo drops its watches whenever a connection drops,
so a reconnect re-reads everything and reconciles), then child and data watches say what to re-read.
A lost connection keeps the last brokers, marked stale. A chroot whose `/cluster/id` changes under a
running source now holds another Kafka cluster: that is refused, and the last brokers kept. An error
nobody foresaw (a bug) is treated like a failed read: stale, logged, counted, retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from kazoo.client import KazooState
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.protocol.states import EventType, KeeperState, WatchedEvent

from xds.config.model import KafkaCluster
from xds.pipeline.sources.base import Publish, gave_up_waiting, kept
from xds.pipeline.sources.zk_session import (
    SESSIONS,
    Ensemble,
    SessionRegistry,
    SharedSession,
    Watcher,
    call_on_loop,
)
from xds.pipeline.sources.znode import (
    ZnodeError,
    parse_broker_id,
    parse_broker_registration,
    parse_cluster_id,
)
from xds.pipeline.topology import Broker, SkippedRegistration, SourceState, Topology
from xds.shared.log import Repeats, event, read_secret

log = logging.getLogger("kafka_xds.sources.zookeeper")

_WAITING_NOTICE_SECONDS = 1.0  # how long a first connection may take before /readyz says why it waits
_READ_RETRY_SECONDS = 2.0  # after a read failed on a live connection (e.g. no READ permission)

Registration = Broker | SkippedRegistration


class ZookeeperSource:
    kind = "zookeeper"

    def __init__(
        self,
        cluster: KafkaCluster,
        sessions: SessionRegistry = SESSIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cluster.zookeeper is None:
            raise ValueError(f"cluster {cluster.name} has no zookeeper source")
        self.cluster = cluster.name
        self._settings = cluster.zookeeper
        self._upstream_listener = cluster.upstream_listener
        self._sessions = sessions
        self._clock = clock
        self._ids_path = f"{self._settings.chroot}/brokers/ids"
        self._cluster_id_path = f"{self._settings.chroot}/cluster/id"
        self._ensemble_text = f"{self._settings.hosts} (chroot {self._settings.chroot or '/'})"
        self._current = Topology.create(self.cluster, self.kind, SourceState.SYNCING)
        self._publish: Publish = lambda topology: None
        self._registrations: dict[str, Registration] = {}  # by znode name under /brokers/ids
        self._cluster_id: str | None = None  # the first id seen: a later, different one is refused
        self._refused: str | None = None
        self._ids_missing = False
        self._session: SharedSession | None = None
        # Follower state, touched only on the loop thread. `_generation` counts connection state
        # changes: reads that straddle one are discarded, since their watches may be gone.
        self._wake = asyncio.Event()
        self._connected = False
        self._generation = 0
        self._resync = True
        self._children_dirty = False
        self._dirty_names: set[str] = set()
        self._failed: str | None = None
        self._read_failures = Repeats()

    @property
    def session_id(self) -> int | None:
        """The ZooKeeper session this source follows through, while connected (for tests and debug)."""
        return self._session.session_id if self._session is not None else None

    async def run(self, publish: Publish) -> None:
        self._publish = publish
        self._wake = asyncio.Event()
        self._connected, self._resync, self._failed = False, True, None
        loop = asyncio.get_running_loop()
        try:
            password = await asyncio.to_thread(self._read_credentials)
        except OSError as err:
            problem = f"cannot read ZooKeeper credentials: {err}"
            self._set(self._current.went_stale(problem, self._clock()))
            raise RuntimeError(problem) from None
        session = self._sessions.acquire(Ensemble.from_settings(self._settings, password))
        self._session = session
        watcher = self._watcher(loop)
        stop_listening = session.listen(loop, self._on_state)
        try:
            await self._follow(session, watcher)
        except Exception as err:  # the supervisor restarts the source: say meanwhile it follows nothing
            self._set(self._current.went_stale(f"ZooKeeper source failed: {err!r}", self._clock()))
            raise
        finally:
            stop_listening()
            self._session, self._connected = None, False
            await self._sessions.release(session)

    def _read_credentials(self) -> str | None:
        """The digest password; and fail early, with the file's name, on TLS files we cannot read."""
        settings = self._settings
        if settings.tls is not None:
            for tls_file in (settings.tls.ca_file, settings.tls.cert_file, settings.tls.key_file):
                if tls_file is not None:
                    Path(tls_file).read_bytes()
        if settings.auth is None:
            return None
        return read_secret(settings.auth.password_file)  # kazoo's debug lines show it otherwise

    def _watcher(self, loop: asyncio.AbstractEventLoop) -> Watcher:
        """One function for every watch this run sets, so kazoo keeps each path's watch once."""

        def watcher(watched: WatchedEvent) -> None:
            call_on_loop(loop, self._on_watch, watched)

        return watcher

    def _on_watch(self, watched: WatchedEvent) -> None:
        if watched.type == EventType.NONE:
            return  # kazoo's notice that the connection dropped; _on_state handles that
        path: str = watched.path or ""
        if path == self._ids_path:
            self._children_dirty = True
        elif path.startswith(self._ids_path + "/"):
            self._dirty_names.add(path.rpartition("/")[2])
        else:
            self._resync = True  # /cluster/id: check it again, with everything else
        self._wake.set()

    def _on_state(self, state: KazooState, keeper_state: str) -> None:
        self._generation += 1
        if state == KazooState.CONNECTED:
            self._connected, self._resync = True, True
            event(
                log,
                logging.INFO,
                "ZooKeeper session connected",
                cluster=self.cluster,
                session=_hex(self.session_id),
            )
            self._wake.set()
            return
        self._connected = False
        if state == KazooState.SUSPENDED:
            problem = f"connection to ZooKeeper {self._ensemble_text} lost; waiting for it to resume"
        elif keeper_state == KeeperState.AUTH_FAILED:
            # kazoo stops reconnecting after this: fail, so that the supervisor retries with a new client.
            problem = f"ZooKeeper {self._ensemble_text} refused our credentials"
            self._failed = problem
        else:
            problem = f"ZooKeeper session with {self._ensemble_text} expired; waiting for a new one"
        event(log, logging.WARNING, kept(self._current) + problem, cluster=self.cluster)
        self._set(self._current.went_stale(problem, self._clock()))
        self._wake.set()

    async def _follow(self, session: SharedSession, watcher: Watcher) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        notice_at: float | None = started + _WAITING_NOTICE_SECONDS
        timeout = self._settings.startup_timeout_seconds
        give_up_at = started + timeout if timeout is not None else None
        retry_at: float | None = None
        while True:
            timers = [at for at in (notice_at, give_up_at, retry_at) if at is not None]
            try:
                wait = max(0.0, min(timers) - loop.time()) if timers else None
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._failed is not None:
                raise RuntimeError(self._failed)
            now = loop.time()
            if self._current.synced_once:
                notice_at = give_up_at = None
            if notice_at is not None and now >= notice_at:
                notice_at = None
                if not self._connected:
                    problem = f"no ZooKeeper session with {self._ensemble_text} yet"
                    self._set(self._current.went_stale(problem, self._clock()))
            if give_up_at is not None and now >= give_up_at:
                give_up_at = None
                self._give_up_waiting()
            if retry_at is not None and now >= retry_at:
                retry_at, self._resync = None, True
            if not self._connected or not (self._resync or self._children_dirty or self._dirty_names):
                continue
            generation = self._generation
            try:
                await self._read(session, watcher)
            except Exception as err:
                self._resync = True
                expected = isinstance(err, KazooException | TimeoutError)
                if expected and generation != self._generation:
                    continue  # the connection changed under the read: _on_state said so already
                if expected:
                    problem = f"cannot read from ZooKeeper {self._ensemble_text}: {err!r}"
                else:  # a bug or an input nobody foresaw: never a silent restart loop while "synced"
                    problem = f"unexpected error following ZooKeeper {self._ensemble_text}: {err!r}"
                    log.debug("unexpected error in the ZooKeeper source", exc_info=True)
                fields = self._read_failures.admit(problem)  # retried every few seconds
                if fields is not None:
                    event(
                        log,
                        logging.ERROR,
                        kept(self._current) + problem,
                        cluster=self.cluster,
                        **fields,
                    )
                self._set(self._current.went_stale(problem, self._clock()))
                retry_at = loop.time() + _READ_RETRY_SECONDS

    def _give_up_waiting(self) -> None:
        reason = f"no ZooKeeper session with {self._ensemble_text} yet"
        timeout = self._settings.startup_timeout_seconds
        self._set(gave_up_waiting(self._current, reason, timeout, log))

    async def _read(self, session: SharedSession, watcher: Watcher) -> None:
        """Re-read what changed (everything, after a reconnect), then publish if anything did."""
        generation = self._generation
        full = self._resync or self._refused is not None
        # Whenever the set of brokers is read, so is the cluster id: brokers vanishing because the
        # chroot was wiped or replaced must be refused, not reported as a cluster that emptied.
        check_id = full or self._children_dirty
        names = set(self._dirty_names)
        self._dirty_names.clear()
        self._resync = self._children_dirty = False
        cluster_id = await self._read_cluster_id(session, watcher) if check_id else None
        if check_id:
            children = set(await self._read_children(session, watcher))
            names = children if full else names | (children ^ self._registrations.keys())
        ordered = sorted(names)
        contents = await asyncio.gather(
            *(self._read_registration(session, name, watcher) for name in ordered)
        )
        if generation != self._generation:
            self._resync = True
            return
        if check_id and not self._accept_cluster_id(cluster_id):
            return
        registrations: dict[str, Registration] = {} if full else dict(self._registrations)
        for name, data in zip(ordered, contents, strict=True):
            registrations.pop(name, None)
            if data is not None:
                registrations[name] = self._parse(name, data)
        self._report_skips(registrations)
        self._registrations = registrations
        failures = self._read_failures.clear()
        if failures:  # at the level of the failure it ends: the default log shows both
            event(
                log, logging.WARNING, "ZooKeeper reads succeed now", cluster=self.cluster, failures=failures
            )
        self._set(self._synced())

    async def _read_children(self, session: SharedSession, watcher: Watcher) -> list[str]:
        try:
            children = await session.get_children(self._ids_path, watcher)
        except NoNodeError:
            # No broker ever registered under this chroot (or it is the wrong one): watch for the
            # path to appear. If it appeared in between, read again.
            if await session.exists(self._ids_path, watcher):
                self._children_dirty = True
                self._wake.set()
            if not self._ids_missing:
                event(
                    log,
                    logging.WARNING,
                    "no brokers registered: the path does not exist (is the chroot right?)",
                    cluster=self.cluster,
                    path=self._ids_path,
                )
            self._ids_missing = True
            return []
        self._ids_missing = False
        return children

    async def _read_registration(self, session: SharedSession, name: str, watcher: Watcher) -> bytes | None:
        try:
            return await session.get(f"{self._ids_path}/{name}", watcher)
        except NoNodeError:
            return None  # gone since it was listed; the child watch reports it

    async def _read_cluster_id(self, session: SharedSession, watcher: Watcher) -> str | None:
        try:
            data = await session.get(self._cluster_id_path, watcher)
        except NoNodeError:
            await session.exists(self._cluster_id_path, watcher)
            return None
        try:
            return parse_cluster_id(data)
        except ZnodeError as err:
            event(
                log,
                logging.WARNING,
                "unreadable cluster id",
                cluster=self.cluster,
                path=self._cluster_id_path,
                reason=str(err),
            )
            return None

    def _accept_cluster_id(self, seen: str | None) -> bool:
        """Pin the first cluster id seen; refuse (stale, last brokers kept) while another one shows."""
        if self._cluster_id is None:
            self._cluster_id = seen
        if seen == self._cluster_id:
            if self._refused is not None:
                event(
                    log,
                    logging.WARNING,
                    "cluster id is back; following brokers again",
                    cluster=self.cluster,
                    cluster_id=seen,
                )
            self._refused = None
            return True
        problem = (
            f"{self._cluster_id_path} is {seen!r} but was {self._cluster_id!r}: the chroot now holds "
            "another Kafka cluster; refusing its brokers"
        )
        if problem != self._refused:
            event(log, logging.ERROR, kept(self._current) + problem, cluster=self.cluster)
        self._refused = problem
        self._set(self._current.went_stale(problem, self._clock()))
        return False

    def _parse(self, name: str, data: bytes) -> Registration:
        path = f"{self._ids_path}/{name}"
        broker_id: int | None = None
        try:
            broker_id = parse_broker_id(name)
            broker = parse_broker_registration(broker_id, data)
        except ZnodeError as err:
            return SkippedRegistration(path, str(err), broker_id)
        if broker.endpoint(self._upstream_listener) is None:
            names = ", ".join(listener for listener, _ in broker.listeners)
            return SkippedRegistration(
                path, f"no {self._upstream_listener!r} listener registered (has: {names})", broker_id
            )
        return broker

    def _report_skips(self, registrations: dict[str, Registration]) -> None:
        """Log each unusable registration once, when it appears or its reason changes."""
        for name, registration in registrations.items():
            if isinstance(registration, SkippedRegistration) and registration != self._registrations.get(
                name
            ):
                event(
                    log,
                    logging.ERROR,
                    "broker registration skipped; other brokers unaffected",
                    cluster=self.cluster,
                    path=registration.where,
                    reason=registration.reason,
                )

    def _synced(self) -> Topology:
        brokers = [item for item in self._registrations.values() if isinstance(item, Broker)]
        skipped = [item for item in self._registrations.values() if isinstance(item, SkippedRegistration)]
        skipped.sort(key=lambda skip: skip.where)
        error = f"{self._ids_path} does not exist: no broker has registered" if self._ids_missing else None
        return Topology.create(
            self.cluster, self.kind, SourceState.SYNCED, brokers, skipped, error, cluster_id=self._cluster_id
        )

    def _set(self, topology: Topology) -> None:
        if topology != self._current:
            self._current = topology
            self._publish(topology)


def _hex(session_id: int | None) -> str | None:
    """A session id as ZooKeeper's own logs and `cons` show it."""
    return f"0x{session_id:x}" if session_id is not None else None
