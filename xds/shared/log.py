"""Structured logs: one line per event, `key=value` (logfmt) or JSON, quiet (warnings) by default.

Two guards sit between every logger (ours and the libraries') and the output: secrets registered
where they are read, and the credential-carrying packets kazoo and aiokafka log at debug level, are
redacted from every line; and `Repeats` keeps a problem that recurs every few seconds to one line
when it starts or changes, a reminder per minute, and one line when it ends (asyncio's own
repeated lines, such as a failed accept per connection when file descriptors run out, through
`RepeatsFilter`).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
REDACTED = "<redacted>"
REMINDER_SECONDS = 60.0  # a problem that persists is repeated in the log at most this often
_MAX_REMEMBERED_LINES = 100  # distinct lines one Repeats remembers (texts may carry varying details)


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
        # A field without a value (error=None once a source recovered) says nothing: left out.
        line = " ".join(f"{key}={_quote(value)}" for key, value in parts.items() if value is not None)
        if record.exc_info or record.exc_text:
            line += " exc=" + _quote(_exception(self, record))
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
        if record.exc_info or record.exc_text:
            body["exc"] = _exception(self, record)
        return json.dumps(body, default=str)


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    # exc_text is the traceback as _Redact left it: formatting exc_info again would undo that.
    return record.exc_text or formatter.formatException(record.exc_info)  # type: ignore[arg-type]


def _quote(value: Any) -> str:
    text = str(value)
    if text and not any(char in text for char in ' "=\n\t'):
        return text
    return json.dumps(text)


def configure(level: str = "warning", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(_Redact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kazoo's and aiokafka's module loggers show at debug level only. The ZooKeeper connection
    # logger each session gets (`kafka_xds.sources.kazoo`) stays on: it alone says why a connection
    # fails (`Cannot resolve zk-1`), and Repeats keeps it from repeating that on every retry.
    quiet = logging.DEBUG if root.level <= logging.DEBUG else max(root.level, logging.ERROR)
    for library in _CHATTY_LIBRARIES:
        logging.getLogger(library).setLevel(quiet)
    repeating = logging.getLogger("asyncio")
    for installed in [each for each in repeating.filters if isinstance(each, RepeatsFilter)]:
        repeating.removeFilter(installed)  # configured again (tests): one filter, not two
    repeating.addFilter(RepeatsFilter())


_CHATTY_LIBRARIES = ("kazoo", "aiokafka")

# --- secrets -------------------------------------------------------------------------------------

_secrets: tuple[str, ...] = ()  # longest first; replaced, never mutated: read without a lock
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never write `value` (a password, a token) in a log line, whoever logs it: call where it is read."""
    global _secrets
    if not value:
        return
    # The forms it takes inside a repr (a str's or a bytes' escapes) and a JSON string.
    forms = {value, repr(value)[1:-1], repr(value.encode())[2:-1], json.dumps(value)[1:-1]}
    with _secrets_lock:
        _secrets = tuple(sorted(forms.union(_secrets), key=len, reverse=True))


def read_secret(path: str) -> str:
    """A password from a file (without its final line break), registered so no log line shows it.
    Raises OSError or UnicodeDecodeError as reading the file does."""
    secret = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    register_secret(secret)
    return secret


# Library packets whose repr carries credentials, by (module, class name): the fields to hide.
# kazoo logs every request it sends at debug level, aiokafka too; a bytes repr is cut at 100 bytes by
# aiokafka, so a long password would show in part, matching no registered value.
_CREDENTIAL_PACKETS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("kazoo.protocol.serialization", "Auth"): ("auth",),  # digest `user:password`
    ("kazoo.protocol.serialization", "SASL"): ("challenge",),
    ("kazoo.protocol.serialization", "Connect"): ("passwd",),  # the session's password, on reconnects
    ("aiokafka.protocol.admin", "SaslAuthenticateRequest_v0"): ("sasl_auth_bytes",),  # PLAIN: \0user\0pw
    ("aiokafka.protocol.admin", "SaslAuthenticateRequest_v1"): ("sasl_auth_bytes",),
}


class _Hidden:
    def __repr__(self) -> str:
        return REDACTED


def _hide_credentials(arg: Any) -> Any:
    kind = type(arg)
    hidden = _CREDENTIAL_PACKETS.get((kind.__module__, kind.__name__))
    if hidden is None:
        return arg
    if hasattr(arg, "_replace"):  # kazoo's namedtuples: keep the other fields (scheme, session id)
        return arg._replace(**dict.fromkeys(hidden, _Hidden()))
    return f"{kind.__name__}({', '.join(f'{name}={REDACTED}' for name in hidden)})"


def without_secrets(text: str) -> str:
    """`text` with every registered secret replaced: for text shown anywhere but a log line (the
    status page's events), which the output filter does not see."""
    return _redact(text)


def _redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class _Redact(logging.Filter):
    """On the output handler: every record, from any logger, leaves without credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {key: _hide_credentials(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(_hide_credentials(arg) for arg in record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format call: logging reports those, not our filter
            message = f"{record.msg} {record.args}"
        record.msg, record.args = _redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _redact(record.exc_text)
        if record.stack_info:
            record.stack_info = _redact(record.stack_info)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {key: self._field(value) for key, value in fields.items()}
        for key in record.__dict__.keys() - _RESERVED - {"fields"}:
            setattr(record, key, self._field(getattr(record, key)))
        return True

    @staticmethod
    def _field(value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        text = str(value)
        redacted = _redact(text)
        return value if redacted == text else redacted


# --- repeats -------------------------------------------------------------------------------------


class Repeats:
    """Which lines of a recurring problem to write: each distinct line when it first appears, then
    the same line at most once per `interval`, saying how often it came meanwhile, until `clear()`
    says the problem ended. Thread-safe: kazoo logs from its own threads."""

    def __init__(self, interval: float = REMINDER_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._interval, self._clock = interval, clock
        self._lock = threading.Lock()
        self._lines: dict[str, tuple[float, int]] = {}  # line -> (last written, times since then)
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failures (lines admitted with `failure=True`) since the last clear, written or not."""
        return self._failures

    def admit(self, line: str, failure: bool = True) -> dict[str, int] | None:
        """None: drop the line (written lately). Else the fields to write it with: `{}` when new,
        `{"repeated": n}` for a reminder, n counting this one and those dropped since the last."""
        now = self._clock()
        with self._lock:
            self._failures += failure
            seen = self._lines.get(line)
            if seen is not None and now - seen[0] < self._interval:
                self._lines[line] = (seen[0], seen[1] + 1)
                return None
            if seen is None and len(self._lines) >= _MAX_REMEMBERED_LINES:
                del self._lines[next(iter(self._lines))]
            self._lines[line] = (now, 0)
            return {"repeated": seen[1] + 1} if seen is not None else {}

    def clear(self) -> int:
        """The problem ended: forget its lines, so the next one shows at once. Returns `failures`."""
        with self._lock:
            failures, self._failures = self._failures, 0
            self._lines.clear()
            return failures


class RepeatsFilter(logging.Filter):
    """On a library's logger that repeats itself (asyncio, out of file descriptors, reports every
    failed accept, thousands a second): each distinct message once, then once per interval with
    `repeated`, the number of times it came since it was last written. (The traceback is not part
    of the message: one failed accept per listening socket is one message.)"""

    def __init__(self, repeats: Repeats | None = None) -> None:
        super().__init__()
        self.repeats = repeats if repeats is not None else Repeats()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            line = record.getMessage()
        except (TypeError, ValueError):
            return True  # a bad format call: logging reports those
        admitted = self.repeats.admit(f"{record.levelno} {line}")
        if admitted is None:
            return False
        for key, value in admitted.items():
            setattr(record, key, value)
        return True


class RepeatLimitedLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger to hand a library (kazoo's connection): `fields` on every line, and its lines at info
    and up through `repeats` (warnings and up count as failures). Debug lines pass as they are."""

    def __init__(self, logger: logging.Logger, repeats: Repeats, **fields: Any) -> None:
        super().__init__(logger, {})
        self.repeats = repeats
        self._fields = fields
        self._closing = False

    def closing(self) -> None:
        """Its owner is stopping the library's client: warnings about that are debug detail now
        (kazoo, stopped while it retries, warns it 'failed connecting within the retry policy')."""
        self._closing = True

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self._closing and logging.WARNING <= level < logging.ERROR:
            level = logging.DEBUG
        if not self.isEnabledFor(level):
            return
        extra: dict[str, Any] = dict(self._fields)
        if level >= logging.INFO:
            try:
                line = str(msg) % args if args else str(msg)
            except (TypeError, ValueError):
                line = f"{msg} {args}"
            admitted = self.repeats.admit(line, failure=level >= logging.WARNING)
            if admitted is None:
                return
            extra.update(admitted)
        kwargs["extra"] = {"fields": extra}
        self.logger.log(level, msg, *args, **kwargs)
