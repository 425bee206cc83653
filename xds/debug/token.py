"""The debug server's bearer token, followed as its file changes (a rotated Kubernetes Secret).

Like the xDS server's certificates, the file is known by a signature (device, inode, size, mtime):
at most once a second a request has it checked, in a thread (a stat can block on a slow volume)
that no request waits for, and only a changed file is read again. A file that cannot be read
(emptied or half-written mid-rotation) is warned about once and the last token kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from xds.config.model import ConfigError
from xds.shared.log import Repeats, event, register_secret

log = logging.getLogger("kafka_xds.debug")
_CHECK_SECONDS = 1.0
_Signature = tuple[int, int, int, int]


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError("debug.token_file", f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError("debug.token_file", f"{path} is not UTF-8 text") from None
    if not token:
        raise ConfigError("debug.token_file", f"{path} is empty")
    register_secret(token)  # e.g. in an access log line for `?token=`
    return token


def _signature(path: str) -> _Signature | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


class DebugToken:
    """The token of `debug.token_file`: read at start (a bad file stops the start), then followed."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._path, self._clock = path, clock
        self._signature = _signature(path)
        self._token = read_token(path)
        self._checked = clock()
        self._following: asyncio.Future[None] | None = None
        self._repeats = Repeats()

    def current(self) -> str:
        """The token as last read. At most once a second this has the file checked in a thread,
        without waiting for it (no request waits for a thread a snapshot build may be using): a
        changed token is in force from the request after it was read."""
        now = self._clock()
        if now - self._checked >= _CHECK_SECONDS and self._following is None:
            self._checked = now
            self._following = asyncio.get_running_loop().run_in_executor(None, self._follow)
            self._following.add_done_callback(self._followed)
        return self._token

    def _followed(self, done: asyncio.Future[None]) -> None:
        self._following = None
        if not done.cancelled() and done.exception() is not None:
            event(log, logging.ERROR, "debug token file check failed", error=repr(done.exception()))

    def _follow(self) -> None:
        signature = _signature(self._path)
        if signature == self._signature:
            return
        try:
            token = read_token(self._path)
        except ConfigError as err:
            admitted = self._repeats.admit(str(err))
            if admitted is not None:
                event(
                    log,
                    logging.WARNING,
                    "debug token file unusable; the last token kept",
                    error=str(err),
                    **admitted,
                )
            return  # the signature is kept too: read again at the next check
        self._signature = signature
        self._repeats.clear()
        if token != self._token:
            self._token = token
            event(log, logging.INFO, "debug token reloaded", file=self._path)
