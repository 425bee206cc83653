"""Out of file descriptors, asyncio reports every failed accept: its repeated lines are kept to one
per minute, counting the rest, as every other repeated problem is."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap

from tests.support.addresses import LoopbackAddresses
from xds.shared.log import Repeats, RepeatsFilter

# A server on an event loop, then a file descriptor limit it cannot accept one more connection under.
_SERVER = textwrap.dedent(
    """
    import asyncio, os, resource, sys
    from xds.shared.log import configure

    configure("warning")

    async def main():
        server = await asyncio.start_server(lambda reader, writer: None, sys.argv[1], 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        in_use = len(os.listdir("/proc/self/fd"))
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 4, hard))
        await asyncio.sleep(3)

    asyncio.run(main())
    """
)


def test_accept_errors_under_fd_exhaustion_are_logged_once_not_thousands_of_times(
    addresses: LoopbackAddresses,
):
    host = addresses.take()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, host], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = int(server.stdout.readline())
    held = []
    try:
        for _ in range(40):
            held.append(socket.create_connection((host, port), timeout=5))
        _, stderr = server.communicate(timeout=30)
    finally:
        for connection in held:
            connection.close()
        server.kill()
    lines = [line for line in stderr.splitlines() if "out of system resource" in line]
    assert len(lines) == 1, f"{len(lines)} lines, {len(stderr)} characters"


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_repeated_record_is_dropped_then_reminded_with_its_count():
    now = [0.0]
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("kafka_xds.test.repeats_filter")
    logger.propagate = False
    handler = _Collect(records)
    logger.addHandler(handler)
    logger.addFilter(RepeatsFilter(Repeats(interval=60.0, clock=lambda: now[0])))
    try:
        for _ in range(500):
            logger.error("socket.accept() out of system resource")
        logger.error("something else")
        now[0] = 61.0
        logger.error("socket.accept() out of system resource")
    finally:
        logger.removeHandler(handler)
    assert [record.getMessage() for record in records] == [
        "socket.accept() out of system resource",
        "something else",
        "socket.accept() out of system resource",
    ]
    assert records[2].__dict__["repeated"] == 500  # this one and the 499 dropped
