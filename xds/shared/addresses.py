"""Addresses: listen addresses (`host:port`, `[v6]:port`), hosts, broker endpoints, and the check
that a listen address is free before a server binds it."""

from __future__ import annotations

import errno
import functools
import ipaddress
import re
import socket
from dataclasses import dataclass

from xds.shared.errors import StartupError

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True, order=True)
class HostPort:
    """A TCP endpoint as a broker registered it (host may be an IP literal or a DNS name)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        return is_ip(self.host)


@functools.lru_cache(maxsize=65536)
def is_ip(host: str) -> bool:
    """An IPv4 or IPv6 literal. Asked of every broker on every plan: parsing each time was most of a
    plan's cost, so answers are remembered."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_host(host: str) -> bool:
    """An IPv4 or IPv6 literal, or a DNS name as RFC 1123 allows (a trailing dot is fine)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        name = host.removesuffix(".")
        return 0 < len(name) <= 253 and all(_DNS_LABEL.match(label) for label in name.split("."))
    return True


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into its parts (port 0: any free port, for tests and demos)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"expected HOST:PORT with a port in 0..65535, got {value!r}")
    return host.strip("[]"), port


def join_listen(host: str, port: int) -> str:
    """The inverse of `parse_listen`: `host:port`, or `[v6]:port`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reserve_port(key: str, listen: str) -> int:
    """Check that `listen` is free (any other listener on it, with or without SO_REUSEPORT, makes
    binding fail) and return its port, a free one for port 0; raise StartupError naming `key`.

    kafka-xds' own workers bind the ADS port with SO_REUSEPORT, which would let a second kafka-xds on
    the same port silently share its traffic; checking first makes that a clear error instead."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            probe.bind((host, port))
        except OSError as err:
            reason = "address in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
            raise StartupError(f"{key}: cannot listen on {listen}: {reason}") from None
        bound: int = probe.getsockname()[1]
        return bound
