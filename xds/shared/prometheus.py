"""Conventions every kafka-xds registry follows: no `*_created` series, one set of latency buckets."""

from __future__ import annotations

from prometheus_client import disable_created_metrics

# The undocumented `*_created` series double every counter and histogram; nobody asked for them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
