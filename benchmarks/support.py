"""What the convergence benchmarks share: watching a real Envoy's endpoints, and summing up timings."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import aiohttp

from benchmarks.load_report import rank


class EnvoyWatch:
    """Polls one Envoy's admin /clusters over a kept-alive connection."""

    def __init__(self, admin_port: int) -> None:
        self._url = f"http://127.0.0.1:{admin_port}/clusters?format=json"
        self._session = aiohttp.ClientSession()

    async def endpoints(self) -> dict[str, list[str]]:
        async with self._session.get(self._url) as response:
            body = json.loads(await response.text())
        found: dict[str, list[str]] = {}
        for status in body.get("cluster_statuses", []):
            found[status["name"]] = [
                f"{host['address']['socket_address']['address']}:{host['address']['socket_address']['port_value']}"
                for host in status.get("host_statuses", [])
            ]
        return found

    async def until(self, expected: dict[str, str], timeout: float = 30.0) -> float:
        """Poll until every named cluster has exactly its expected endpoint; return when it did."""
        deadline = time.perf_counter() + timeout
        while True:
            found = await self.endpoints()
            now = time.perf_counter()
            if all(found.get(name) == [address] for name, address in expected.items()):
                return now
            if now > deadline:
                raise TimeoutError(f"Envoy never showed {expected}")
            await asyncio.sleep(0.002)

    async def close(self) -> None:
        await self._session.close()


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(value * 1000 for value in seconds)
    p99 = rank(ms, 0.99)
    return (
        f"{label:<34} n={len(ms):<3} p50 {statistics.median(ms):6.1f} ms   p99 {p99:6.1f} ms   "
        f"min {ms[0]:6.1f}   max {ms[-1]:6.1f}"
    )
