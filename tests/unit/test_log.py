"""Logs: quiet libraries unless debugging; one structured line per event."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from xds.shared.log import configure, event


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("kazoo", "aiokafka")}
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("level", "library_level"), [("warning", "ERROR"), ("info", "ERROR"), ("debug", "DEBUG")]
)
def test_chatty_libraries_show_errors_only_unless_debugging(level, library_level):
    configure(level)
    for library in ("kazoo", "aiokafka"):
        assert logging.getLevelName(logging.getLogger(library).level) == library_level


def test_json_lines_carry_the_fields(capsys):
    configure("info", "json")
    event(logging.getLogger("kafka_xds.test"), logging.WARNING, "kept the last brokers", cluster="kafka-a")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "kept the last brokers" and line["cluster"] == "kafka-a"
    assert line["level"] == "warning"


def test_a_field_without_a_value_is_left_out_of_a_logfmt_line(capsys):
    configure("info")
    event(
        logging.getLogger("kafka_xds.test"), logging.INFO, "source state changed", after="synced", error=None
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith('msg="source state changed" after=synced')
    assert "None" not in line
