"""Two whole stacks on one machine at once, as two test runs (or two demos) are: neither reaches the other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.e2e.test_envoy_e2e import _answers, _cluster
from tests.support.addresses import LoopbackAddresses
from tests.support.wait import eventually
from xds.demo.brokers import Certs, exchange

pytestmark = pytest.mark.envoy

# Connections per listener: were two sidecars bound to one address and port (SO_REUSEPORT), the
# kernel would spread these over both, and 20 all landing on one sidecar is a 1-in-500000 chance.
_CONNECTIONS = 20


async def _who_answers(stack: Stack, port: int) -> set[str]:
    """The brokers that answered `_CONNECTIONS` connections to `stack`'s listener on `port`."""
    answers = await asyncio.gather(
        *(exchange(stack.loopback, port, f"to {stack.node_id}") for _ in range(_CONNECTIONS))
    )
    return {answer.split()[0] for answer in answers}


async def test_two_stacks_at_once_answer_only_from_their_own_brokers_and_hold_only_their_own_config(
    tmp_path: Path, addresses: LoopbackAddresses, certs: Certs, upstreams, envoys, xds_processes
):
    """Guards the isolation of concurrent runs: two stacks with the same Kafka cluster (kafka-a,
    brokers 1 and 2, port_base 9090), started together, each on the addresses it was given.

    With the fixed addresses the tests used before, both sidecars bound 127.0.0.10:9091 and :9092.
    Envoy binds listeners with SO_REUSEPORT, so neither bind failed: the kernel spread each
    stack's connections over both sidecars, and stack A's bytes were answered by stack B's brokers.
    Here every connection must reach its own stack's broker, and each sidecar and each kafka-xds
    must know only its own stack.
    """
    stacks = [
        Stack(tmp_path / name, certs, upstreams, envoys, xds_processes, addresses, node_id=f"app-{name}")
        for name in ("a", "b")
    ]
    await asyncio.gather(
        *(stack.start([1, 2], _cluster(stack.loopback, stack.brokers_file)) for stack in stacks)
    )
    await asyncio.gather(*(_serving(stack, port) for stack in stacks for port in (9091, 9092)))

    for stack in stacks:
        assert await _who_answers(stack, 9091) == {stack.brokers[1].name}
        assert await _who_answers(stack, 9092) == {stack.brokers[2].name}
        assert await stack.envoy.listener_addresses() == {
            "kafka-a/broker-1": f"{stack.loopback}:9091",
            "kafka-a/broker-2": f"{stack.loopback}:9092",
        }
        assert await stack.envoy.cluster_endpoints() == {
            "kafka_xds": [stack.config["xds"]["listen"]],  # its own control plane, from its bootstrap
            **{
                f"kafka-a/broker-{broker_id}": [f"{broker.host}:{broker.port}"]
                for broker_id, broker in stack.brokers.items()
            },
        }
        _, streams = await stack.server.get("/debug/streams")
        assert [stream["node_id"] for stream in streams["streams"]] == [stack.node_id]


async def _serving(stack: Stack, port: int) -> None:
    await eventually(lambda: _answers(stack.loopback, port, "broker-"), what=f"{stack.node_id}'s :{port}")
