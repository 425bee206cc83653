"""`kafka-xds placement` without a cluster (the fetch stands in): the report's text within 100
columns and its JSON, the exit codes, --topics, the plan file in Kafka's format, batches and their
file names, --drain by ids and by dimension value, the printed commands, and no secret anywhere."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from xds import cli
from xds.health import fetch
from xds.health.fetch import ClusterUnreachable, FetchedState
from xds.health.placement_command.answer import id_ranges
from xds.health.placement_command.request import parse_broker_ids
from xds.health.planner import parse_reassignment
from xds.health.state import BrokerState, ClusterState, PartitionId, PartitionState

PATTERN = r"(?P<cluster>[^.]+)\.(?P<zone>.+)"
RACKS = {1: "k8s-1.az-a", 2: "k8s-1.az-b", 3: "k8s-1.az-c", 4: "k8s-2.az-a", 5: "k8s-2.az-b", 6: "k8s-2.az-c"}
PASSWORD = "s3cr3t-pass-Zq9"


def _state(*topics: tuple[str, Sequence[tuple[int, ...]]], racks=None, min_isr=None) -> ClusterState:
    partitions = [
        PartitionState(PartitionId(topic, n), replicas[0], replicas, replicas)
        for topic, assignment in topics
        for n, replicas in enumerate(assignment)
    ]
    brokers = [BrokerState(b, rack) for b, rack in (racks or RACKS).items()]
    return ClusterState.create("kafka-a", brokers, partitions, min_isr or {}, 1)


SKEWED = ("orders", [(1, 2, 3), (2, 3, 1), (3, 1, 2)])  # every replica in k8s-1
SPREAD = ("payments", [(1, 5, 3), (4, 2, 6)])  # 2 + 1 over the clusters, one per zone


class FakeFetch:
    """Stands in for fetch_cluster_state, per cluster name: a state, or ClusterUnreachable."""

    def __init__(self, answers: dict[str, ClusterState | ClusterUnreachable]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, cluster: str, settings: Any, timeout: float) -> FetchedState:
        self.calls.append((cluster, timeout))
        answer = self.answers[cluster]
        if isinstance(answer, ClusterUnreachable):
            raise answer
        return FetchedState(answer, "10.0.0.1:9092", "id-1", (), 0.02)


@pytest.fixture
def answers(monkeypatch):
    def install(**by_cluster: ClusterState | ClusterUnreachable) -> FakeFetch:
        fake = FakeFetch({name.replace("_", "-"): state for name, state in by_cluster.items()})
        monkeypatch.setattr(fetch, "fetch_cluster_state", fake)
        return fake

    return install


def _cluster(name: str, placement: dict[str, Any] | None, **health: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "loopback_ip": f"127.0.0.{10 + ord(name[-1]) - ord('a')}",  # kafka-a: .10, kafka-b: .11, ...
        "port_base": 9090,
        "upstream_listener": "INTERNAL",
        "kraft": {"bootstrap_servers": ["10.0.0.1:9092", "10.0.0.2:9092"]},
    }
    if placement is not None:
        entry["health"] = {"placement": placement, **health}
    return entry


@pytest.fixture
def config(tmp_path: Path):
    def write(*clusters: dict[str, Any]) -> Path:
        path = tmp_path / "kafka-xds.yaml"
        entries = list(clusters) or [_cluster("kafka-a", {"rack_pattern": PATTERN})]
        path.write_text(
            yaml.safe_dump({"xds": {"tls": None}, "upstream_tls": None, "kafka_clusters": entries})
        )
        return path

    return write


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["placement", *args])
    out, err = capsys.readouterr()
    return code, out, err


def flat(text: str) -> str:
    """The text with its line breaks (wrapped lines, commands continued with \\) as single spaces."""
    return " ".join(word for word in text.split() if word != "\\")


def run_json(capsys, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run(capsys, *args, "--json")
    return code, json.loads(out)


# -- the report -------------------------------------------------------------------------------------


def test_no_violations_exit_0(answers, config, capsys):
    answers(kafka_a=_state(SPREAD))
    code, out, err = run(capsys, "--config", str(config()))
    assert (code, err) == (0, "")
    assert "no violations" in out


def test_violations_exit_1_with_counts_per_topic_and_rule_and_partitions_named(answers, config, capsys):
    answers(kafka_a=_state(SKEWED, SPREAD))
    code, out, _ = run(capsys, "--config", str(config()))
    assert code == 1
    assert "9 violations in 3 partitions: spread 3, dimension-loss 3, isr-at-risk 3" in out
    assert "  orders  spread          cluster    3           0, 1, 2" in out
    assert "orders-0: 3 violations; replicas 1 k8s-1/az-a, 2 k8s-1/az-b, 3 k8s-1/az-c" in out
    assert "payments" not in out.split("worst partitions:")[0].split("violations in")[1]


def test_the_matrix_has_replicas_leaders_and_broker_ids_per_cell(answers, config, capsys):
    answers(kafka_a=_state(SKEWED, SPREAD))
    _, out, _ = run(capsys, "--config", str(config()))
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("cluster \\ zone"))
    assert lines[header].split() == ["cluster", "\\", "zone", "az-a", "az-b", "az-c", "all"]
    assert lines[header + 1].split() == ["k8s-1", "4/2", "[1]", "4/1", "[2]", "4/1", "[3]", "12/4"]
    assert lines[header + 2].split() == ["k8s-2", "1/1", "[4]", "1/0", "[5]", "1/0", "[6]", "3/1"]
    assert lines[header + 3].split() == ["all", "5/3", "5/1", "5/1", "15/5"]


def test_text_stays_within_100_columns_with_long_names_and_many_brokers(answers, config, capsys):
    racks = {b: f"k8s-{1 + b % 2}.az-{'abc'[b % 3]}" for b in range(100, 160)}
    racks[999] = "ec2-" + "x" * 80
    topic = "t" * 90
    partitions = [tuple(100 + 2 * ((n + i) % 30) for i in range(3)) for n in range(30)]  # all k8s-1
    answers(
        kafka_a=_state((topic, partitions), ("orders", [(999, 100, 101)]), racks=racks, min_isr={topic: 3})
    )
    code, out, _ = run(capsys, "--config", str(config()), "--plan", str(config().parent / "p.json"))
    assert code == 1
    assert max(len(line) for line in out.splitlines()) <= 100, out
    assert f"unplaced: broker 999 (rack 'ec2-{'x' * 80}') holds 1 replica" in flat(out)


def test_json_is_one_stable_document_with_every_violation(answers, config, capsys):
    answers(kafka_a=_state(SKEWED, SPREAD))
    code, answer = run_json(capsys, "--config", str(config()))
    assert (code, answer["version"], answer["exit_code"]) == (1, 1, 1)
    (cluster,) = answer["clusters"]
    assert cluster["reachable"] is True and cluster["dimensions"] == ["cluster", "zone"]
    assert cluster["violations"]["total"] == 9 and len(cluster["violations"]["all"]) == 9
    assert cluster["violations"]["by_topic"][0] == {
        "topic": "orders",
        "rule": "spread",
        "dimension": "cluster",
        "partitions": 3,
        "examples": [0, 1, 2],
    }
    assert cluster["brokers"][0] == {
        "id": 1,
        "registered": True,
        "rack": "k8s-1.az-a",
        "location": {"cluster": "k8s-1", "zone": "az-a"},
        "replicas": 4,
        "leaders": 2,
    }
    assert {"row": "k8s-2", "column": "az-a", "brokers": [4], "replicas": 1, "leaders": 1} in cluster[
        "matrix"
    ]["cells"]
    assert cluster["plan"] is None


def test_topics_select_by_name_or_regex(answers, config, capsys):
    answers(kafka_a=_state(SKEWED, SPREAD))
    assert run_json(capsys, "--config", str(config()), "--topics", "payments")[0] == 0
    code, answer = run_json(capsys, "--config", str(config()), "--topics", "ord.*")
    assert code == 1 and answer["clusters"][0]["topics"] == ["orders"]
    code, _, err = run(capsys, "--config", str(config()), "--topics", "orders,refunds")
    assert code == 2 and err == "kafka-xds placement: --topics: no topic refunds in the cluster\n"


def test_every_cluster_with_placement_is_reported_and_an_unreachable_one_exits_2(answers, config, capsys):
    path = config(
        _cluster("kafka-a", {"rack_pattern": PATTERN}),
        _cluster("kafka-b", {"rack_pattern": PATTERN}, timeout_seconds=7),
        _cluster("kafka-c", None),
    )
    fake = answers(
        kafka_a=_state(SPREAD),
        kafka_b=ClusterUnreachable("kafka-b", (("10.0.0.1:9092", "connection refused"),), False),
    )
    code, out, err = run(capsys, "--config", str(path))
    assert code == 2
    assert sorted(fake.calls) == [("kafka-a", 5.0), ("kafka-b", 7.0)]  # each its health.timeout_seconds
    assert "kafka-b: cluster unreachable (10.0.0.1:9092: connection refused)" in out
    assert err == "kafka-xds placement: kafka-b: cluster unreachable\n"
    code, answer = run_json(capsys, "--config", str(path), "--timeout", "2")
    assert code == 2 and answer["clusters"][1]["unreachable"][0]["problem"] == "connection refused"
    assert {timeout for _, timeout in fake.calls[2:]} == {2.0}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--cluster", "kafka-x"], "--cluster: {config} has no cluster 'kafka-x' (it has kafka-a, kafka-c)"),
        (["--cluster", "kafka-c"], "--cluster: kafka-c has no health.placement: set"),
        (["--drain", "1"], "--drain: only with --plan FILE"),
        (["--batch-size", "2"], "--batch-size: only with --plan FILE"),
        (["--plan", "/nonexistent/dir/p.json"], "--plan: /nonexistent/dir is no directory"),
        (["--topics", "a("], "--topics: 'a(' is no topic name and no regex"),
    ],
)
def test_usage_errors_exit_2_naming_the_option(answers, config, capsys, args, error):
    answers(kafka_a=_state(SPREAD))
    path = config(_cluster("kafka-a", {"rack_pattern": PATTERN}), _cluster("kafka-c", None))
    code, out, err = run(capsys, "--config", str(path), *args)
    assert (code, out) == (2, "")
    assert err.startswith("kafka-xds placement: " + error.format(config=path)), err


def test_a_config_without_placement_is_refused(config, capsys):
    code, _, err = run(capsys, "--config", str(config(_cluster("kafka-c", None))))
    assert code == 2 and "no cluster of" in err and "has health.placement" in err


# -- the plan ---------------------------------------------------------------------------------------


def test_plan_writes_kafkas_reassignment_that_fixes_every_fixable_violation(
    answers, config, capsys, tmp_path
):
    answers(kafka_a=_state(SKEWED, SPREAD))
    plan_file = tmp_path / "plan.json"
    code, answer = run_json(capsys, "--config", str(config()), "--plan", str(plan_file))
    assert code == 1  # the cluster still breaks the rules: nothing was executed
    plan = answer["clusters"][0]["plan"]
    assert (plan["executed"], plan["partitions"], plan["replica_moves"]) == (False, 3, 3)
    assert plan["leaders_kept"] + plan["leader_changes"] == 3 and plan["unfixable"] == []
    written = json.loads(plan_file.read_text())
    assert written["version"] == 1 and set(written["partitions"][0]) == {
        "topic",
        "partition",
        "replicas",
        "log_dirs",
    }
    moves = parse_reassignment(written)
    assert set(moves) == {PartitionId("orders", n) for n in range(3)}
    assert all({4, 5, 6} & set(replicas) for replicas in moves.values())
    (batch,) = plan["batches"]
    base = [
        "kafka-reassign-partitions.sh",
        "--bootstrap-server",
        "10.0.0.1:9092,10.0.0.2:9092",
        "--reassignment-json-file",
        str(plan_file),
    ]
    assert batch["execute"] == [*base, "--execute", "--throttle", "50000000"]
    assert batch["verify"] == [*base, "--verify"]


def test_plan_text_says_the_size_what_cannot_be_fixed_and_the_commands(answers, config, capsys, tmp_path):
    answers(kafka_a=_state(SKEWED, ("rf3", [(1, 4, 2)]), min_isr={"rf3": 2}))
    code, out, _ = run(
        capsys, "--config", str(config()), "--plan", str(tmp_path / "p.json"), "--throttle", "1000"
    )
    assert code == 1
    plan = flat(out[out.index("plan: ") :])
    assert plan.startswith("plan: 4 partitions to reassign, 4 replica moves;")
    assert f"wrote {tmp_path / 'p.json'} (kafka-reassign-partitions JSON); nothing was executed" in plan
    assert (
        "cannot be fixed: 1 violation rf3 partition 0, dimension-loss (cluster): RF 3 over 2 values" in plan
    )
    assert "--execute --throttle 1000" in plan and "kafka-xds executes nothing" in plan


def test_nothing_to_fix_writes_no_file(answers, config, capsys, tmp_path):
    answers(kafka_a=_state(SPREAD))
    code, out, _ = run(capsys, "--config", str(config()), "--plan", str(tmp_path / "p.json"))
    assert code == 0 and "nothing to reassign: no file written" in out
    assert not (tmp_path / "p.json").exists()


def test_a_drain_by_ids_is_written_in_numbered_batches(answers, config, capsys, tmp_path):
    answers(kafka_a=_state(("t", [(1, 5, 3), (5, 1, 6), (2, 4, 6), (1, 2, 6), (5, 3, 4)])))
    (tmp_path / "drain.9.json").write_text("{}")  # an earlier, longer plan's
    args = ["--config", str(config()), "--plan", str(tmp_path / "drain.json"), "--drain", "1,5"]
    code, answer = run_json(capsys, *args, "--batch-size", "3")
    assert code == 0
    plan = answer["clusters"][0]["plan"]
    assert plan["drained"] == [1, 5] and plan["batch_size"] == 3
    assert [(b["file"], b["partitions"]) for b in plan["batches"]] == [
        (str(tmp_path / "drain.1.json"), 3),
        (str(tmp_path / "drain.2.json"), 1),
    ]
    assert plan["stale_files"] == [str(tmp_path / "drain.9.json")]
    for batch in plan["batches"]:
        written = parse_reassignment((tmp_path / Path(batch["file"]).name).read_text())
        assert all(not {1, 5} & set(replicas) for replicas in written.values())
        assert all(len(replicas) == 3 for replicas in written.values())
    assert not (tmp_path / "drain.json").exists()


def test_a_drain_by_dimension_value_and_topics_names_what_it_leaves(answers, config, capsys, tmp_path):
    racks = {**RACKS, 7: "vm.az-a", 8: "vm.az-b"}
    answers(kafka_a=_state(("a", [(7, 2, 6)]), ("b", [(8, 1, 6)]), racks=racks))
    args = ["--config", str(config()), "--plan", str(tmp_path / "p.json"), "--drain", "cluster=vm"]
    _, answer = run_json(capsys, *args, "--topics", "a")
    plan = answer["clusters"][0]["plan"]
    assert plan["drained"] == [7, 8]
    assert [m["topic"] for b in plan["batches"] for m in b["moves"]] == ["a"]
    assert plan["outside_topics_on_drained"] == [{"topic": "b", "partition": 0}]
    _, out, _ = run(capsys, *args, "--topics", "a")
    assert "not drained: 1 partition outside --topics keep replicas on drained brokers (b-0)" in out


@pytest.mark.parametrize(
    ("drain", "error"),
    [
        ("zone=az-q", "--drain: zone=az-q selects no broker of kafka-a"),
        ("rack=x", "--drain: drain names dimensions ['rack']"),
        ("1,42", "--drain: kafka-a has no broker 42"),
        ("5-3", "--drain: expected a range from low to high, got '5-3'"),
        ("cluster=", "--drain: expected broker ids (101-103) or DIMENSION=VALUE"),
    ],
)
def test_a_drain_that_selects_nothing_known_is_refused(answers, config, capsys, tmp_path, drain, error):
    answers(kafka_a=_state(SKEWED))
    code, _, err = run(
        capsys, "--config", str(config()), "--plan", str(tmp_path / "p.json"), "--drain", drain
    )
    assert code == 2 and err.startswith(f"kafka-xds placement: {error}"), err
    assert not (tmp_path / "p.json").exists()


def test_a_plan_needs_one_cluster(answers, config, capsys, tmp_path):
    path = config(
        _cluster("kafka-a", {"rack_pattern": PATTERN}), _cluster("kafka-b", {"rack_pattern": PATTERN})
    )
    code, _, err = run(capsys, "--config", str(path), "--plan", str(tmp_path / "p.json"))
    assert (
        code == 2 and "--plan: a plan is for one cluster: name one with --cluster (kafka-a, kafka-b)" in err
    )
    answers(kafka_b=_state(SKEWED))
    assert (
        run(capsys, "--config", str(path), "--cluster", "kafka-b", "--plan", str(tmp_path / "p.json"))[0] == 1
    )


def test_no_secret_in_any_output_and_the_commands_take_a_client_config(answers, config, capsys, tmp_path):
    password = tmp_path / "password"
    password.write_text(PASSWORD)
    entry = _cluster("kafka-a", {"rack_pattern": PATTERN})
    entry["kraft"] |= {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl": {"mechanism": "PLAIN", "username": "admin", "password_file": str(password)},
    }
    answers(kafka_a=_state(SKEWED))
    args = ["--config", str(config(entry)), "--plan", str(tmp_path / "p.json")]
    outputs = [run(capsys, *args), run(capsys, *args, "--json")]
    assert all(PASSWORD not in out + err for _, out, err in outputs)
    assert "--command-config client.properties" in flat(outputs[0][1])
    assert PASSWORD not in (tmp_path / "p.json").read_text()


def test_the_help_says_nothing_is_executed(capsys):
    with pytest.raises(SystemExit):
        cli.main(["placement", "--help"])
    assert "kafka-xds executes nothing" in capsys.readouterr().out


# -- ids --------------------------------------------------------------------------------------------


def test_broker_ids_read_ranges_and_print_back_as_ranges():
    assert parse_broker_ids("101-103,105") == {101, 102, 103, 105}
    assert id_ranges({105, 101, 102, 103, 107, 108}) == "101-103,105,107-108"
    with pytest.raises(ValueError, match="at most"):
        parse_broker_ids("0-4294967295")
