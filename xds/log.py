"""Structured logs: one line per event, `key=value` (logfmt) or JSON, quiet (warnings) by default."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log `message` with structured fields: `event(log, logging.ERROR, "bad znode", path=p)`."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"fields": fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(getattr(record, "fields", {}))
    fields.update({key: value for key, value in record.__dict__.items() if key not in _RESERVED | {"fields"}})
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        parts.update(_fields(record))
        line = " ".join(f"{key}={_quote(value)}" for key, value in parts.items())
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body.update(_fields(record))
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def _quote(value: Any) -> str:
    text = str(value)
    if text and not any(char in text for char in ' "=\n\t'):
        return text
    return json.dumps(text)


def configure(level: str = "warning", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kazoo warns on every reconnect attempt (every ~2 s while ZooKeeper is away) and aiokafka on
    # every failed connection; our sources log each outage once, with what they kept. Their own
    # lines show at debug level.
    quiet = logging.DEBUG if root.level <= logging.DEBUG else max(root.level, logging.ERROR)
    for library in _CHATTY_LIBRARIES:
        logging.getLogger(library).setLevel(quiet)


_CHATTY_LIBRARIES = ("kazoo", "aiokafka")
