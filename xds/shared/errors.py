"""Errors every process reports the same way."""

from __future__ import annotations


class StartupError(Exception):
    """The server could not start (an address in use): one line naming the key and the address."""


class ConfigError(Exception):
    """A configuration problem, reported as `key: problem` on one line.

    Raised where the config is read and by every part that checks a setting it was given (a serving
    process reading its certificate files, say), so a caller reports them all the same way."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
