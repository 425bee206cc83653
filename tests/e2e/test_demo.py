"""`make demo`: unattended with --duration, real Kafka (ZooKeeper mode and KRaft) with real clients
through the sidecar across a broker's reschedule; and the fast demo with stand-ins (`--stand-ins`).

The demo runs in this test run's own /24 and on free ports (its options), so that it cannot meet
another run's demo, nor a `make demo` someone runs on the documented defaults.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.support.addresses import LoopbackAddresses
from tests.support.wait import free_port
from xds.demo import __main__ as demo
from xds.demo import real, standins
from xds.demo.kafka import KRAFT_RELEASE, ZOOKEEPER_RELEASE, KafkaNotInstalled, release_libs
from xds.demo.layout import DemoAddresses
from xds.demo.zookeeper import ZK_SERVER

REPO = Path(__file__).resolve().parents[2]


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


def _run_demo(
    addresses: LoopbackAddresses, *arguments: str, timeout: float
) -> tuple[str, Callable[[int], str]]:
    """The demo in this run's own /24 and on free ports: its stdout, and the /24's address maker."""
    if not ZK_SERVER.exists():
        pytest.skip(f"{ZK_SERVER} missing: `make test` installs Debian's zookeeper package")
    network = addresses.network()

    def ip(host_number: int) -> str:  # the demo keeps each address's host number in its /24
        return str(network[host_number])

    ports = {option: free_port(ip(1)) for option in ("--xds-port", "--debug-port", "--admin-port")}
    placement = ["--loopback-net", str(network), *(str(arg) for item in ports.items() for arg in item)]
    result = subprocess.run(
        [sys.executable, "-m", "xds.demo", *arguments, *placement],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Status page: http://{ip(1)}:{ports['--debug-port']}/" in result.stdout
    workdir = re.search(r"logs in (\S+),", result.stdout)
    assert workdir is not None
    assert not Path(workdir[1]).exists()  # the temp dir is removed on the way out
    # Every process ran with files from the temp dir: none of them is left.
    assert _processes_mentioning(workdir[1]) == []
    return result.stdout, ip


def _bytes_through(lines: list[str], cluster: str) -> list[dict[str, str]]:
    """The real demo's lines for one cluster: planned port -> bytes through it in that second."""
    tick = re.compile(rf"^\d\d:\d\d:\d\d {cluster} ")
    return [dict(re.findall(r":(\d+) +(\d+(?:\.\d)? k?B)", line)) for line in lines if tick.match(line)]


@pytest.mark.envoy
@pytest.mark.zookeeper
@pytest.mark.kafka
def test_the_demo_runs_real_kafka_and_its_clients_lose_nothing_across_a_reschedule(
    addresses: LoopbackAddresses,
):
    for version in (ZOOKEEPER_RELEASE, KRAFT_RELEASE):
        try:
            release_libs(version)
        except KafkaNotInstalled as err:
            pytest.skip(str(err))
    output, ip = _run_demo(addresses, "--duration", "30", "--reschedule-after", "5", timeout=240)

    assert re.search(r"^\(started in \d+\.\d s\)$", output, re.MULTILINE), output
    assert (
        f"Kafka {ZOOKEEPER_RELEASE} in ZooKeeper mode" in output
        and f"Kafka {KRAFT_RELEASE} in KRaft" in output
    )
    before, marker, after = output.partition("*** rescheduled:")
    assert marker, output
    assert f"{ip(22)} -> {ip(32)}" in after.splitlines()[0]
    a_before, a_after = (
        _bytes_through(before.splitlines(), "kafka-a"),
        _bytes_through(after.splitlines(), "kafka-a"),
    )
    assert {"9091", "9092", "9093"} == set(a_before[-1]) == set(a_after[-1])
    assert any(tick["9092"] != "0 B" for tick in a_before)  # broker 2 served before its move ...
    assert any(tick["9092"] != "0 B" for tick in a_after)  # ... and again from its new pod, same port
    assert len(_bytes_through(after.splitlines(), "kafka-b")) >= 10
    for cluster in ("kafka-a", "kafka-b"):
        summary = re.search(
            rf"^  {cluster}: produced (\d+) \((\d+) before the reschedule, (\d+) after\), consumed (\d+) .*; "
            r"lost 0, duplicated 0; produce errors: none$",
            output,
            re.MULTILINE,
        )
        assert summary is not None, output
        produced, produced_before, produced_after, consumed = map(int, summary.groups())
        assert produced == consumed and produced_before > 0 and produced_after > 100


@pytest.mark.envoy
@pytest.mark.zookeeper
def test_the_fast_demo_shows_both_clusters_and_the_sidecar_following_a_rescheduled_stand_in(
    addresses: LoopbackAddresses,
):
    output, ip = _run_demo(
        addresses, "--stand-ins", "--duration", "12", "--reschedule-after", "6", timeout=120
    )
    network = addresses.network()
    before, marker, after = output.partition("*** rescheduled")
    assert marker, output
    lines_before, lines_after = before.splitlines(), after.splitlines()

    a_before, a_after = _answers(lines_before, "kafka-a"), _answers(lines_after, "kafka-a")
    assert a_before[-1]["9092"] == f"broker-2@{ip(22)}"
    assert {ticks["9092"] for ticks in a_before} <= {f"broker-2@{ip(22)}", "(refused)"}  # refused: starting
    assert a_after[-1] == {
        "9091": f"broker-1@{ip(21)}",
        "9092": f"broker-2@{ip(32)}",  # the same client address, the broker's new pod
        "9093": f"broker-3@{ip(23)}",
    }
    assert not any(ticks["9092"] == f"broker-2@{ip(22)}" for ticks in a_after)  # the old pod is gone
    b_after = _answers(lines_after, "kafka-b")
    assert b_after[-1] == {"9091": f"broker-1@{ip(41)}", "9092": f"broker-2@{ip(42)}"}
    # 100 columns with the default addresses; a line names at most three, each as much longer as
    # this /24's prefix is than 127.0.0's.
    longer = len(str(network.network_address)) - len("127.0.0.0")
    ticks = [line for line in output.splitlines() if re.match(r"^\d\d:\d\d:\d\d kafka-", line)]
    too_wide = [line for line in ticks if len(line) > 100 + 3 * longer]
    assert ticks and not too_wide, too_wide


def test_demo_without_zookeeper_says_how_to_get_it_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(demo, "ZK_SERVER", Path("/nonexistent/zkServer.sh"))
    monkeypatch.setattr(sys, "argv", ["python -m xds.demo", "--duration", "1"])

    assert demo.main() == demo.EXIT_REFUSED == 2  # the exit code of every refused kafka-xds command

    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "ZooKeeper is not installed" in error and "make demo" in error


@pytest.mark.parametrize("variant", ["real", "stand-ins"])
def test_demo_without_options_runs_on_the_addresses_its_config_documents(tmp_path, variant):
    # Nothing started: only the config is made.
    if variant == "real":
        documented = yaml.safe_load(real.CONFIG.read_text())
        config = real.RealKafkaDemo(tmp_path, DemoAddresses()).config
    else:
        documented = yaml.safe_load(standins.CONFIG.read_text())
        config = standins.StandInDemo(tmp_path, DemoAddresses()).config

    assert config.xds.listen == documented["xds"]["listen"] == "127.0.0.1:18000"
    assert config.debug.listen == documented["debug"]["listen"] == "127.0.0.1:19000"
    assert [str(c.loopback_ip) for c in config.kafka_clusters] == [
        c["loopback_ip"] for c in documented["kafka_clusters"]
    ]
    assert DemoAddresses().pod_ips() == [f"127.0.0.{n}" for n in (21, 22, 23, 41, 42, 32)]
    assert DemoAddresses().admin_port == 9901


def test_demo_refuses_a_network_outside_loopback_naming_it(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m xds.demo", "--loopback-net", "10.1.2.0/24"])

    with pytest.raises(SystemExit) as exit_info:
        demo.main()

    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert "--loopback-net: '10.1.2.0/24' is not a /24 inside 127.0.0.0/8" in error
