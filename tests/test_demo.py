"""`make demo`: unattended with --duration, two clusters on ZooKeeper, a rescheduled broker followed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from xds.demo import __main__ as demo
from xds.demo.zookeeper import ZK_SERVER

REPO = Path(__file__).resolve().parent.parent


def _answers(lines: list[str], cluster: str) -> list[dict[str, str]]:
    """The client's lines for one cluster: planned port -> who answered."""
    tick = re.compile(rf"^\d\d:\d\d:\d\d {cluster} ")
    return [dict(re.findall(r" :(\d+) (\S+)", line)) for line in lines if tick.match(line)]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited while we looked
        if text in command:
            found.append(command)
    return found


@pytest.mark.envoy
@pytest.mark.zookeeper
def test_demo_shows_both_clusters_and_the_sidecar_following_a_rescheduled_broker():
    if not ZK_SERVER.exists():
        pytest.skip(f"{ZK_SERVER} missing: `make test` installs Debian's zookeeper package")
    result = subprocess.run(
        [sys.executable, "-m", "xds.demo", "--duration", "12", "--reschedule-after", "6"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Status page: http://127.0.0.1:19000/" in result.stdout
    before, marker, after = result.stdout.partition("*** rescheduled")
    assert marker, result.stdout
    lines_before, lines_after = before.splitlines(), after.splitlines()

    a_before, a_after = _answers(lines_before, "kafka-a"), _answers(lines_after, "kafka-a")
    assert a_before[-1]["9092"] == "broker-2@127.0.0.22"
    assert {ticks["9092"] for ticks in a_before} <= {"broker-2@127.0.0.22", "(refused)"}  # refused: starting
    assert a_after[-1] == {
        "9091": "broker-1@127.0.0.21",
        "9092": "broker-2@127.0.0.32",  # the same client address, the broker's new pod
        "9093": "broker-3@127.0.0.23",
    }
    assert not any(ticks["9092"] == "broker-2@127.0.0.22" for ticks in a_after)  # the old pod is gone
    b_after = _answers(lines_after, "kafka-b")
    assert b_after[-1] == {"9091": "broker-1@127.0.0.41", "9092": "broker-2@127.0.0.42"}
    assert max(len(line) for line in result.stdout.splitlines()) <= 100

    workdir = re.search(r"logs in (\S+),", result.stdout)
    assert workdir is not None
    assert not Path(workdir[1]).exists()  # the temp dir is removed on the way out
    # ZooKeeper, kafka-xds and Envoy all ran with files from the temp dir: none of them is left.
    assert _processes_mentioning(workdir[1]) == []


def test_demo_without_zookeeper_says_how_to_get_it_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(demo, "ZK_SERVER", Path("/nonexistent/zkServer.sh"))
    monkeypatch.setattr(sys, "argv", ["python -m xds.demo", "--duration", "1"])

    assert demo.main() == 1

    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "ZooKeeper is not installed" in error and "make demo" in error
