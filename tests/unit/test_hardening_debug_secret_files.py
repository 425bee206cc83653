"""Secret files (keys, passwords, the debug token) that others may read are warned about, once,
by `check-config` and `serve`: the key, the file and its mode, never the content."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.addresses import LoopbackAddresses
from xds.app import Application
from xds.cli import main
from xds.config.model import parse_config

TOKEN = "token-that-must-not-show"
PASSWORD = "password-that-must-not-show"


def _config(tmp_path: Path, host: str, token_mode: int, password_mode: int) -> dict[str, Any]:
    token, password = tmp_path / "token", tmp_path / "zk-password"
    token.write_text(TOKEN)
    token.chmod(token_mode)
    password.write_text(PASSWORD)
    password.chmod(password_mode)
    return {
        "xds": {"listen": f"{host}:0", "debounce_ms": 0, "tls": None},
        "debug": {"listen": f"{host}:0", "token_file": str(token)},
        # The sidecar's key: on the sidecar's filesystem, only named (here: not even there).
        "upstream_tls": {
            "ca_file": "/etc/ca.pem",
            "cert_file": "/etc/c.pem",
            "key_file": "/etc/k.pem",
            "verify_broker_names": False,
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
                "zookeeper": {
                    "hosts": f"{host}:1",
                    "auth": {"username": "kafka-xds", "password_file": str(password)},
                },
            },
        ],
    }


def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_check_config_warns_once_per_readable_secret_naming_key_file_and_mode(
    tmp_path, capsys, addresses: LoopbackAddresses
):
    path = _write(tmp_path, _config(tmp_path, addresses.take(), 0o644, 0o640))
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "readable by" in line]
    assert len(warnings) == 2
    token_line, password_line = sorted(warnings, key=lambda line: "token_file" not in line)
    assert f"debug.token_file: {tmp_path / 'token'}" in token_line and "0644" in token_line
    assert "everyone" in token_line
    assert "kafka_clusters[1].zookeeper.auth.password_file" in password_line and "0640" in password_line
    assert "its group" in password_line and "everyone" not in password_line
    assert TOKEN not in err and PASSWORD not in err
    assert "/etc/k.pem" not in err


def test_check_config_is_quiet_about_secrets_only_their_owner_reads(
    tmp_path, capsys, addresses: LoopbackAddresses
):
    path = _write(tmp_path, _config(tmp_path, addresses.take(), 0o600, 0o400))
    assert main(["check-config", str(path)]) == 0
    assert "readable by" not in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore")
async def test_serve_warns_once_per_readable_secret(tmp_path, caplog, addresses: LoopbackAddresses):
    config = _config(tmp_path, addresses.take(), 0o604, 0o600)
    del config["kafka_clusters"][1]  # no ZooKeeper to wait for
    application = Application(parse_config(config))
    with caplog.at_level(logging.WARNING, logger="kafka_xds.app"):
        await application.start()
    await application.stop()
    warnings = [record for record in caplog.records if "readable by" in record.getMessage()]
    assert len(warnings) == 1
    fields = warnings[0].__dict__["fields"]
    assert (fields["key"], fields["file"], fields["mode"]) == (
        "debug.token_file",
        str(tmp_path / "token"),
        "0604",
    )
    assert TOKEN not in caplog.text
