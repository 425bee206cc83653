"""Benchmarks: each prints its figures; run them with `make bench`."""
