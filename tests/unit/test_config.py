"""Config validation: every refusal names one key and one problem."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from xds.config.model import ConfigError, SubjectAltName, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]

VALID: dict[str, Any] = {
    "xds": {"tls": None},
    "upstream_tls": {
        "ca_file": "/etc/ca.pem",
        "cert_file": "/etc/c.pem",
        "key_file": "/etc/k.pem",
        "broker_names": {"dns": ["{broker_id}.{cluster}.svc"]},
    },
    "kafka_clusters": [
        {
            "name": "kafka-a",
            "loopback_ip": "127.0.0.10",
            "port_base": 9090,
            "upstream_listener": "MESH",
            "static": {"brokers": [{"id": 1, "host": "10.0.0.1", "port": 9094}]},
        },
        {
            "name": "kafka-b",
            "loopback_ip": "127.0.0.11",
            "port_base": 9090,
            "upstream_listener": "MESH",
            "static": {"brokers": [{"id": 1, "host": "10.0.1.1", "port": 9094}]},
        },
    ],
}


def variant(**changes: Any) -> dict[str, Any]:
    """VALID with `kafka_clusters[1]` keys (or top-level keys prefixed `top_`) changed; None deletes."""
    config = copy.deepcopy(VALID)
    for key, value in changes.items():
        target = config if key.startswith("top_") else config["kafka_clusters"][1]
        key = key.removeprefix("top_")
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return config


def refused(config: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        parse_config(config)
    return raised.value


def test_valid_config_loads():
    config = parse_config(VALID)
    assert [cluster.name for cluster in config.kafka_clusters] == ["kafka-a", "kafka-b"]
    assert config.xds.listen == "127.0.0.1:18000"
    assert config.debug.listen == "127.0.0.1:19000"


def test_unknown_key_is_refused_with_its_path_and_the_known_key_it_is_closest_to():
    error = refused(variant(port_bas=9090))
    assert error.key == "kafka_clusters[1].port_bas"
    assert error.problem == "unknown key; did you mean 'port_base'?"


def test_an_unknown_key_far_from_every_known_one_gets_no_guess():
    error = refused(variant(colour="blue"))
    assert (error.key, error.problem) == ("kafka_clusters[1].colour", "unknown key")


def test_a_misspelt_required_key_is_reported_as_unknown_not_as_the_required_key_missing():
    raw = variant()
    cluster = raw["kafka_clusters"][1]
    cluster["upstream_listner"] = cluster.pop("upstream_listener", "MESH")
    error = refused(raw)
    assert error.key == "kafka_clusters[1].upstream_listner"
    assert error.problem == "unknown key; did you mean 'upstream_listener'?"


def test_unknown_keys_in_nested_sections_are_matched_against_that_section():
    raw = variant()
    raw["xds"] = {**raw.get("xds", {}), "worker": 2}
    error = refused(raw)
    assert (error.key, error.problem) == ("xds.worker", "unknown key; did you mean 'workers'?")


def test_duplicate_cluster_name_is_refused():
    error = refused(variant(name="kafka-a"))
    assert error.key == "kafka_clusters[1].name"
    assert "duplicate" in error.problem


def test_duplicate_loopback_ip_is_refused():
    error = refused(variant(loopback_ip="127.0.0.10"))
    assert error.key == "kafka_clusters[1].loopback_ip"
    assert "kafka-a" in error.problem


def test_loopback_ip_outside_127_slash_8_is_refused():
    error = refused(variant(loopback_ip="10.0.0.10"))
    assert error.key == "kafka_clusters[1].loopback_ip"
    assert "127.0.0.0/8" in error.problem


def test_cluster_name_must_be_lowercase_dns_like():
    assert refused(variant(name="Kafka_A")).key == "kafka_clusters[1].name"


def test_port_range_beyond_65535_is_refused():
    error = refused(variant(port_base=65000, max_broker_id=1000))
    assert error.key == "kafka_clusters[1].max_broker_id"
    assert "65535" in error.problem


def test_broker_port_override_outside_range_is_refused():
    assert refused(variant(broker_ports={1: 70000})).key.startswith("kafka_clusters[1].broker_ports")


def test_overlapping_ports_on_one_ip_are_refused():
    error = refused(variant(broker_ports={1001: 9092}, max_broker_id=10))
    assert error.key == "kafka_clusters[1].broker_ports.1001"
    assert "broker 2" in error.problem


def test_control_plane_listener_inside_a_broker_port_range_is_refused():
    error = refused(variant(top_xds={"listen": "127.0.0.11:9095"}))
    assert error.key == "xds.listen"
    assert "kafka-b" in error.problem


def test_cluster_without_a_source_is_refused():
    error = refused(variant(static=None))
    assert error.key == "kafka_clusters[1]"
    assert "exactly one source" in error.problem


def test_cluster_with_two_sources_is_refused():
    error = refused(variant(zookeeper={"hosts": "127.0.0.1:2181"}))
    assert error.key == "kafka_clusters[1]"
    assert "static, zookeeper" in error.problem


def test_missing_upstream_tls_must_be_explicit():
    error = refused(variant(top_upstream_tls=None))
    assert error.key == "kafka_clusters[0].upstream_tls"
    assert "null for plain TCP" in error.problem


def test_null_upstream_tls_means_plain_tcp():
    config = parse_config({**VALID, "upstream_tls": None})
    assert config.tls_for(config.kafka_clusters[0]) is None


def test_cluster_upstream_tls_overrides_the_global_one():
    own = {
        "ca_file": "/b/ca.pem",
        "cert_file": "/b/c.pem",
        "key_file": "/b/k.pem",
        "verify_broker_names": False,
    }
    config = parse_config(variant(upstream_tls=own))
    assert config.tls_for(config.kafka_clusters[1]).ca_file == "/b/ca.pem"  # type: ignore[union-attr]
    assert config.tls_for(config.kafka_clusters[0]).ca_file == "/etc/ca.pem"  # type: ignore[union-attr]
    plain = parse_config(
        variant(upstream_tls=None)
        | {
            "kafka_clusters": [
                VALID["kafka_clusters"][0],
                {**VALID["kafka_clusters"][1], "upstream_tls": None},
            ]
        }
    )
    assert plain.tls_for(plain.kafka_clusters[1]) is None


TLS_FILES = {"ca_file": "/etc/ca.pem", "cert_file": "/etc/c.pem", "key_file": "/etc/k.pem"}


def test_upstream_tls_without_broker_names_is_refused_naming_the_way_out():
    error = refused(variant(top_upstream_tls=TLS_FILES))
    assert error.key == "upstream_tls.broker_names"
    assert "verify_broker_names: false" in error.problem
    assert "\n" not in str(error)


def test_a_clusters_own_upstream_tls_needs_broker_names_too():
    error = refused(variant(upstream_tls=TLS_FILES))
    assert error.key == "kafka_clusters[1].upstream_tls.broker_names"


def test_broker_names_render_per_broker_from_its_id_and_cluster():
    names = {
        "dns": ["{broker_id}.{cluster}.svc"],
        "uri": ["spiffe://example.org/ns/kafka/sa/{cluster}/broker-{broker_id}"],
    }
    config = parse_config(variant(top_upstream_tls={**TLS_FILES, "broker_names": names}))
    tls = config.tls_for(config.kafka_clusters[1])
    assert tls is not None
    assert tls.names_for("kafka-b", 7) == (
        SubjectAltName("dns", "7.kafka-b.svc"),
        SubjectAltName("uri", "spiffe://example.org/ns/kafka/sa/kafka-b/broker-7"),
    )


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        (
            "{broker}.kafka-a.svc",
            "unknown placeholder {broker} in '{broker}.kafka-a.svc': expected {broker_id} or {cluster}",
        ),
        ("{broker_id:03}.kafka-a.svc", "unknown placeholder {broker_id:03}"),
        ("{}.kafka-a.svc", "unknown placeholder {}"),
        ("{0}.kafka-a.svc", "unknown placeholder {0}"),
        ("{broker_id.kafka-a.svc", "unmatched brace"),
        ("broker}.kafka-a.svc", "unmatched brace"),
        ("", "expected a non-empty name template"),
    ],
)
def test_a_bad_name_template_is_refused_in_one_line(template, problem):
    error = refused(
        variant(top_upstream_tls={**TLS_FILES, "broker_names": {"uri": ["spiffe://x/a", template]}})
    )
    assert error.key == "upstream_tls.broker_names.uri"
    assert problem in error.problem
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    ("names", "key", "problem"),
    [
        ({}, "upstream_tls.broker_names", "expected at least one dns or uri template"),
        ({"dns": []}, "upstream_tls.broker_names", "expected at least one dns or uri template"),
        ({"dns": "{broker_id}.svc"}, "upstream_tls.broker_names.dns", "expected a list of name templates"),
        ({"dns": [7]}, "upstream_tls.broker_names.dns[0]", "string"),
        ({"spiffe": ["x"]}, "upstream_tls.broker_names.spiffe", ""),
    ],
)
def test_broker_names_must_hold_a_list_of_templates(names, key, problem):
    error = refused(variant(top_upstream_tls={**TLS_FILES, "broker_names": names}))
    assert error.key == key
    assert problem in error.problem


def test_verify_broker_names_false_is_the_explicit_opt_out():
    config = parse_config(variant(top_upstream_tls={**TLS_FILES, "verify_broker_names": False}))
    tls = config.tls_for(config.kafka_clusters[0])
    assert tls is not None and tls.names_for("kafka-a", 1) == ()


def test_verify_broker_names_false_with_broker_names_is_contradictory():
    tls = {**TLS_FILES, "verify_broker_names": False, "broker_names": {"dns": ["{broker_id}.svc"]}}
    error = refused(variant(top_upstream_tls=tls))
    assert error.key == "upstream_tls.verify_broker_names"


def test_idle_timeout_shorter_than_kafkas_is_refused():
    error = refused(variant(top_sidecar={"idle_timeout_seconds": 60}))
    assert error.key == "sidecar.idle_timeout_seconds"


def test_static_needs_exactly_one_of_file_or_brokers():
    error = refused(variant(static={"file": "x.yaml", "brokers": []}))
    assert error.key == "kafka_clusters[1].static"


def test_example_config_is_valid():
    config = load_config(REPO / "config" / "example.yaml")
    assert config.kafka_clusters[0].name == "kafka-a"
    assert {cluster.source_kind for cluster in config.kafka_clusters} == {"static", "zookeeper", "kraft"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xds", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_cli_refuses_a_bad_config_with_exit_2_and_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(variant(loopback_ip="127.0.0.10")))
    for command in (["check-config", str(path)], ["serve", "--config", str(path)]):
        result = _cli(*command)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert "kafka_clusters[1].loopback_ip" in result.stderr
        assert "Traceback" not in result.stderr


def test_cli_refuses_unreadable_and_non_yaml_files(tmp_path):
    assert _cli("check-config", str(tmp_path / "missing.yaml")).returncode == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("kafka_clusters: [\n")
    result = _cli("check-config", str(broken))
    assert result.returncode == 2
    assert "not valid YAML" in result.stderr


def test_check_config_prints_the_address_plan(tmp_path):
    brokers = tmp_path / "brokers.yaml"
    brokers.write_text(yaml.safe_dump({"brokers": [{"id": 3, "host": "10.0.0.3", "port": 9094}]}))
    config = variant(static={"file": str(brokers)})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _cli("check-config", str(path), "--plan")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert rows[0] == ["cluster", "broker_id", "loopback_ip", "port", "upstream", "status"]
    assert ["kafka-a", "1", "127.0.0.10", "9091", "10.0.0.1:9094", "live"] in rows
    assert ["kafka-b", "3", "127.0.0.11", "9093", "10.0.0.3:9094", "live"] in rows


def test_check_config_refuses_a_malformed_static_file(tmp_path):
    brokers = tmp_path / "brokers.yaml"
    brokers.write_text(yaml.safe_dump({"brokers": [{"id": 3, "host": "10.0.0.3", "port": 0}]}))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(variant(static={"file": str(brokers)})))
    result = _cli("check-config", str(path))
    assert result.returncode == 2
    assert "kafka_clusters[1].static.file" in result.stderr
    assert "port" in result.stderr


def _zookeeper(**settings: Any) -> dict[str, Any]:
    return variant(static=None, zookeeper={"hosts": "zk-1:2181,zk-2:2181", **settings})


def test_zookeeper_source_with_auth_and_tls_loads():
    config = parse_config(
        _zookeeper(
            chroot="/kafka-b",
            session_timeout_seconds=6,
            startup_timeout_seconds=30,
            auth={"username": "kafka-xds", "password_file": "/etc/kafka-xds/zk-password"},
            tls={"ca_file": "/etc/zk-ca.pem", "cert_file": "/etc/zk.pem", "key_file": "/etc/zk.key"},
        )
    )
    zookeeper = config.kafka_clusters[1].zookeeper
    assert zookeeper is not None and zookeeper.tls is not None and zookeeper.auth is not None
    assert zookeeper.tls.check_hostname
    assert config.kafka_clusters[1].source_kind == "zookeeper"


@pytest.mark.parametrize(
    ("settings", "key", "problem"),
    [
        ({"hosts": "zk-1:2181/kafka-b"}, "zookeeper.hosts", "with the chroot in 'chroot'"),
        ({"hosts": "zk-1:2181,,zk-2:2181"}, "zookeeper.hosts", "'' is not HOST:PORT"),
        ({"hosts": "zk-1:99999"}, "zookeeper.hosts", "'zk-1:99999' is not HOST:PORT"),
        ({"chroot": "kafka-b"}, "zookeeper.chroot", "starts with '/'"),
        ({"chroot": "/"}, "zookeeper.chroot", "does not end with '/'"),
        (
            {"session_timeout_seconds": 0.1},
            "zookeeper.session_timeout_seconds",
            "expected at least 1, got 0.1",
        ),
        ({"startup_timeout_seconds": 0}, "zookeeper.startup_timeout_seconds", "expected more than 0, got 0"),
        ({"auth": {"username": "a:b", "password_file": "/p"}}, "zookeeper.auth.username", "without ':'"),
        ({"auth": {"username": "kafka-xds"}}, "zookeeper.auth.password_file", "required key is missing"),
        ({"tls": {"ca_file": "/ca.pem", "cert_file": "/c.pem"}}, "zookeeper.tls", "both 'cert_file' and"),
        ({"digest": {}}, "zookeeper.digest", "unknown key"),
    ],
)
def test_bad_zookeeper_settings_name_the_key(settings, key, problem):
    error = refused(_zookeeper(**settings))
    assert error.key == f"kafka_clusters[1].{key}"
    assert problem in error.problem


def test_files_kafka_xds_reads_resolve_next_to_the_config_but_sidecar_paths_do_not(tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    for name in ("zk-password", "kafka-password", "kafka-ca.pem", "token"):
        (folder / name).write_text("x\n")
    (folder / "kafka-xds.yaml").write_text(
        yaml.safe_dump(
            {
                "debug": {"listen": "127.0.0.1:19000", "token_file": "token"},
                "xds": {"tls": None},
                "upstream_tls": {
                    "ca_file": "ca.pem",
                    "cert_file": "client.pem",
                    "key_file": "client.key",
                    "verify_broker_names": False,
                },
                "kafka_clusters": [
                    {
                        "name": "kafka-a",
                        "loopback_ip": "127.0.0.10",
                        "port_base": 9090,
                        "upstream_listener": "MESH",
                        "zookeeper": {
                            "hosts": "zk:2181",
                            "auth": {"username": "kafka-xds", "password_file": "zk-password"},
                        },
                    },
                    {
                        "name": "kafka-b",
                        "loopback_ip": "127.0.0.11",
                        "port_base": 9090,
                        "upstream_listener": "MESH",
                        "kraft": {
                            "bootstrap_servers": ["kafka-b-0:9092"],
                            "security_protocol": "SASL_SSL",
                            "ssl": {"ca_file": "kafka-ca.pem"},
                            "sasl": {
                                "mechanism": "SCRAM-SHA-512",
                                "username": "u",
                                "password_file": "kafka-password",
                            },
                        },
                    },
                ],
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(folder / "kafka-xds.yaml")
    zookeeper = config.kafka_clusters[0].zookeeper
    kraft = config.kafka_clusters[1].kraft
    assert zookeeper is not None and zookeeper.auth is not None
    assert kraft is not None and kraft.ssl is not None and kraft.sasl is not None
    assert zookeeper.auth.password_file == str(folder / "zk-password")
    assert kraft.ssl.ca_file == str(folder / "kafka-ca.pem")
    assert kraft.sasl.password_file == str(folder / "kafka-password")
    assert config.debug.token_file == str(folder / "token")
    assert config.upstream_tls is not None and config.upstream_tls.ca_file == "ca.pem"  # the sidecar's path


def test_xds_and_debug_servers_on_the_same_address_are_refused():
    error = refused(variant(top_xds={"listen": "127.0.0.1:18000"}, top_debug={"listen": "127.0.0.1:18000"}))
    assert error.key == "debug.listen"
    assert (
        error.problem
        == "expected an address other than xds.listen's (127.0.0.1:18000), got '127.0.0.1:18000'"
    )


def test_a_wildcard_listen_address_overlaps_every_host_on_its_port():
    error = refused(variant(top_xds={"listen": "0.0.0.0:18000"}, top_debug={"listen": "127.0.0.1:18000"}))
    assert error.key == "debug.listen"


def test_both_servers_on_port_0_get_a_free_port_each():
    config = parse_config(
        variant(top_xds={"listen": "127.0.0.1:0", "tls": None}, top_debug={"listen": "127.0.0.1:0"})
    )
    assert config.debug.listen == "127.0.0.1:0"


def _set(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set `a.b[1].c` in `config`, creating mappings on the way."""
    target: Any = config
    parts = [int(part) if part.isdigit() else part for part in re.split(r"\.|\[|\]\.?", path) if part]
    for part in parts[:-1]:
        target = target[part] if isinstance(part, int) else target.setdefault(part, {})
    target[parts[-1]] = value
    return config


KRAFT = {"bootstrap_servers": ["kafka-b-0:9092"], "security_protocol": "SASL_SSL", "ssl": {}, "sasl": {}}
SASL = {"mechanism": "PLAIN", "username": "u", "password_file": "/p"}


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("xds.max_concurrent_streams", True, "an integer"),
        ("xds.keepalive_time_seconds", True, "a number"),
        ("debug.listen", 19000, "a string"),
        ("dns.refresh_seconds", False, "a number"),
        ("sidecar.keepalive_probes", "3", "an integer"),
        ("upstream_tls.ca_file", 1, "a string"),
        ("kafka_clusters[1].port_base", True, "an integer"),
        ("kafka_clusters[1].max_broker_id", "99", "an integer"),
        ("kafka_clusters[1].upstream_port", 9094.0, "an integer"),
        ("kafka_clusters[1].removal_grace_seconds", True, "a number"),
        ("kafka_clusters[1].client_listener", 1, "a string"),
        ("kafka_clusters[1].static.poll_interval_seconds", True, "a number"),
        ("kafka_clusters[1].static.brokers[0].id", True, "an integer"),
        ("kafka_clusters[1].static.brokers[0].port", "9094", "an integer"),
        ("kafka_clusters[1].static.brokers[0].rack", 1, "a string"),
    ],
)
def test_values_of_the_wrong_type_are_refused_not_converted(path, value, expected):
    error = refused(_set(copy.deepcopy(VALID), path, value))
    assert error.key == path
    assert error.problem.startswith(f"expected {expected}, got ")


@pytest.mark.parametrize(
    ("source", "path", "value", "expected"),
    [
        ({"hosts": "zk:2181"}, "zookeeper.session_timeout_seconds", True, "a number"),
        ({"hosts": "zk:2181"}, "zookeeper.hosts", 2181, "a string"),
        ({"hosts": "zk:2181", "auth": {"password_file": "/p"}}, "zookeeper.auth.username", 7, "a string"),
        (
            {"hosts": "zk:2181", "tls": {"ca_file": "/ca"}},
            "zookeeper.tls.check_hostname",
            "no",
            "true or false",
        ),
        ({"kraft": KRAFT | {"sasl": SASL}}, "kraft.upstream_port", True, "an integer"),
        ({"kraft": KRAFT | {"sasl": SASL}}, "kraft.ssl.check_hostname", 1, "true or false"),
        ({"kraft": KRAFT | {"sasl": SASL}}, "kraft.sasl.username", 1, "a string"),
        ({"kraft": KRAFT | {"sasl": SASL}}, "kraft.poll_interval_seconds", True, "a number"),
    ],
)
def test_source_settings_of_the_wrong_type_are_refused(source, path, value, expected):
    kind = "kraft" if "kraft" in source else "zookeeper"
    config = variant(static=None, **{kind: copy.deepcopy(source.get(kind, source))})
    error = refused(_set(config, f"kafka_clusters[1].{path}", value))
    assert error.key == f"kafka_clusters[1].{path}"
    assert error.problem.startswith(f"expected {expected}, got ")


def test_floats_accept_integers():
    config = parse_config(_set(copy.deepcopy(VALID), "kafka_clusters[1].removal_grace_seconds", 60))
    assert config.kafka_clusters[1].removal_grace_seconds == 60.0


def test_loopback_ip_must_be_written_as_an_address_not_a_number():
    error = refused(variant(loopback_ip=2130706443))
    assert error.key == "kafka_clusters[1].loopback_ip"
    assert error.problem == "expected an IPv4 address inside 127.0.0.0/8, got 2130706443"


def test_negative_broker_id_in_broker_ports_is_refused():
    error = refused(variant(broker_ports={-1: 9101}))
    assert error.key == "kafka_clusters[1].broker_ports"
    assert error.problem == "expected broker ids >= 0, got -1"


def _static(*brokers: dict[str, Any], **cluster: Any) -> dict[str, Any]:
    return variant(static={"brokers": list(brokers)}, **cluster)


@pytest.mark.parametrize("host", ["10.0.0.1:9094", "not a host!", "", "-broker.example", "a..b", "[::1]"])
def test_static_broker_host_that_is_no_address_or_name_is_refused(host):
    error = refused(_static({"id": 4, "host": host, "port": 9094}))
    assert error.key == "kafka_clusters[1].static.brokers[0].host"
    assert error.problem.startswith(f"expected an IP address or a DNS name for broker 4, got {host!r}")


def test_static_broker_host_with_a_port_is_told_where_the_port_goes():
    error = refused(_static({"id": 4, "host": "10.0.0.1:9094", "port": 9094}))
    assert error.problem.endswith("(the port goes in 'port')")


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "::1", "fd00::7", "kafka-0.kafka.svc.cluster.local", "broker1."]
)
def test_static_broker_host_may_be_an_ip_literal_or_a_dns_name(host):
    config = parse_config(_static({"id": 4, "host": host, "port": 9094}))
    assert config.kafka_clusters[1].static.brokers[0].host == host  # type: ignore[union-attr,index]


def test_duplicate_static_broker_id_is_refused():
    error = refused(
        _static({"id": 1, "host": "10.0.0.1", "port": 9094}, {"id": 1, "host": "10.0.0.2", "port": 9094})
    )
    assert error.key == "kafka_clusters[1].static.brokers"
    assert error.problem == "expected unique broker ids, got id 1 at brokers[0] and brokers[1]"


@pytest.mark.parametrize(
    ("broker_id", "cluster", "why"),
    [
        (10, {"port_base": 65530}, "port_base 65530 + 10 = 65540 is outside 1..65535"),
        (70000, {}, "port_base 9090 + 70000 = 79090 is outside 1..65535"),
        (100, {"max_broker_id": 99}, "it is above max_broker_id 99 and not in broker_ports"),
    ],
)
def test_static_broker_without_a_port_is_refused_at_load(broker_id, cluster, why):
    error = refused(_static({"id": broker_id, "host": "10.0.0.1", "port": 9094}, **cluster))
    assert error.key == "kafka_clusters[1].static.brokers[0].id"
    assert error.problem == f"broker id {broker_id} has no port: {why}"


def test_static_broker_above_max_broker_id_with_its_own_port_is_accepted():
    config = parse_config(
        _static({"id": 100, "host": "10.0.0.1", "port": 9094}, max_broker_id=99, broker_ports={100: 9200})
    )
    assert config.kafka_clusters[1].broker_port(100) == 9200


def test_workers_default_to_the_cpu_quota_of_a_container_not_the_nodes_cores(tmp_path):
    from xds.config.model import available_cores

    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a Kubernetes CPU limit of 1.5
    assert available_cores(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no limit: the cores it may run on
    assert available_cores(tmp_path) == len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")  # cgroup v1, half a core
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cores(tmp_path) == 1
