"""`make demo` runs unattended with --duration, shows the sidecar following a rescheduled broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.envoy


def test_demo_shows_traffic_following_a_rescheduled_broker():
    result = subprocess.run(
        [sys.executable, "-m", "xds.demo", "--duration", "14", "--reschedule-after", "7"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    before, _, after = result.stdout.partition("was rescheduled")
    assert ":9092 -> broker-2@127.0.0.22" in before
    assert ":9092 -> broker-2@127.0.0.32" in after
    assert ":9091 -> broker-1@127.0.0.21" in after
    workdir = next(
        line.split("logs in ")[1].rstrip(")") for line in result.stdout.splitlines() if "logs in" in line
    )
    assert not Path(workdir).exists()  # the temp dir is removed on the way out
