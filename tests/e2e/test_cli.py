"""The command line as an operator meets it: one line per problem, exit code 2, plans for scripts."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.envoy import envoy_binary
from tests.support.wait import free_port
from tests.unit.test_config import REPO, VALID, variant
from xds.cli import _parser, main

EXAMPLE = REPO / "config" / "example.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """check-config and bootstrap in process; serve in a process of its own, so that a config it
    wrongly accepts fails the test instead of serving for ever."""
    if argv[0] == "serve":
        try:
            done = subprocess.run(
                [sys.executable, "-m", "xds", *argv], capture_output=True, text=True, timeout=30, cwd=REPO
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"kafka-xds {' '.join(argv)} accepted the config and went on serving")
        return done.returncode, done.stdout, done.stderr
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "kafka-xds.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def plan_table(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.strip().splitlines()]


# check-config -------------------------------------------------------------------------------------


def test_check_config_takes_the_file_as_an_option_like_serve(capsys):
    code, out, _ = run(capsys, "check-config", "--config", str(EXAMPLE))
    assert code == 0
    assert out.startswith(f"{EXAMPLE}: OK, 4 Kafka cluster(s)")


def test_check_config_still_takes_the_file_as_an_argument(capsys):
    code, out, _ = run(capsys, "check-config", str(EXAMPLE), "--plan")
    assert code == 0
    assert plan_table(out)[0] == ["cluster", "broker_id", "loopback_ip", "port", "upstream", "status"]


def test_check_config_without_a_file_says_how_to_give_one(capsys):
    code, out, err = run(capsys, "check-config")
    assert (code, out) == (2, "")
    assert err == "kafka-xds check-config: --config: give the config file (kafka-xds check-config FILE)\n"


def test_serve_takes_the_file_as_an_argument_like_check_config(tmp_path, capsys):
    broken = write_config(tmp_path, variant(port_bas=9090))
    for argv in (["serve", str(broken)], ["serve", "--config", str(broken)]):
        code, _, err = run(capsys, *argv)
        assert code == 2, err
        assert "kafka_clusters[1].port_bas: unknown key; did you mean 'port_base'?" in err


def test_serve_without_a_file_says_how_to_give_one(capsys):
    code, _, err = run(capsys, "serve")
    assert code == 2
    assert "kafka-xds serve: --config: give the config file (kafka-xds serve FILE)" in err


def test_a_bad_option_is_reported_with_the_usage_of_the_command_it_was_given_to(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["bootstrap", "--node-id", "app-1", "--bogus"])
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert err.startswith("usage: kafka-xds bootstrap ")
    assert "kafka-xds bootstrap: error: unrecognized arguments: --bogus" in err


def test_the_top_level_help_says_what_kafka_xds_is_without_markdown(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out, _ = capsys.readouterr()
    assert "Envoy control plane for Kafka" in out
    assert "`" not in out


def test_plan_for_ids_covers_zookeeper_and_kraft_clusters(capsys):
    code, out, _ = run(capsys, "check-config", "--config", str(EXAMPLE), "--plan", "--ids", "1-2")
    assert code == 0
    rows = plan_table(out)[1:]
    assert ["kafka-c", "1", "127.0.0.12", "9091", "-", "planned"] in rows
    assert ["kafka-d", "2", "127.0.0.13", "9092", "-", "planned"] in rows
    assert ["kafka-a", "1", "127.0.0.10", "9091", "10.0.0.1:9094", "live"] in rows  # a known static broker
    assert len(rows) == 4 * 2


def test_ids_take_ranges_and_lists(capsys):
    code, out, _ = run(capsys, "check-config", "--config", str(EXAMPLE), "--plan", "--ids", "0-2,5")
    assert code == 0
    assert [row[1] for row in plan_table(out)[1:] if row[0] == "kafka-c"] == ["0", "1", "2", "5"]


def test_plan_for_ids_as_json(capsys):
    code, out, _ = run(capsys, "check-config", "--config", str(EXAMPLE), "--json", "--ids", "3")
    assert code == 0
    clusters = {cluster["cluster"]: cluster for cluster in json.loads(out)["clusters"]}
    assert clusters["kafka-d"]["brokers"] == [
        {
            "cluster": "kafka-d",
            "broker_id": 3,
            "loopback_ip": "127.0.0.13",
            "port": 9093,
            "upstream": "-",
            "status": "planned",
        }
    ]


def test_without_ids_clusters_known_only_at_run_time_are_named_with_how_to_ask(capsys):
    code, out, err = run(capsys, "check-config", "--config", str(EXAMPLE), "--plan")
    assert code == 0
    assert {row[0] for row in plan_table(out)[1:]} == {"kafka-a", "kafka-b"}
    assert err.startswith("kafka-xds check-config: kafka-c, kafka-d: brokers are known only at run time")
    assert "--ids" in err


def test_without_ids_the_summary_says_how_to_see_run_time_brokers(capsys):
    code, out, err = run(capsys, "check-config", "--config", str(EXAMPLE))
    assert (code, err) == (0, "")
    hint = "    brokers known only at run time: pass --ids (e.g. --ids 1-6) for their addresses\n"
    assert out.count(hint) == 2
    assert out.index("kafka-c: zookeeper source") < out.index(hint)


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        ("3-1", "expected a range from low to high, got '3-1'"),
        ("one", "expected ids and ranges such as 1-6 or 0-2,5, got 'one'"),
        ("0-99999999", "expected at most 10000 ids, got '0-99999999'"),
        (
            "70000",
            "kafka-a: broker id 70000 has no port: it is above max_broker_id 99 and not in broker_ports",
        ),
    ],
)
def test_bad_ids_are_refused_naming_the_option(capsys, ids, problem):
    code, out, err = run(capsys, "check-config", "--config", str(EXAMPLE), "--ids", ids)
    assert (code, out, err) == (2, "", f"kafka-xds check-config: --ids: {problem}\n")


def test_check_config_shows_plan_mismatches_of_static_brokers(tmp_path, capsys):
    brokers = [
        {"id": 1, "host": "10.0.1.1", "port": 9094, "listeners": {"CLIENT": "127.0.0.11:9091"}},
        {"id": 2, "host": "10.0.1.2", "port": 9094, "listeners": {"CLIENT": "10.0.1.2:9092"}},
    ]
    path = write_config(tmp_path, variant(client_listener="CLIENT", static={"brokers": brokers}))
    code, out, _ = run(capsys, "check-config", "--config", str(path))
    assert code == 0
    assert (
        "    plan mismatch: broker 2 advertises 10.0.1.2:9092 on listener CLIENT, the plan says "
        "127.0.0.11:9092: its clients bypass the sidecar\n"
    ) in out
    assert "broker 1 advertises" not in out
    code, out, _ = run(capsys, "check-config", "--config", str(path), "--json")
    kafka_b = json.loads(out)["clusters"][1]
    assert kafka_b["mismatches"] == [
        {"broker_id": 2, "listener": "CLIENT", "advertised": "10.0.1.2:9092", "planned": "127.0.0.11:9092"}
    ]


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_config_that_is_not_utf8_ends_with_one_line_naming_the_file(tmp_path, capsys, command):
    path = tmp_path / "kafka-xds.yaml"
    path.write_bytes(b"\xff\xfe" + yaml.safe_dump(VALID).encode("utf-16-le"))
    code, out, err = run(capsys, command, "--config", str(path))
    assert (code, out) == (2, "")
    assert err == f"kafka-xds: config error: {path}: expected UTF-8 text, got byte 0xff at offset 0\n"


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_static_file_that_is_not_utf8_is_refused_at_start(tmp_path, capsys, command):
    brokers = tmp_path / "brokers.yaml"
    brokers.write_bytes(b"\xff\xfe" + "brokers: []\n".encode("utf-16-le"))
    path = write_config(tmp_path, variant(static={"file": "brokers.yaml"}))
    code, _, err = run(capsys, command, "--config", str(path))
    assert code == 2
    assert err == (
        f"kafka-xds: config error: kafka_clusters[1].static.file: {brokers}: "
        "expected UTF-8 text, got byte 0xff at offset 0\n"
    )


def test_a_static_file_broker_without_a_port_is_refused_by_check_config(tmp_path, capsys):
    (tmp_path / "brokers.yaml").write_text("brokers: [{id: 10, host: 10.0.0.1, port: 9094}]\n")
    path = write_config(tmp_path, variant(port_base=65530, static={"file": "brokers.yaml"}))
    code, out, err = run(capsys, "check-config", "--config", str(path))
    assert (code, out) == (2, "")
    assert err == (
        f"kafka-xds: config error: kafka_clusters[1].static.file: {tmp_path / 'brokers.yaml'}: "
        "brokers[0].id: broker id 10 has no port: port_base 65530 + 10 = 65540 is outside 1..65535\n"
    )


def test_a_missing_relative_file_is_reported_with_the_absolute_path_tried(tmp_path, capsys, monkeypatch):
    (tmp_path / "etc").mkdir()
    path = write_config(tmp_path / "etc", variant(static={"file": "brokers.yaml"}))
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "check-config", "--config", "etc/kafka-xds.yaml")
    assert code == 2
    assert f"{path.parent / 'brokers.yaml'}: cannot read: No such file or directory" in err


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize(("content", "problem"), [(None, "cannot read"), ("  \n", "is empty")])
def test_a_missing_or_empty_debug_token_is_refused_by_check_config_as_by_serve(
    tmp_path, capsys, command, content, problem
):
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    path = write_config(tmp_path, VALID | {"debug": {"listen": "127.0.0.1:0", "token_file": "token"}})
    code, _, err = run(capsys, command, "--config", str(path))
    assert code == 2
    assert err.startswith("kafka-xds: config error: debug.token_file: ")
    assert problem in err and str(token) in err


def test_check_config_reads_the_debug_token_without_showing_it(tmp_path, capsys):
    (tmp_path / "token").write_text("s3cret-t0ken\n")
    path = write_config(tmp_path, VALID | {"debug": {"listen": "127.0.0.1:19000", "token_file": "token"}})
    code, out, err = run(capsys, "check-config", "--config", str(path), "--json")
    assert code == 0
    assert "s3cret-t0ken" not in out + err


def test_every_command_and_option_has_a_help_text():
    def undocumented(parser: argparse.ArgumentParser, where: str) -> list[str]:
        missing = []
        for action in parser._actions:  # argparse has no public way to list them
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{where} {name}")
                    missing += undocumented(sub, f"{where} {name}")
            elif not action.help:
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert undocumented(_parser(), "kafka-xds") == []


# bootstrap ----------------------------------------------------------------------------------------


def test_bootstrap_output_in_a_missing_folder_names_the_file_asked_for(tmp_path, capsys):
    target = tmp_path / "missing" / "envoy.yaml"
    code, _, err = run(capsys, "bootstrap", "--node-id", "app-1", "--output", str(target))
    assert code == 2
    assert err == f"kafka-xds bootstrap: --output: cannot write {target}: No such file or directory\n"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--node-id", ""], "--node-id: must not be empty"),
        (["--node-id", "  "], "--node-id: must not be empty"),
        (["--node-id", "app-1", "--node-cluster", ""], "--node-cluster: must not be empty"),
        (
            ["--node-id", "app-1", "--xds", "127.0.0.1:0"],
            "--xds: expected a port in 1..65535, got '127.0.0.1:0'",
        ),
        (["--node-id", "app-1", "--xds", "kafka-xds"], "--xds: expected HOST:PORT, got 'kafka-xds'"),
        (["--node-id", "app-1", "--admin", "9901"], "--admin: expected HOST:PORT, got '9901'"),
    ],
)
def test_bootstrap_refuses_what_envoy_would_refuse_naming_the_option(capsys, argv, problem):
    code, out, err = run(capsys, "bootstrap", *argv)
    assert (code, out, err) == (2, "", f"kafka-xds bootstrap: {problem}\n")


@pytest.mark.envoy
@pytest.mark.parametrize(("api", "api_type"), [([], "DELTA_GRPC"), (["--api", "sotw"], "GRPC")])
def test_generated_bootstrap_passes_envoys_own_validation(tmp_path, capsys, api, api_type):
    code, out, _ = run(
        capsys,
        "bootstrap",
        "--node-id",
        "app-1",
        "--xds",
        "127.0.0.1:18000",
        "--xds",
        "kafka-xds-1.svc:18000",
        *api,
    )
    assert code == 0
    bootstrap = yaml.safe_load(out)
    assert (bootstrap["node"]["id"], bootstrap["node"]["cluster"]) == ("app-1", "kafka-clients")
    assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == api_type
    path = tmp_path / "bootstrap.yaml"
    path.write_text(out)
    validated = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr


# serve --------------------------------------------------------------------------------------------


async def test_serve_on_the_quickstart_config_becomes_ready(xds_processes):
    config = yaml.safe_load((REPO / "config" / "quickstart.yaml").read_text())
    config["xds"]["listen"] = f"127.0.0.1:{free_port()}"  # the quickstart's own ports may be taken here
    config["debug"]["listen"] = f"127.0.0.1:{free_port()}"
    config["kafka_clusters"][0]["static"]["file"] = str(REPO / "config" / "quickstart-brokers.yaml")
    server = await xds_processes(config)  # waits for /readyz 200
    status, plan = await server.get("/debug/plan")
    assert status == 200
    assert [(row["cluster"], row["port"], row["upstream"]) for row in plan["rows"]] == [
        ("kafka-a", 9091, "127.0.0.1:9092")
    ]


def test_a_reader_that_goes_away_is_not_a_traceback(tmp_path):
    """`kafka-xds check-config --plan | head -1`: the plan outlives its reader."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        result = subprocess.run(
            [sys.executable, "-m", "xds", "check-config", "--config", "config/example.yaml", "--ids", "0-99"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
    finally:
        os.close(write)
    assert result.returncode == 141
    assert result.stderr == ""
