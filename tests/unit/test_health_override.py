"""The readiness override, rule by rule: the environment variable, the override file and its expiry,
and a malformed file still overriding, loudly."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xds.health.override import (
    ENV_VAR,
    Override,
    first_active,
    override_from_env,
    override_from_text,
    parse_duration,
    read_override_file,
)

MTIME = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NOW = MTIME + timedelta(minutes=10)


def _text(text: str, now: datetime = NOW) -> Override:
    return override_from_text("/etc/kafka-xds/override", text, MTIME, now)


# -- environment ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "0", "false", "No", " off "])
def test_an_unset_or_false_env_var_is_no_override(value: str | None):
    override = override_from_env(value)
    assert not override.active
    assert override.message == f"no override by {ENV_VAR}"


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_a_true_env_var_is_an_override_without_reason(value: str):
    override = override_from_env(value)
    assert override.active
    assert override.reason is None
    assert override.message == f"OVERRIDDEN by {ENV_VAR} without expiry"


def test_any_other_env_var_value_is_an_override_with_that_reason():
    override = override_from_env("broker 3 rebuilt")
    assert override.active
    assert override.message == f"OVERRIDDEN by {ENV_VAR} without expiry: broker 3 rebuilt"


def test_an_env_override_never_expires():
    assert override_from_env("1").expires_at is None


# -- file contents ----------------------------------------------------------------------------------


def test_an_empty_file_is_an_override_without_expiry():
    override = _text("")
    assert override.active
    assert (override.expires_at, override.reason, override.error) == (None, None, None)
    assert override.message == "OVERRIDDEN by /etc/kafka-xds/override without expiry"


def test_a_duration_expires_relative_to_the_files_mtime():
    override = _text("for: 30m\nreason: rolling zone a\n")
    assert override.active
    assert override.expires_at == MTIME + timedelta(minutes=30)
    assert override.message == (
        "OVERRIDDEN by /etc/kafka-xds/override until 2026-12-04T12:30:00+00:00: rolling zone a"
    )


def test_an_until_time_is_absolute():
    assert _text("until: 2026-12-04T15:00:00Z").expires_at == datetime(2026, 12, 4, 15, tzinfo=UTC)


def test_an_until_time_without_offset_is_utc():
    assert _text("until: 2026-12-04T15:00:00").expires_at == datetime(2026, 12, 4, 15, tzinfo=UTC)


def test_an_until_time_keeps_its_offset():
    expected = datetime(2026, 12, 4, 14, tzinfo=UTC)
    assert _text("until: 2026-12-04T15:00:00+01:00").expires_at == expected


def test_an_override_past_its_expiry_is_expired_not_active():
    override = _text("for: 5m\nreason: done")
    assert not override.active
    assert override.expired
    assert override.message == (
        "override by /etc/kafka-xds/override expired at 2026-12-04T12:05:00+00:00, ignored: done"
    )


def test_an_override_expiring_exactly_now_is_expired():
    assert _text("for: 10m").expired


def test_comments_and_blank_lines_are_ignored():
    override = _text("# why\n\n  for: 1h  \n# more\n")
    assert override.active and override.reason is None and override.error is None


def test_free_text_lines_join_the_reason():
    assert _text("broker 3 is gone\nreason: ticket OPS-1\n").reason == "broker 3 is gone ticket OPS-1"


def test_keys_are_case_insensitive():
    assert _text("For: 1h").expires_at == MTIME + timedelta(hours=1)


# -- malformed files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("for: 30x", "line 1: bad duration '30x'"),
        ("until: tomorrow", "line 1: bad time 'tomorrow'"),
        ("for: 1h\nuntil: 2026-12-04T15:00:00Z", "line 2: 'until' after 'for'"),
        ("untl: 30m", "line 1: unknown key 'untl'"),
    ],
)
def test_a_malformed_file_is_an_active_override_without_expiry_that_says_why(text: str, error: str):
    override = _text(text)
    assert override.active
    assert override.expires_at is None
    assert override.error is not None and error in override.error
    assert override.message.startswith("OVERRIDDEN by /etc/kafka-xds/override without expiry (unparsable")
    assert error in override.message


def test_a_malformed_file_keeps_its_reason():
    assert _text("for: soon\nreason: broker 3").reason == "broker 3"


def test_a_parse_error_drops_even_a_valid_expiry():
    override = _text("for: 1m\nnote: x")
    assert override.active and override.expires_at is None


# -- durations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("1h30m", timedelta(minutes=90)),
     ("2d", timedelta(days=2)), ("1h 5s", timedelta(hours=1, seconds=5))],
)  # fmt: skip
def test_durations_are_number_unit_pairs(text: str, expected: timedelta):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "m", "1.5h", "-1m", "30 minutes", "1h30"])
def test_anything_else_is_not_a_duration(text: str):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_a_duration_too_long_for_a_timedelta_is_not_a_duration():
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999999d")


def test_a_duration_past_the_end_of_the_calendar_never_expires_but_is_still_an_expiry():
    override = _text("for: 9999999d")
    assert override.active
    assert override.expires_at == datetime.max.replace(tzinfo=UTC)


@given(st.text(max_size=200))
def test_any_file_text_is_an_override_and_never_raises(text: str):
    override = override_from_text("f", text, MTIME, MTIME)
    assert override.active or override.expired


# -- reading the file -------------------------------------------------------------------------------


def test_no_file_is_no_override(tmp_path: Path):
    override = read_override_file(tmp_path / "override", NOW)
    assert not override.active and not override.expired


def test_a_file_expires_relative_to_its_mtime_on_disk(tmp_path: Path):
    path = tmp_path / "override"
    path.write_text("for: 30m\n")
    os.utime(path, (MTIME.timestamp(), MTIME.timestamp()))
    assert read_override_file(path, NOW).expires_at == MTIME + timedelta(minutes=30)
    assert read_override_file(path, MTIME + timedelta(hours=1)).expired


def test_touching_the_file_renews_a_duration(tmp_path: Path):
    path = tmp_path / "override"
    path.write_text("for: 30m\n")
    later = MTIME + timedelta(hours=1)
    os.utime(path, (later.timestamp(), later.timestamp()))
    assert read_override_file(path, later + timedelta(minutes=1)).active


def test_a_file_that_cannot_be_read_is_an_active_override_that_says_why(tmp_path: Path):
    path = tmp_path / "override"
    path.mkdir()
    override = read_override_file(path, NOW)
    assert override.active
    assert override.error is not None and override.error.startswith("unreadable")
    assert override.message.startswith(f"OVERRIDDEN by {path} without expiry (unreadable")


def test_undecodable_bytes_do_not_stop_the_override(tmp_path: Path):
    path = tmp_path / "override"
    path.write_bytes(b"reason: \xff broker 3\n")
    override = read_override_file(path, NOW)
    assert override.active and override.reason is not None and "broker 3" in override.reason


# -- several sources --------------------------------------------------------------------------------


def test_the_first_active_source_wins():
    env, file = override_from_env("1"), _text("reason: x")
    assert first_active(override_from_env(None), None, file, env) is file


def test_no_active_source_is_none():
    assert first_active(override_from_env("0"), _text("for: 1m")) is None
