"""`kafka-xds broker-ready` without a cluster: options, the broker id from the pod's name, settings from
a config, the one line and the exit code for each answer, overrides, --restartable, --json, no secret
in any output, and the watchdog that ends a probe stuck in a thread (a subprocess)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from xds import cli
from xds.config.model import KraftSettings
from xds.health import fetch
from xds.health.fetch import ClusterUnreachable, FetchedState
from xds.health.override import ENV_VAR
from xds.health.state import NO_LEADER, BrokerState, ClusterState, PartitionId, PartitionState

PASSWORD = "s3cr3t-pass-Zq9"


def _state(stopped: int | None = None) -> ClusterState:
    """RF 3 / min ISR 2 over brokers 1-4, `stopped` out of every ISR and of the brokers."""
    partitions = []
    for n in range(8):
        replicas = tuple((n + i) % 4 + 1 for i in range(3))
        isr = tuple(b for b in replicas if b != stopped)
        partitions.append(
            PartitionState(PartitionId("orders", n), isr[0] if isr else NO_LEADER, replicas, isr)
        )
    brokers = [BrokerState(b) for b in (1, 2, 3, 4) if b != stopped]
    return ClusterState.create("kafka", brokers, partitions, {"orders": 2}, 1, 1)


class FakeFetch:
    """Stands in for fetch_cluster_state: a state, or ClusterUnreachable; records what it was given."""

    def __init__(self, answer: ClusterState | ClusterUnreachable) -> None:
        self.answer = answer
        self.calls: list[tuple[str, KraftSettings, float]] = []

    async def __call__(self, cluster: str, settings: KraftSettings, timeout: float) -> FetchedState:
        self.calls.append((cluster, settings, timeout))
        if isinstance(self.answer, ClusterUnreachable):
            raise self.answer
        return FetchedState(self.answer, "10.0.0.1:9092", "cluster-1", (), 0.01)


@pytest.fixture
def answers(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)

    def install(answer: ClusterState | ClusterUnreachable) -> FakeFetch:
        fake = FakeFetch(answer)
        monkeypatch.setattr(fetch, "fetch_cluster_state", fake)
        return fake

    return install


def probe(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["broker-ready", *args])
    out, err = capsys.readouterr()
    return code, out, err


BOOT = ("--bootstrap-server", "10.0.0.1:9092")


# -- answers ----------------------------------------------------------------------------------------


def test_all_in_sync_is_ready_exit_0_one_line(answers, capsys):
    answers(_state())
    code, out, err = probe(capsys, *BOOT, "--broker-id", "2")
    assert code == 0
    assert out == "ready: broker 2 in sync (6 partitions hosted); cluster in sync\n"
    assert err == ""


def test_a_stopped_broker_makes_the_others_not_ready_with_the_partitions_at_min_isr(answers, capsys):
    answers(_state(stopped=3))
    code, out, _ = probe(capsys, *BOOT, "--broker-id", "1")
    assert code == 1
    assert out.count("\n") == 1
    assert out.startswith(
        "not ready: broker 1 in sync; cluster: 6 at-min-ISR partitions (orders-0, orders-1, orders-2"
    )
    code, out, _ = probe(capsys, *BOOT, "--broker-id", "3")
    assert code == 1
    assert out.startswith(
        "not ready: broker 3 not registered (hosts 6 partitions), not in ISR of 6 partitions"
    )


def test_thresholds_can_tolerate_what_the_defaults_refuse(answers, capsys):
    answers(_state(stopped=3))
    code, out, _ = probe(capsys, *BOOT, "--broker-id", "1", "--max-at-min-isr", "6")
    assert code == 0
    assert out.startswith("ready: broker 1 in sync") and "tolerated: 6 at-min-ISR partitions" in out


def test_an_unreachable_cluster_is_not_ready_naming_each_server(answers, capsys):
    fake = answers(ClusterUnreachable("kafka", (("10.0.0.1:9092", "connection refused"),), False))
    code, out, _ = probe(capsys, *BOOT, "--broker-id", "1", "--timeout", "2")
    assert code == 1
    assert out == "not ready: cluster unreachable (10.0.0.1:9092: connection refused)\n"
    assert 0 < fake.calls[0][2] <= 2  # the fetch gets what is left of --timeout


def test_json_is_one_object_on_one_line(answers, capsys):
    answers(_state(stopped=3))
    code, out, _ = probe(capsys, *BOOT, "--broker-id", "1", "--json")
    assert code == 1 and out.count("\n") == 1
    answer = json.loads(out)
    assert answer["ready"] is False and answer["broker_id"] == 1 and answer["overridden"] is False
    assert answer["reasons"] == [
        {"kind": "at-min-isr", "count": 6, "partitions": ["orders-0", "orders-1", "orders-2"]}
    ]
    assert answer["brokers"] == [1, 2, 4] and answer["partitions"] == 8
    assert answer["summary"].startswith("not ready: broker 1 in sync")


# -- overrides --------------------------------------------------------------------------------------


def test_the_env_override_exits_0_and_says_so_first(answers, capsys, monkeypatch):
    answers(_state(stopped=3))
    monkeypatch.setenv(ENV_VAR, "broker 3 is rebuilt")
    code, out, _ = probe(capsys, *BOOT, "--broker-id", "1")
    assert code == 0
    assert out.startswith(
        f"OVERRIDDEN by {ENV_VAR} without expiry: broker 3 is rebuilt; the check says: not ready:"
    )


def test_an_override_file_until_a_time_and_after_it(answers, capsys, tmp_path):
    answers(_state(stopped=3))
    override = tmp_path / "ready"
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    override.write_text(f"until: {until.isoformat()}\nreason: roll past broker 3\n")
    code, out, _ = probe(capsys, *BOOT, "--broker-id", "1", "--override-file", str(override), "--json")
    answer = json.loads(out)
    assert code == 0 and answer["ready"] is True and answer["checked_ready"] is False
    assert answer["override"]["until"] == until.isoformat()
    assert answer["summary"].startswith(
        f"OVERRIDDEN by {override} until {until.isoformat()}: roll past broker 3"
    )

    override.write_text("for: 1s\n")
    past = time.time() - 5
    os.utime(override, (past, past))
    code, out, _ = probe(capsys, *BOOT, "--broker-id", "1", "--override-file", str(override))
    assert code == 1
    assert out.startswith("not ready: broker 1 in sync; cluster: 6 at-min-ISR partitions")
    assert f"override by {override} expired at " in out and out.rstrip().endswith("ignored")


def test_no_override_file_is_no_override(answers, capsys, tmp_path):
    answers(_state())
    code, out, _ = probe(capsys, *BOOT, "--broker-id", "1", "--override-file", str(tmp_path / "none"))
    assert code == 0 and out.startswith("ready: ")


# -- --restartable ----------------------------------------------------------------------------------


def test_restartable_lists_the_brokers_and_what_blocks_the_others(answers, capsys):
    answers(_state())
    code, out, _ = probe(capsys, *BOOT, "--restartable")
    assert (code, out) == (0, "restartable now: 1, 2, 3, 4\n")
    answers(_state(stopped=3))
    code, out, _ = probe(capsys, *BOOT, "--restartable")
    assert code == 0
    assert out.startswith("restartable now: 3; broker 1 blocked by 4 partitions: orders-0 at-min-isr (2/2)")
    code, out, _ = probe(capsys, *BOOT, "--restartable", "--broker-id", "1", "--json")
    answer = json.loads(out)
    assert code == 1 and answer["broker_restartable"] is False and answer["restartable"] == [3]
    assert {b["broker_id"] for b in answer["blocked"]} == {1, 2, 4}
    code, _, _ = probe(capsys, *BOOT, "--restartable", "--broker-id", "3")
    assert code == 0


# -- options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostname", "offset", "broker_id"),
    [("kafka-a-2", "1", 3), ("kafka-0", "0", 0), ("kafka-a-7.kafka-a.kafka.svc.cluster.local", "0", 7)],
)
def test_the_broker_id_from_the_pods_ordinal(answers, capsys, monkeypatch, hostname, offset, broker_id):
    answers(_state())
    monkeypatch.setenv("HOSTNAME", hostname)
    _, out, _ = probe(capsys, *BOOT, "--broker-id-from-hostname", "--broker-id-offset", offset, "--json")
    assert json.loads(out)["broker_id"] == broker_id


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--broker-id-from-hostname"], "--broker-id-from-hostname: hostname 'kafka' does not end in -N"),
        (["--broker-id", "1", "--broker-id-from-hostname"], "--broker-id: give --broker-id or"),
        (
            ["--broker-id", "1", "--broker-id-offset", "1"],
            "--broker-id-offset: only with --broker-id-from-hostname",
        ),
        ([], "--broker-id: give --broker-id N or --broker-id-from-hostname"),
        (
            ["--broker-id", "1", "--security-protocol", "TLS"],
            "--security-protocol: expected one of 'PLAINTEXT'",
        ),
        (
            ["--broker-id", "1", "--ssl-ca-file", "/x"],
            "--security-protocol: --ssl-* options are given but --security-protocol PLAINTEXT does not "
            "use TLS",
        ),
        (
            ["--broker-id", "1", "--security-protocol", "SSL", "--ssl-ca-file", "/no/ca.pem"],
            "--ssl-ca-file: cannot read",
        ),
        (
            ["--broker-id", "1", "--security-protocol", "SASL_SSL"],
            "--security-protocol: --security-protocol SASL_SSL needs --sasl-mechanism, --sasl-username and "
            "--sasl-password-file",
        ),
        (["--broker-id", "1", "--bootstrap-server", "x"], "--bootstrap-server: 'x' is not HOST:PORT"),
    ],
)
def test_bad_options_exit_2_naming_the_option(answers, capsys, monkeypatch, args, error):
    answers(_state())
    monkeypatch.setenv("HOSTNAME", "kafka")
    code, out, err = probe(capsys, *BOOT, *args)
    assert code == 2 and out == ""
    assert err.startswith(f"kafka-xds broker-ready: {error}"), err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--timeout", "0"], "--timeout: expected seconds in (0, 300]"),
        (["--timeout", "nan"], "--timeout: expected seconds"),
        (["--max-at-min-isr", "-1"], "--max-at-min-isr: expected a whole number >= 0"),
    ],
)
def test_bad_values_exit_2(answers, capsys, args, error):
    answers(_state())
    with pytest.raises(SystemExit) as raised:
        cli.main(["broker-ready", "--broker-id", "1", *args])
    _, err = capsys.readouterr()
    if raised.value.code != 2:
        pytest.fail(f"exit {raised.value.code}")
    assert error in err


def test_no_bootstrap_server_at_all(answers, capsys):
    answers(_state())
    code, _, err = probe(capsys, "--broker-id", "1")
    assert code == 2 and "--bootstrap-server: give at least one" in err


def _config(tmp_path: Path, *clusters: dict[str, Any]) -> Path:
    path = tmp_path / "kafka-xds.yaml"
    path.write_text(
        yaml.safe_dump({"xds": {"tls": None}, "upstream_tls": None, "kafka_clusters": list(clusters)})
    )
    return path


def _cluster(name: str, source: dict[str, Any], n: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "loopback_ip": f"127.0.0.{10 + n}",
        "port_base": 9090,
        "upstream_listener": "MESH",
        **source,
    }


def test_settings_from_a_config_with_options_over_them(answers, capsys, tmp_path):
    fake = answers(_state())
    (tmp_path / "password").write_text(PASSWORD)
    kraft = {
        "bootstrap_servers": ["10.1.0.1:9094"],
        "security_protocol": "SASL_PLAINTEXT",
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "probe", "password_file": "password"},
    }
    zookeeper = {"zookeeper": {"hosts": "zk:2181"}}
    config = _config(tmp_path, _cluster("kafka-a", {"kraft": kraft}), _cluster("kafka-z", zookeeper, 2))
    code, _, _ = probe(capsys, "--config", str(config), "--cluster", "kafka-a", "--broker-id", "1")
    assert code == 0
    cluster, settings, _ = fake.calls[-1]
    assert cluster == "kafka-a" and settings.bootstrap_servers == ["10.1.0.1:9094"]
    assert settings.sasl is not None and settings.sasl.password_file == str(tmp_path / "password")
    probe(
        capsys,
        "--config",
        str(config),
        "--cluster",
        "kafka-a",
        "--sasl-username",
        "other",
        *BOOT,
        "--broker-id",
        "1",
    )
    _, settings, _ = fake.calls[-1]
    assert settings.bootstrap_servers == ["10.0.0.1:9092"]
    assert settings.sasl is not None and settings.sasl.username == "other"
    assert settings.security_protocol == "SASL_PLAINTEXT"

    code, _, err = probe(capsys, "--config", str(config), "--broker-id", "1")
    assert code == 2 and "--cluster: " in err and "has 2 clusters: name one of kafka-a, kafka-z" in err
    code, _, err = probe(capsys, "--config", str(config), "--cluster", "kafka-z", "--broker-id", "1")
    assert (
        code == 2
        and "kafka-z has a zookeeper source and no health.connection: give --bootstrap-server" in err
    )
    code, _, _ = probe(capsys, "--config", str(config), "--cluster", "kafka-z", *BOOT, "--broker-id", "1")
    assert code == 0 and fake.calls[-1][0] == "kafka-z"
    code, _, err = probe(capsys, "--config", str(config), "--cluster", "nope", "--broker-id", "1")
    assert code == 2 and "has no cluster 'nope'" in err


def test_a_clusters_health_section_gives_the_connection_and_the_thresholds(answers, capsys, tmp_path):
    fake = answers(_state(stopped=3))
    health = {
        "connection": {"bootstrap_servers": ["10.2.0.1:9092"]},
        "readiness": {"max_at_min_isr": 6, "examples": 1},
    }
    config = _config(tmp_path, _cluster("kafka-z", {"zookeeper": {"hosts": "zk:2181"}, "health": health}))
    code, out, _ = probe(capsys, "--config", str(config), "--broker-id", "1")
    assert code == 0, out  # 6 at min ISR tolerated by the config
    assert fake.calls[-1][0] == "kafka-z" and fake.calls[-1][1].bootstrap_servers == ["10.2.0.1:9092"]
    assert "tolerated: 6 at-min-ISR partitions (orders-0, ...), max 6" in out
    code, out, _ = probe(capsys, "--config", str(config), "--broker-id", "1", "--max-at-min-isr", "0")
    assert code == 1 and "cluster: 6 at-min-ISR partitions (orders-0, ...)" in out


def test_no_secret_in_any_output(answers, capsys, tmp_path, monkeypatch):
    (tmp_path / "password").write_text(PASSWORD)
    sasl = ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN", "--sasl-username", "probe"]
    sasl += ["--sasl-password-file", str(tmp_path / "password")]
    outputs = []
    for answer in (
        _state(),
        ClusterUnreachable("kafka", (("10.0.0.1:9092", "SaslAuthenticationFailed"),), False),
    ):
        answers(answer)
        for extra in ([], ["--json"], ["--restartable"], ["--restartable", "--json"]):
            _, out, err = probe(capsys, *BOOT, *sasl, "--broker-id", "1", *extra)
            outputs.append(out + err)
    monkeypatch.setenv(ENV_VAR, "1")
    outputs.append("".join(probe(capsys, *BOOT, *sasl, "--broker-id", "1", "--json")[1:]))
    assert all(PASSWORD not in output for output in outputs)
    assert all(output.count("\n") == 1 for output in outputs)


# -- a real process: the bound holds whatever hangs -------------------------------------------------


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "xds", "broker-ready", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stdout, time.monotonic() - started


def test_a_server_that_accepts_and_never_answers_is_unreachable_within_the_timeout():
    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        code, out, took = _run(
            "--bootstrap-server", f"127.0.0.1:{port}", "--broker-id", "1", "--timeout", "2"
        )
    finally:
        silent.close()
    assert code == 1
    assert out == f"not ready: cluster unreachable (127.0.0.1:{port}: timed out after 2.0 s)\n"
    assert took < 2 + 1.5  # the timeout, and the interpreter's start


def test_an_override_file_read_stuck_forever_still_answers_within_the_bound(tmp_path):
    fifo = tmp_path / "ready"
    os.mkfifo(fifo)  # opening it blocks its reader (a thread) until a writer comes: never
    code, out, took = _run(
        "--bootstrap-server",
        "127.0.0.1:1",
        "--broker-id",
        "1",
        "--timeout",
        "1.5",
        "--override-file",
        str(fifo),
    )
    assert code == 1
    assert out == (
        f"not ready: cluster unreachable (127.0.0.1:1: connection refused); override file {fifo} not read "
        "within the time, ignored\n"
    )
    assert took < 1.5 + 1 + 1.5  # the watchdog ended what the stuck thread held up
