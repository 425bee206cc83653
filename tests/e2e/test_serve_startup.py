"""`kafka-xds serve` when it cannot start: one line naming the key and the address, exit 2, nothing
left running."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_static_brokers
from tests.support.addresses import LoopbackAddresses
from tests.support.wait import free_port


def _config(path: Path, xds: str, debug: str, workers: int) -> Path:
    brokers = write_static_brokers(
        path.parent / "brokers.yaml", [{"id": 1, "host": "10.0.0.1", "port": 9094}]
    )
    path.write_text(
        yaml.safe_dump(
            {
                "xds": {"listen": xds, "workers": workers, "tls": None},
                "debug": {"listen": debug},
                "upstream_tls": None,
                "kafka_clusters": [
                    {
                        "name": "kafka-a",
                        "loopback_ip": "127.0.0.10",
                        "port_base": 9090,
                        "upstream_listener": "MESH",
                        "static": {"file": str(brokers)},
                    }
                ],
            }
        )
    )
    return path


async def _serve(config: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xds",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("busy", ["xds", "debug"])
async def test_an_address_in_use_is_one_line_and_exit_2(
    tmp_path, addresses: LoopbackAddresses, busy, workers
):
    host = addresses.take()
    xds, debug = f"{host}:{free_port(host)}", f"{host}:{free_port(host)}"
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as another kafka-xds would hold it
    target = xds if busy == "xds" else debug
    holder.bind((host, int(target.rsplit(":", 1)[1])))
    holder.listen()
    try:
        code, stderr = await _serve(_config(tmp_path / "c.yaml", xds, debug, workers))
    finally:
        holder.close()
    assert code == 2
    lines = stderr.strip().splitlines()
    assert lines == [f"kafka-xds: cannot start: {busy}.listen: cannot listen on {target}: address in use"]
    # Nothing half-started: the other address is free again.
    other = debug if busy == "xds" else xds
    with socket.socket() as probe:
        probe.bind((host, int(other.rsplit(":", 1)[1])))
