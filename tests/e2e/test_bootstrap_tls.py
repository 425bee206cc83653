"""`kafka-xds bootstrap --xds-ca/--xds-cert/--xds-key [--xds-server-name] --output`: mTLS to kafka-xds
with the sidecar's certificate and CA from file-based SDS."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_cli import run
from tests.support.envoy import envoy_binary

TLS = ["--xds-ca", "/etc/kafka-mesh/ca.crt", "--xds-cert", "/etc/kafka-mesh/tls.crt"]
TLS += ["--xds-key", "/etc/kafka-mesh/tls.key"]


def _bootstrap(capsys: pytest.CaptureFixture[str], output: Path, *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "bootstrap", "--node-id", "app-1", *argv, "--output", str(output))
    assert (code, out, err) == (0, "", "")
    loaded: dict[str, Any] = yaml.safe_load(output.read_text())
    return loaded


def _tls_context(bootstrap: dict[str, Any]) -> dict[str, Any]:
    (cluster,) = bootstrap["static_resources"]["clusters"]
    socket = cluster["transport_socket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    context: dict[str, Any] = socket["typed_config"]
    return context


def _secret(path: str) -> dict[str, Any]:
    (secret,) = yaml.safe_load(Path(path).read_text())["resources"]
    assert secret["@type"] == "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    found: dict[str, Any] = secret
    return found


def test_the_server_is_checked_by_name_and_sent_that_name_as_sni(capsys, tmp_path):
    bootstrap = _bootstrap(capsys, tmp_path / "envoy.yaml", "--xds", "kafka-xds.kafka-xds.svc:18000", *TLS)
    context = _tls_context(bootstrap)
    assert context["sni"] == "kafka-xds.kafka-xds.svc"
    validation = context["common_tls_context"]["combined_validation_context"]
    assert validation["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "kafka-xds.kafka-xds.svc"}}
    ]


def test_the_client_certificate_and_ca_come_from_sds_files_beside_the_bootstrap(capsys, tmp_path):
    bootstrap = _bootstrap(capsys, tmp_path / "envoy.yaml", "--xds", "kafka-xds:18000", *TLS)
    common = _tls_context(bootstrap)["common_tls_context"]
    (certificate,) = common["tls_certificate_sds_secret_configs"]
    trusted = common["combined_validation_context"]["validation_context_sds_secret_config"]
    for config in (certificate, trusted):
        source = config["sds_config"]["path_config_source"]
        assert Path(source["path"]).parent == tmp_path  # absolute, next to the bootstrap
        assert source["watched_directory"] == {"path": "/etc/kafka-mesh"}  # the Secret volume
    client = _secret(certificate["sds_config"]["path_config_source"]["path"])
    assert client["name"] == certificate["name"]
    assert client["tls_certificate"] == {
        "certificate_chain": {"filename": "/etc/kafka-mesh/tls.crt"},
        "private_key": {"filename": "/etc/kafka-mesh/tls.key"},  # named, never read or copied
        "watched_directory": {"path": "/etc/kafka-mesh"},
    }
    ca = _secret(trusted["sds_config"]["path_config_source"]["path"])
    assert ca["name"] == trusted["name"]
    assert ca["validation_context"] == {
        "trusted_ca": {"filename": "/etc/kafka-mesh/ca.crt"},
        "watched_directory": {"path": "/etc/kafka-mesh"},
    }


def test_an_ip_server_name_is_checked_as_an_ip_san_and_not_sent_as_sni(capsys, tmp_path):
    context = _tls_context(_bootstrap(capsys, tmp_path / "envoy.yaml", "--xds", "10.0.0.7:18000", *TLS))
    assert "sni" not in context  # an IP literal is not a valid SNI (RFC 6066)
    validation = context["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "10.0.0.7"}}
    ]


def test_replicas_behind_different_names_are_checked_against_the_server_name_given(capsys, tmp_path):
    bootstrap = _bootstrap(
        capsys,
        tmp_path / "envoy.yaml",
        *("--xds", "kafka-xds-0.kafka-xds:18000", "--xds", "kafka-xds-1.kafka-xds:18000"),
        *(*TLS, "--xds-server-name", "kafka-xds.kafka-xds.svc"),
    )
    assert _tls_context(bootstrap)["sni"] == "kafka-xds.kafka-xds.svc"


def test_two_bootstraps_in_one_folder_keep_their_own_sds_files(capsys, tmp_path):
    _bootstrap(capsys, tmp_path / "a.yaml", *TLS)
    _bootstrap(capsys, tmp_path / "b.yaml", "--xds-ca", "/other/ca.pem", *TLS[2:])
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == [
        "a.kafka_xds_client_certificate.yaml",
        "a.kafka_xds_trusted_ca.yaml",
        "a.yaml",
        "b.kafka_xds_client_certificate.yaml",
        "b.kafka_xds_trusted_ca.yaml",
        "b.yaml",
    ]


def test_output_without_tls_writes_only_the_bootstrap(capsys, tmp_path):
    bootstrap = _bootstrap(capsys, tmp_path / "envoy.yaml")
    assert "transport_socket" not in bootstrap["static_resources"]["clusters"][0]
    assert [path.name for path in tmp_path.iterdir()] == ["envoy.yaml"]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (
            ["--xds-ca", "/ca.pem", "--xds-cert", "/c.pem"],
            "--xds-key: give --xds-ca, --xds-cert and --xds-key together",
        ),
        (["--xds-key", "/k.pem"], "--xds-ca: give --xds-ca, --xds-cert and --xds-key together"),
        (
            ["--xds-server-name", "kafka-xds"],
            "--xds-server-name: only with --xds-ca, --xds-cert and --xds-key",
        ),
        (
            ["--xds-ca", "ca.pem", "--xds-cert", "/c.pem", "--xds-key", "/k.pem"],
            "--xds-ca: expected the absolute path of a file on the sidecar (Envoy reads it), got 'ca.pem'",
        ),
        (
            ["--xds-ca", "/ca.pem", "--xds-cert", "/c.pem", "--xds-key", "/"],
            "--xds-key: expected the absolute path of a file on the sidecar (Envoy reads it), got '/'",
        ),
        (
            [*TLS, "--xds-server-name", "kafka xds"],
            "--xds-server-name: expected a DNS name or an IP, got 'kafka xds'",
        ),
        (
            [*TLS, "--xds", "a.svc:18000", "--xds", "b.svc:18000"],
            "--xds-server-name: the --xds replicas have different hosts (a.svc, b.svc): give the name "
            "kafka-xds's certificate holds",
        ),
    ],
)
def test_tls_options_are_checked_naming_the_option(capsys, tmp_path, argv, problem):
    output = tmp_path / "envoy.yaml"
    code, out, err = run(capsys, "bootstrap", "--node-id", "app-1", *argv, "--output", str(output))
    assert (code, out, err) == (2, "", f"kafka-xds bootstrap: {problem}\n")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_tls_needs_output_for_its_sds_files(capsys):
    code, out, err = run(capsys, "bootstrap", "--node-id", "app-1", *TLS)
    assert (code, out) == (2, "")
    assert err.startswith("kafka-xds bootstrap: --output: required with --xds-ca/--xds-cert/--xds-key")


def test_an_output_that_cannot_be_written_is_named(capsys, tmp_path):
    output = tmp_path / "missing-folder" / "envoy.yaml"
    code, _, err = run(capsys, "bootstrap", "--node-id", "app-1", "--output", str(output))
    assert code == 2
    assert err.startswith(f"kafka-xds bootstrap: --output: cannot write {output.parent}/")


@pytest.mark.envoy
@pytest.mark.parametrize("api", ["delta", "sotw"])
def test_the_tls_bootstrap_passes_envoys_own_validation(capsys, tmp_path, api):
    secret = tmp_path / "secret"  # Envoy validates that the watched directory exists
    secret.mkdir()
    files = [f"--xds-ca={secret}/ca.crt", f"--xds-cert={secret}/tls.crt", f"--xds-key={secret}/tls.key"]
    output = tmp_path / "bootstrap" / "envoy.yaml"
    output.parent.mkdir()
    _bootstrap(capsys, output, "--xds", "kafka-xds.kafka-xds.svc:18000", "--api", api, *files)
    validated = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(output)], capture_output=True, text=True, timeout=60
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
