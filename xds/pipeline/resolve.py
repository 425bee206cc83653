"""Resolving brokers' DNS names to the IPs that EDS endpoints need.

Brokers often register DNS names (KRaft clusters usually advertise them), but an EDS endpoint must
be an IP address. kafka-xds resolves names itself, without blocking the event loop, and re-resolves
them periodically: a StatefulSet pod keeps its name when it is rescheduled, only the IP behind it
changes. The name stays the TLS server name (SNI), so certificates issued for names keep working.
A failed lookup keeps the last good answer; a name never resolved is reported, not guessed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from xds.shared.log import event

log = logging.getLogger("kafka_xds.resolve")


@dataclass(frozen=True, slots=True)
class Resolution:
    host: str
    address: str | None  # the IP used for the endpoint; None when the name never resolved
    resolved_at: float | None
    error: str | None = None


class HostResolver:
    def __init__(
        self,
        refresh_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresh_seconds = refresh_seconds
        self._timeout_seconds = timeout_seconds
        self._clock = clock
        self._known: dict[str, Resolution] = {}

    @property
    def next_refresh(self) -> float | None:
        """When the oldest answer is due again (monotonic clock), or None with no names to follow."""
        times = [known.resolved_at or 0.0 for known in self._known.values()]
        return min(times) + self._refresh_seconds if times else None

    async def resolve(self, hosts: Iterable[str]) -> Mapping[str, Resolution]:
        """Answers for `hosts` (names only), looking up those never seen or due for a refresh."""
        wanted = sorted(set(hosts))
        self._known = {host: self._known[host] for host in wanted if host in self._known}
        now = self._clock()
        due = [
            host
            for host in wanted
            if host not in self._known
            or (self._known[host].resolved_at or 0.0) + self._refresh_seconds <= now
        ]
        if due:
            answers = await asyncio.gather(*(self._lookup(host) for host in due))
            for host, answer in zip(due, answers, strict=True):
                self._known[host] = self._merge(host, self._known.get(host), answer, now)
        return dict(self._known)

    def _merge(
        self, host: str, previous: Resolution | None, answer: str | BaseException, now: float
    ) -> Resolution:
        if isinstance(answer, str):
            if previous is not None and previous.address not in (None, answer):
                event(
                    log,
                    logging.INFO,
                    "broker name resolves to a new address",
                    host=host,
                    before=previous.address,
                    after=answer,
                )
            return Resolution(host, answer, now)
        error = f"cannot resolve {host}: {answer}"
        if previous is not None and previous.address is not None:
            event(
                log,
                logging.WARNING,
                "cannot resolve broker name; keeping its last address",
                host=host,
                address=previous.address,
                error=error,
            )
            return Resolution(host, previous.address, now, error)
        return Resolution(host, None, now, error)

    async def _lookup(self, host: str) -> str | BaseException:
        loop = asyncio.get_running_loop()
        try:
            # getaddrinfo runs in the loop's thread pool: the event loop never blocks on DNS.
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), self._timeout_seconds
            )
        except (OSError, TimeoutError) as err:
            return err
        addresses = sorted({str(info[4][0]) for info in infos}, key=_ipv4_first)
        if not addresses:
            return OSError(f"no addresses for {host}")
        return addresses[0]


def _ipv4_first(address: str) -> tuple[int, str]:
    return (ipaddress.ip_address(address).version, address)
