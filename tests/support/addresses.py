"""This test run's own loopback addresses, so that two runs on one machine never reach each other.

Envoy binds its listeners with SO_REUSEPORT, and so do gRPC servers: a second run binding the same
address and port does not fail, it silently takes a share of the first run's connections. So every
address a test binds, or hands to Envoy or kafka-xds, comes from a /24 inside 127.0.0.0/8 drawn at
random for this run (127.0.y.0/24, where hosts keep their own names, is never drawn). The run claims
each block it draws by holding a socket bound to the block's .0 address, which no test uses, until
it ends: another run that draws the same block finds the claim and draws again.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Iterator
from types import TracebackType

_CLAIM_PORT = 65535  # on the block's .0 address, which is never handed out
_DRAWS = 100
_RANDOM = random.SystemRandom()  # unaffected by tests that seed `random`


class LoopbackAddresses:
    """Hands out distinct loopback addresses (`take`) and whole /24 blocks (`network`) for one run."""

    def __init__(self) -> None:
        self._claims: list[socket.socket] = []
        self._hosts: Iterator[ipaddress.IPv4Address] = iter(())

    def take(self) -> str:
        """An address no other test of this run, and no other run, is given."""
        host = next(self._hosts, None)
        if host is None:
            self._hosts = self.network().hosts()  # .1-.254
            host = next(self._hosts)
        return str(host)

    def network(self) -> ipaddress.IPv4Network:
        """A /24 of this run's own, none of whose addresses `take` hands out."""
        for _ in range(_DRAWS):
            block = ipaddress.IPv4Network((f"127.{_RANDOM.randint(1, 254)}.{_RANDOM.randint(0, 255)}.0", 24))
            claim = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                claim.bind((str(block.network_address), _CLAIM_PORT))
            except OSError:
                claim.close()  # another run holds this block
                continue
            self._claims.append(claim)
            return block
        raise RuntimeError(f"no free /24 in 127.0.0.0/8 after {_DRAWS} draws (port {_CLAIM_PORT} taken?)")

    def close(self) -> None:
        for claim in self._claims:
            claim.close()
        self._claims.clear()

    def __enter__(self) -> LoopbackAddresses:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
