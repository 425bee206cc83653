"""Errors every process reports the same way."""

from __future__ import annotations


class StartupError(Exception):
    """The server could not start (an address in use): one line naming the key and the address."""
