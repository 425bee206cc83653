"""ZooKeeper sessions shared by every Kafka cluster on the same ensemble, and a bridge to asyncio.

kazoo runs its own threads: connection state changes, watches and request completions all arrive on
them. Everything here hands those over to the event loop with `call_soon_threadsafe`, so the sources
only ever see them on the loop thread, and awaits requests through kazoo's async API instead of
blocking a thread per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.protocol.states import WatchedEvent
from kazoo.retry import KazooRetry

from xds.config.model import ZookeeperSettings
from xds.shared.log import RepeatLimitedLogger, Repeats, event

log = logging.getLogger("kafka_xds.sources.zookeeper")

Watcher = Callable[[WatchedEvent], None]
StateCallback = Callable[[KazooState, str], None]  # kazoo's state, and ZooKeeper's (e.g. AUTH_FAILED)
# kazoo's default reconnect backoff grows to an hour; after an outage we want the ensemble back at once.
_RECONNECT_MAX_DELAY_SECONDS = 2.0
_CLOSE_WAIT_SECONDS = 1.0  # we own no ephemeral znodes: a clean close is nice, not needed


@dataclass(frozen=True, slots=True)
class Ensemble:
    """What makes two clusters' sessions interchangeable: same servers, same timeout, same identity."""

    hosts: str
    session_timeout_seconds: float
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_check_hostname: bool = True

    @classmethod
    def from_settings(cls, settings: ZookeeperSettings, password: str | None = None) -> Ensemble:
        tls = settings.tls
        return cls(
            ",".join(entry.strip() for entry in settings.hosts.split(",")),
            settings.session_timeout_seconds,
            settings.auth.username if settings.auth else None,
            password,
            tls.ca_file if tls else None,
            tls.cert_file if tls else None,
            tls.key_file if tls else None,
            tls.check_hostname if tls else True,
        )

    def new_client(self) -> KazooClient:
        """A KazooClient for this ensemble; not started."""
        auth = [("digest", f"{self.username}:{self.password}")] if self.username is not None else None
        retry = KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=_RECONNECT_MAX_DELAY_SECONDS)
        # kazoo logs why a connection attempt failed (`Cannot resolve zk-1`) for every host on every
        # retry, forever (24 lines in 10 s for three hosts): each line once, a reminder a minute,
        # and the recovery.
        repeats = Repeats()
        client = KazooClient(
            hosts=self.hosts,
            timeout=self.session_timeout_seconds,
            auth_data=auth,
            connection_retry=retry,
            use_ssl=self.tls_ca_file is not None,
            ca=self.tls_ca_file,
            certfile=self.tls_cert_file,
            keyfile=self.tls_key_file,
            check_hostname=self.tls_check_hostname,
            logger=RepeatLimitedLogger(
                logging.getLogger("kafka_xds.sources.kazoo"), repeats, hosts=self.hosts
            ),
        )
        client.add_listener(functools.partial(_log_recovery, repeats, self.hosts))
        return client


def _log_recovery(repeats: Repeats, hosts: str, state: KazooState) -> bool:
    """On a kazoo thread, for every state change: once connected, the connection problems ended."""
    if state == KazooState.CONNECTED:
        failures = repeats.clear()
        if failures:
            event(log, logging.WARNING, "ZooKeeper connection recovered", hosts=hosts, failures=failures)
    return False  # keep listening


def call_on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """From a kazoo thread: run `callback(*args)` on the loop thread; dropped if the loop has closed."""
    with contextlib.suppress(RuntimeError):  # the loop is gone (shutdown): nobody is left to tell
        loop.call_soon_threadsafe(callback, *args)


class SharedSession:
    """One KazooClient (one ZooKeeper session at a time) used by every source on one ensemble."""

    def __init__(self, ensemble: Ensemble, client: KazooClient) -> None:
        self.ensemble = ensemble
        self.client = client
        self.users = 0

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    @property
    def session_id(self) -> int | None:
        """The current ZooKeeper session id while connected (what `echo cons | nc` lists as sid)."""
        client_id = self.client.client_id if self.connected else None
        return int(client_id[0]) if client_id else None

    def listen(self, loop: asyncio.AbstractEventLoop, on_state: StateCallback) -> Callable[[], None]:
        """Call `on_state(state, keeper_state)` on the loop for every state change, starting with the
        current state if connected. Returns the function that stops listening."""

        def listener(state: KazooState) -> bool:
            # Read the detailed state here: by the time the loop runs, kazoo may have moved on.
            call_on_loop(loop, on_state, state, str(self.client.client_state))
            return False  # keep listening

        self.client.add_listener(listener)
        if self.connected:
            call_on_loop(loop, on_state, KazooState.CONNECTED, str(self.client.client_state))
        return lambda: self.client.remove_listener(listener)

    async def get_children(self, path: str, watch: Watcher) -> list[str]:
        children: list[str] = await self._result(self.client.get_children_async(path, watch=watch))
        return children

    async def get(self, path: str, watch: Watcher) -> bytes:
        data, _stat = await self._result(self.client.get_async(path, watch=watch))
        return bytes(data or b"")

    async def exists(self, path: str, watch: Watcher) -> bool:
        return await self._result(self.client.exists_async(path, watch=watch)) is not None

    async def _result(self, pending: Any) -> Any:
        """Await a kazoo IAsyncResult: its completion callback runs on a kazoo thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any) -> None:
            try:
                value = result.get_nowait()
            except Exception as err:
                call_on_loop(loop, _fail, future, err)
            else:
                call_on_loop(loop, _succeed, future, value)

        pending.rawlink(settle)
        # kazoo fails pending requests when the connection drops; this only guards against a hang.
        return await asyncio.wait_for(future, timeout=2 * self.ensemble.session_timeout_seconds + 5)


def _succeed(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class SessionRegistry:
    """The process's ZooKeeper sessions, one per ensemble, counted by the sources using them."""

    def __init__(self, client_factory: Callable[[Ensemble], KazooClient] = Ensemble.new_client) -> None:
        self._client_factory = client_factory
        self._sessions: dict[Ensemble, SharedSession] = {}
        self._lock = threading.Lock()

    def acquire(self, ensemble: Ensemble) -> SharedSession:
        """The session for `ensemble`, connecting in the background if it is the first user."""
        with self._lock:
            session = self._sessions.get(ensemble)
            if session is None:
                session = SharedSession(ensemble, self._client_factory(ensemble))
                self._sessions[ensemble] = session
                # start_async only spawns kazoo's threads; connecting and retrying happen on them.
                session.client.start_async()
                event(log, logging.INFO, "connecting to ZooKeeper", hosts=ensemble.hosts)
            session.users += 1
            return session

    async def release(self, session: SharedSession) -> None:
        """Drop one user; the last one closes the session (kazoo's stop can block: not on the loop)."""
        with self._lock:
            session.users -= 1
            if session.users > 0:
                return
            if self._sessions.get(session.ensemble) is session:
                del self._sessions[session.ensemble]
        loop = asyncio.get_running_loop()
        closed = loop.create_future()

        def close() -> None:
            try:
                if isinstance(session.client.logger, RepeatLimitedLogger):
                    session.client.logger.closing()  # our stop is no connection failure
                session.client.stop()
                session.client.close()
            finally:
                call_on_loop(loop, _succeed, closed, None)

        # A daemon thread, not the default executor: with ZooKeeper down, stop() waits for up to a
        # session timeout, and a shutdown must not wait for it (nor must interpreter exit).
        threading.Thread(target=close, name="kazoo-close", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(closed), _CLOSE_WAIT_SECONDS)
        except TimeoutError:
            event(
                log,
                logging.WARNING,
                "ZooKeeper session still closing; not waiting",
                hosts=session.ensemble.hosts,
            )

    def __len__(self) -> int:
        return len(self._sessions)


SESSIONS = SessionRegistry()
