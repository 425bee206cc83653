"""Where the demo's pieces listen: one /24 inside 127.0.0.0/8 and three ports, each an option.

Every address keeps its host number in the /24 (by default 127.0.0.0/24): .1 serves kafka-xds (ADS,
status page), Envoy's admin API and ZooKeeper; .10 and .11 are kafka-a's and kafka-b's loopback IPs
(config/demo.yaml); kafka-a's brokers run on .21-.23, kafka-b's on .41-.42 (its KRaft controller on
.50), and kafka-a's broker 2 is rescheduled onto .32. Another /24 and other ports let a second demo
(or a test) run beside the first.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_NETWORK = ipaddress.IPv4Network("127.0.0.0/24")
_SERVICES = 1  # kafka-xds, Envoy's admin API, ZooKeeper
# Where each broker's pod runs: Kafka cluster -> broker id -> host number in the /24.
POD_HOSTS: Mapping[str, Mapping[int, int]] = {"kafka-a": {1: 21, 2: 22, 3: 23}, "kafka-b": {1: 41, 2: 42}}
MOVED_BROKER, MOVED_TO_HOST = ("kafka-a", 2), 32
CONTROLLER_HOST = 50  # kafka-b's KRaft controller (the real-Kafka demo)
_LOOPBACK_RANGE = ipaddress.IPv4Network("127.0.0.0/8")


@dataclass(frozen=True)
class DemoAddresses:
    network: ipaddress.IPv4Network = DEFAULT_NETWORK
    xds_port: int = 18000
    debug_port: int = 19000
    admin_port: int = 9901

    def ip(self, host_number: int) -> str:
        return str(self.network[host_number])

    @property
    def services(self) -> str:
        """The address kafka-xds, Envoy's admin API and ZooKeeper listen on."""
        return self.ip(_SERVICES)

    def pod_ip(self, cluster: str, broker_id: int) -> str:
        return self.ip(POD_HOSTS[cluster][broker_id])

    @property
    def moved_to(self) -> str:
        return self.ip(MOVED_TO_HOST)

    def pod_ips(self) -> list[str]:
        """Every IP a broker runs on, the rescheduled broker's new one included."""
        return [self.pod_ip(c, b) for c, brokers in POD_HOSTS.items() for b in brokers] + [self.moved_to]

    def same_host(self, address: str) -> str:
        """`address` moved into this /24, keeping its host number (127.0.0.10 -> .10)."""
        return self.ip(int(ipaddress.IPv4Address(address)) & 0xFF)


def loopback_network(value: str) -> ipaddress.IPv4Network:
    """argparse type: a /24 inside 127.0.0.0/8, e.g. 127.5.0.0/24."""
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r}: {err}") from None
    if network.prefixlen != 24 or not network.subnet_of(_LOOPBACK_RANGE):
        raise argparse.ArgumentTypeError(f"{value!r} is not a /24 inside 127.0.0.0/8 (e.g. 127.5.0.0/24)")
    return network


def port(value: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (1-65535)")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DemoAddresses()
    parser.add_argument(
        "--loopback-net",
        type=loopback_network,
        default=defaults.network,
        metavar="127.X.Y.0/24",
        help="the /24 every demo address is in, each keeping its host number: kafka-xds, Envoy admin "
        "and ZooKeeper on .1, the clusters' loopback IPs .10/.11, brokers on .21-23 and .41-42, "
        f"the rescheduled broker on .32 (default: {defaults.network})",
    )
    parser.add_argument(
        "--xds-port",
        type=port,
        default=defaults.xds_port,
        metavar="PORT",
        help="kafka-xds's ADS port (default: %(default)s)",
    )
    parser.add_argument(
        "--debug-port",
        type=port,
        default=defaults.debug_port,
        metavar="PORT",
        help="kafka-xds's status page and debug API port (default: %(default)s)",
    )
    parser.add_argument(
        "--admin-port",
        type=port,
        default=defaults.admin_port,
        metavar="PORT",
        help="Envoy's admin API port (default: %(default)s)",
    )


def from_arguments(args: argparse.Namespace) -> DemoAddresses:
    return DemoAddresses(args.loopback_net, args.xds_port, args.debug_port, args.admin_port)
