"""Config and static broker files: UTF-8 YAML without duplicate keys, paths relative to the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import REPO
from xds.config.model import ConfigError, KafkaCluster, load_config, load_static_brokers

CLUSTER = """\
xds: {tls: null}
upstream_tls: null
kafka_clusters:
  - name: kafka-a
    loopback_ip: 127.0.0.10
    port_base: 9090
    upstream_listener: MESH
    static: {file: brokers.yaml}
"""


def _refused(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return raised.value


def test_config_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "kafka-xds.yaml"
    path.write_bytes(b"\xff\xfe" + CLUSTER.encode("utf-16-le"))
    error = _refused(path)
    assert (error.key, error.problem) == (str(path), "expected UTF-8 text, got byte 0xff at offset 0")


def test_config_with_a_utf8_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "kafka-xds.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + CLUSTER.replace("{file: brokers.yaml}", "{brokers: []}").encode())
    assert load_config(path).kafka_clusters[0].name == "kafka-a"


def test_duplicate_key_in_the_config_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "kafka-xds.yaml"
    path.write_text(CLUSTER.replace("    port_base: 9090\n", "    port_base: 9090\n    port_base: 9190\n"))
    error = _refused(path)
    assert (error.key, error.problem) == (str(path), "duplicate key 'port_base' at lines 6 and 7")


def test_duplicate_top_level_section_is_refused(tmp_path):
    path = tmp_path / "kafka-xds.yaml"
    path.write_text(CLUSTER + "upstream_tls: null\n")
    assert _refused(path).problem == "duplicate key 'upstream_tls' at lines 2 and 9"


def _cluster(path: Path) -> KafkaCluster:
    path.write_text(CLUSTER.replace("{file: brokers.yaml}", "{brokers: []}"))
    return load_config(path).kafka_clusters[0]


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    brokers = tmp_path / "brokers.yaml"
    brokers.write_text(
        "brokers:\n"
        "  - &first {id: 1, host: 10.0.0.1, port: 9094, rack: az1}\n"
        "  - {<<: *first, id: 2, host: 10.0.0.2}\n"
    )
    loaded = load_static_brokers(brokers, _cluster(tmp_path / "kafka-xds.yaml"))
    assert [(broker.id, broker.host, broker.rack) for broker in loaded] == [
        (1, "10.0.0.1", "az1"),
        (2, "10.0.0.2", "az1"),
    ]


def test_duplicate_key_in_a_static_broker_file_is_refused(tmp_path):
    brokers = tmp_path / "brokers.yaml"
    brokers.write_text("brokers:\n  - id: 1\n    host: 10.0.0.1\n    host: 10.0.0.9\n    port: 9094\n")
    with pytest.raises(ConfigError) as raised:
        load_static_brokers(brokers, _cluster(tmp_path / "kafka-xds.yaml"))
    assert (raised.value.key, raised.value.problem) == (str(brokers), "duplicate key 'host' at lines 3 and 4")


def test_static_broker_file_that_is_not_utf8_is_refused(tmp_path):
    brokers = tmp_path / "brokers.yaml"
    text = "brokers: [{id: 1, host: 10.0.0.1, port: 9094, rack: zürich}]\n"
    brokers.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError) as raised:
        load_static_brokers(brokers, _cluster(tmp_path / "kafka-xds.yaml"))
    assert raised.value.problem == f"expected UTF-8 text, got byte 0xfc at offset {text.index('ü')}"


def test_relative_paths_resolve_next_to_the_config_even_when_they_exist_elsewhere(tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "kafka-xds.yaml").write_text(CLUSTER)
    (tmp_path / "brokers.yaml").write_text("brokers: []\n")  # the same relative path from the cwd
    monkeypatch.chdir(tmp_path)
    static = load_config(Path("etc/kafka-xds.yaml")).kafka_clusters[0].static
    assert static is not None and static.file == str(folder / "brokers.yaml")


def test_example_config_finds_its_broker_file_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(REPO / "config" / "example.yaml")
    static = config.kafka_clusters[0].static
    assert static is not None and static.file == str(REPO / "config" / "brokers-a.yaml")
    assert len(load_static_brokers(Path(static.file), config.kafka_clusters[0])) == 3
