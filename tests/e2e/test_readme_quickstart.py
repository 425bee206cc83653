"""The README's quickstart, run as written: a newcomer's first commands must work unattended.

Only what must differ for a test run is changed: the ports and addresses (this run's own, so the
quickstart's fixed ones may be in use here) and the folder (the test's own)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.addresses import LoopbackAddresses
from tests.support.wait import free_port

REPO = Path(__file__).resolve().parents[2]
COPY_LINE = (
    "mkdir -p /tmp/kafka-xds-quickstart && cp config/quickstart.yaml config/quickstart-brokers.yaml "
    "/tmp/kafka-xds-quickstart/"
)


def quickstart_block() -> str:
    text = (REPO / "README.md").read_text()
    found = re.search(r"<!-- quickstart -->\n```sh\n(.*?)\n```", text, re.DOTALL)
    assert found, "README.md lost its <!-- quickstart --> block"
    return found.group(1)


def test_the_readme_quickstart_runs_as_written_and_bytes_go_through_the_sidecar(
    tmp_path: Path, addresses: LoopbackAddresses
) -> None:
    host, loopback = addresses.take(), addresses.take()
    folder = tmp_path / "quickstart"
    ports = {19000: free_port(), 18000: free_port(), 9092: free_port(), 9901: free_port()}
    port_base = free_port()  # broker 1's listener is port_base + 1: take a free pair's first

    def localise(text: str) -> str:
        text = text.replace("/tmp/kafka-xds-quickstart", str(folder))
        text = text.replace("127.0.0.10:9091", f"{loopback}:{port_base + 1}")
        text = text.replace("127.0.0.10", loopback).replace("port_base: 9090", f"port_base: {port_base}")
        for old, new in ports.items():
            text = re.sub(rf"\b{old}\b", str(new), text)
        return text.replace("127.0.0.1", host)

    script = quickstart_block()
    assert COPY_LINE in script, "the quickstart copies the configs; the test mirrors that line"
    folder.mkdir()
    for name in ("quickstart.yaml", "quickstart-brokers.yaml"):
        (folder / name).write_text(localise((REPO / "config" / name).read_text()))
    script = localise(script.replace(COPY_LINE, ""))
    done = subprocess.run(
        ["timeout", "90", "bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    logs = {
        name: (folder / name).read_text()
        for name in ("kafka-xds.log", "envoy.log")
        if (folder / name).exists()
    }
    out = done.stdout
    assert "kafka-xds ready" in out, (out, done.stderr, logs)
    assert "sidecar ready" in out, (out, done.stderr, logs)
    assert "Directory listing" in out or "<!DOCTYPE" in out, (out, logs)  # the stand-in broker answered
    counted = re.search(r"cluster\.kafka-a\.broker-1\.upstream_cx_total: (\d+)", out)
    assert counted and int(counted.group(1)) >= 1, out  # and the bytes went through Envoy's cluster
