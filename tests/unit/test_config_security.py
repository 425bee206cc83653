"""The security keys of the config: xds.tls, access, and a debug server beyond loopback."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.e2e.test_cli import run, write_config
from tests.unit.test_config import VALID, refused
from xds.config.model import load_config, parse_config
from xds.demo.brokers import Certs, make_certs
from xds.serving.access import access_policy

TLS = {"cert_file": "/etc/xds/tls.crt", "key_file": "/etc/xds/tls.key", "client_ca_file": "/etc/xds/ca.crt"}
RULES = [{"identity": "spiffe://prod/ns/payments/*", "kafka_clusters": ["kafka-a"]}]


def _config(tls: Any = TLS, **top: Any) -> dict[str, Any]:
    config = copy.deepcopy(VALID)
    config["xds"] = {"tls": tls}
    config.update(top)
    return config


def test_xds_tls_must_be_given_or_null():
    config = copy.deepcopy(VALID)
    del config["xds"]
    error = refused(config)
    assert error.key == "xds.tls"
    assert "or null for plaintext" in error.problem


def test_null_xds_tls_means_plaintext():
    assert parse_config(_config(tls=None)).xds.tls is None


def test_xds_tls_without_a_client_ca_asks_for_no_client_certificate():
    tls = parse_config(_config(tls={"cert_file": "/c.pem", "key_file": "/k.pem"})).xds.tls
    assert tls is not None and tls.client_ca_file is None


def test_xds_tls_needs_both_certificate_and_key():
    assert refused(_config(tls={"cert_file": "/c.pem"})).key == "xds.tls.key_file"


def test_xds_tls_files_resolve_next_to_the_config(tmp_path):
    path = write_config(tmp_path, _config(tls={"cert_file": "tls/tls.crt", "key_file": "/abs/tls.key"}))
    tls = load_config(path).xds.tls
    assert tls is not None
    assert (tls.cert_file, tls.key_file) == (str(tmp_path / "tls" / "tls.crt"), "/abs/tls.key")


def test_without_access_every_sidecar_sees_everything():
    assert access_policy(parse_config(_config()).access) is None


def test_access_rules_are_read_in_order():
    config = parse_config(_config(access=RULES))
    policy = access_policy(config.access)
    assert policy is not None
    assert policy.allowed("spiffe://prod/ns/payments/sa/app") == {"kafka-a"}


@pytest.mark.parametrize(
    "tls", [None, {"cert_file": "/c.pem", "key_file": "/k.pem"}], ids=["plaintext", "no-client-ca"]
)
def test_access_needs_xds_tls_with_a_client_ca(tls):
    error = refused(_config(tls=tls, access=RULES))
    assert error.key == "access"
    assert "client_ca_file" in error.problem


def test_access_naming_an_unknown_cluster_is_refused_naming_the_key():
    rules = [*RULES, {"identity": "spiffe://prod/*", "kafka_clusters": ["kafka-b", "kafka-z"]}]
    error = refused(_config(access=rules))
    assert (error.key, error.problem) == (
        "access[1].kafka_clusters[1]",
        "unknown Kafka cluster 'kafka-z': expected one of kafka-a, kafka-b",
    )


def test_an_access_rule_needs_an_identity():
    error = refused(_config(access=[{"identity": "", "kafka_clusters": ["kafka-a"]}]))
    assert error.key == "access[0].identity"


@pytest.mark.parametrize("listen", ["0.0.0.0:19000", "[::]:19000", "10.1.2.3:19000", "debug.local:19000"])
def test_a_debug_server_beyond_loopback_needs_a_token(listen):
    error = refused(_config(tls=None, debug={"listen": listen}))
    assert error.key == "debug.listen"
    assert "debug.token_file" in error.problem


@pytest.mark.parametrize("listen", ["127.0.0.5:19000", "[::1]:19000", "localhost:19000"])
def test_a_debug_server_on_loopback_needs_no_token(listen):
    assert parse_config(_config(tls=None, debug={"listen": listen})).debug.token_file is None


def test_a_debug_server_beyond_loopback_with_a_token_is_accepted():
    config = parse_config(_config(tls=None, debug={"listen": "0.0.0.0:19000", "token_file": "/t"}))
    assert config.debug.listen == "0.0.0.0:19000"


# check-config and serve agree -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_check_config_and_serve_refuse_access_without_a_client_ca(capsys, tmp_path, command):
    path = write_config(tmp_path, _config(tls=None, access=RULES))
    code, _, err = run(capsys, command, "--config", str(path))
    assert code == 2
    assert err.startswith("kafka-xds: config error: access: needs xds.tls with client_ca_file")


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_check_config_and_serve_refuse_a_public_debug_server_without_a_token(capsys, tmp_path, command):
    path = write_config(tmp_path, _config(tls=None, debug={"listen": "0.0.0.0:0"}))
    code, _, err = run(capsys, command, "--config", str(path))
    assert code == 2
    assert err.startswith("kafka-xds: config error: debug.listen: 0.0.0.0:0 is not a loopback address")


def _tls_files(certs: Certs, **replace: str) -> dict[str, str]:
    cert, key = certs.issue("xds-server", hosts=["127.0.0.1"])
    files = {"cert_file": str(cert), "key_file": str(key), "client_ca_file": str(certs.ca_file)}
    return files | replace


def test_check_config_reads_the_certificate_files(capsys, tmp_path):
    path = write_config(tmp_path, _config(tls=_tls_files(make_certs(tmp_path / "certs")), access=RULES))
    code, out, _ = run(capsys, "check-config", "--config", str(path))
    assert code == 0
    assert "  xDS on 127.0.0.1:18000: mTLS, access policy of 1 rule(s)" in out.splitlines()


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_key_that_is_not_the_certificates_is_refused_naming_it(capsys, tmp_path, command):
    certs = make_certs(tmp_path / "certs")
    tls = _tls_files(certs, key_file=str(certs.client_key))  # a key of the same CA, not this cert's
    path = write_config(tmp_path, _config(tls=tls))
    code, _, err = run(capsys, command, "--config", str(path))
    assert code == 2
    assert err == (
        "kafka-xds: config error: xds.tls.key_file: is not the key of the certificate in xds.tls.cert_file\n"
    )
    assert "PRIVATE KEY" not in err


def test_a_missing_certificate_file_is_refused_naming_its_key(capsys, tmp_path):
    certs = make_certs(tmp_path / "certs")
    missing = tmp_path / "nowhere.pem"
    path = write_config(tmp_path, _config(tls=_tls_files(certs, client_ca_file=str(missing))))
    code, _, err = run(capsys, "check-config", "--config", str(path))
    assert code == 2
    assert err == (
        f"kafka-xds: config error: xds.tls.client_ca_file: cannot read {missing}: No such file or directory\n"
    )


def test_a_file_that_is_no_certificate_is_refused_naming_its_key(capsys, tmp_path):
    certs = make_certs(tmp_path / "certs")
    path = write_config(tmp_path, _config(tls=_tls_files(certs, cert_file=str(certs.client_key))))
    code, _, err = run(capsys, "check-config", "--config", str(path))
    assert code == 2
    assert err.startswith("kafka-xds: config error: xds.tls.cert_file: expected PEM certificates")
