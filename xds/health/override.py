"""The operator's override of a readiness check: a way to say "ready" whatever the cluster looks like,
for the day a broker is gone for good and the rest must still roll. It is always loud: an active
override's `message` names where it comes from, until when, and why.

Two sources, either enough:

* the environment variable `KAFKA_XDS_READY_OVERRIDE`: unset, empty, `0`, `false`, `no` or `off`
  mean no override; `1`, `true`, `yes` or `on` an override without reason; anything else an
  override whose reason is that text. It never expires (a redeploy removes it).
* an override file the operator creates (its path is the caller's). Its lines, all optional::

      # comments and blank lines are ignored
      for: 30m                         # expires 30 minutes after the file's mtime
      until: 2026-12-04T15:00:00Z      # or at this ISO-8601 time (no offset means UTC)
      reason: broker 3 is being rebuilt

  A duration is one or more number-unit pairs, units `s`, `m`, `h`, `d` (`90s`, `1h30m`); being
  relative to the mtime, `touch` renews it. Other lines are free text added to the reason. An empty
  file is an override without expiry or reason.

A file that exists but cannot be read or parsed (bad duration or time, both `for` and `until`, an
unknown `key:`) is an active override without expiry, and its message says the error: the
operator's intent was to override, and a typo must not silently undo it, nor silently extend it,
hence the error in the message every probe shows.

The decisions (`override_from_env`, `override_from_text`) are pure; `read_override_file` does the
one blocking read (callers run it in a thread).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "Override",
    "first_active",
    "override_from_env",
    "override_from_text",
    "parse_duration",
    "read_override_file",
]

ENV_VAR = "KAFKA_XDS_READY_OVERRIDE"
MAX_FILE_BYTES = 64 * 1024  # an override file is a few lines; a bigger one is read this far

_OFF = frozenset({"", "0", "false", "no", "off"})
_ON = frozenset({"1", "true", "yes", "on"})
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEY_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:(.*)$")


@dataclass(frozen=True, slots=True)
class Override:
    """One source's override. `active`: readiness must say ready. `expired`: there is one but its
    time has passed (so not active). `error`: the file could not be read or parsed (still active)."""

    source: str
    active: bool = False
    expired: bool = False
    reason: str | None = None
    expires_at: datetime | None = None
    error: str | None = None

    @property
    def message(self) -> str:
        """The loud line: "OVERRIDDEN by /path until 2026-12-04T15:00:00+00:00: broker 3 rebuilt"."""
        reason = f": {self.reason}" if self.reason else ""
        if self.active:
            until = f"until {self.expires_at.isoformat()}" if self.expires_at else "without expiry"
            error = f" ({self.error})" if self.error else ""
            return f"OVERRIDDEN by {self.source} {until}{error}{reason}"
        if self.expired and self.expires_at is not None:
            return f"override by {self.source} expired at {self.expires_at.isoformat()}, ignored{reason}"
        return f"no override by {self.source}"


def first_active(*overrides: Override | None) -> Override | None:
    """The first active override of several sources, None when none is."""
    return next((o for o in overrides if o is not None and o.active), None)


def override_from_env(value: str | None, name: str = ENV_VAR) -> Override:
    """The override an environment variable's value says (see the module's docstring)."""
    if value is None or value.strip().lower() in _OFF:
        return Override(name)
    text = value.strip()
    return Override(name, True, reason=None if text.lower() in _ON else text)


def parse_duration(text: str) -> timedelta:
    """`30m`, `1h30m`, `90s`, `2d` as a timedelta; ValueError for anything else."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"bad duration {text!r} (want e.g. 30m, 1h30m, 90s)")
    try:
        return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))
    except OverflowError:
        raise ValueError(f"duration {text!r} too long") from None


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"bad time {text.strip()!r} (want ISO-8601, e.g. 2026-12-04T15:00:00Z)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _after(moment: datetime, duration: timedelta) -> datetime:
    try:
        return moment + duration
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)  # expires after the end of the calendar: never


@dataclass(frozen=True, slots=True)
class _Parsed:
    expires_at: datetime | None
    reason: str | None
    error: str | None


def _parse(text: str, mtime: datetime) -> _Parsed:
    expiry: datetime | None = None
    expiry_key: str | None = None
    reasons: list[str] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _KEY_LINE.match(line)
        if match is None:
            reasons.append(line)
            continue
        key, value = match[1].lower(), match[2].strip()
        try:
            if key == "reason":
                reasons.append(value)
            elif key in ("for", "until"):
                if expiry_key is not None:
                    raise ValueError(f"{key!r} after {expiry_key!r}: give one expiry")
                expiry_key = key
                expiry = _after(mtime, parse_duration(value)) if key == "for" else _parse_time(value)
            else:
                raise ValueError(f"unknown key {match[1]!r} (want for, until or reason)")
        except ValueError as exc:
            errors.append(f"line {number}: {exc}")
    if errors:
        return _Parsed(None, " ".join(reasons) or None, "unparsable, so no expiry: " + "; ".join(errors))
    return _Parsed(expiry, " ".join(reasons) or None, None)


def override_from_text(source: str, text: str, mtime: datetime, now: datetime) -> Override:
    """The override an existing file says, given its text, its mtime and the time now (both aware).
    Active unless it names an expiry that is not after `now`."""
    parsed = _parse(text, mtime)
    if parsed.expires_at is not None and parsed.expires_at <= now:
        return Override(source, False, True, parsed.reason, parsed.expires_at)
    return Override(source, True, False, parsed.reason, parsed.expires_at, parsed.error)


def read_override_file(path: Path, now: datetime) -> Override:
    """Read an override file (blocking). No file: no override. A file that exists but cannot be read
    is an active override without expiry that says why (the operator meant to override)."""
    source = str(path)
    try:
        with path.open("rb") as file:
            mtime = datetime.fromtimestamp(os.fstat(file.fileno()).st_mtime, UTC)
            data = file.read(MAX_FILE_BYTES)
    except FileNotFoundError:
        return Override(source)
    except OSError as exc:
        return Override(source, True, error=f"unreadable, so no expiry: {exc.strerror or exc}")
    return override_from_text(source, data.decode("utf-8", errors="replace"), mtime, now)
