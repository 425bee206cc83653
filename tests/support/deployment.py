"""What the deployment-file tests share: the repository's paths, and reading options, bootstrap
output and README sections the way a reader of those files would."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from xds.cli import main as kafka_xds
from xds.shared.addresses import parse_listen

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "config" / "kubernetes"


def parse_properties(text: str) -> dict[str, str]:
    lines = (line.strip() for line in text.splitlines())
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def option_values(args: Sequence[str], name: str) -> list[str]:
    return [args[index + 1] for index, arg in enumerate(args[:-1]) if arg == name]


def option(args: Sequence[str], name: str) -> str:
    (value,) = option_values(args, name)
    return value


def xds_tls_options(args: Sequence[str]) -> dict[str, str]:
    return {name: option(args, name) for name in ("--xds-ca", "--xds-cert", "--xds-key")}


def server_name(args: Sequence[str]) -> str:
    """The name the sidecar checks kafka-xds's certificate for: given, or the host of --xds."""
    given = option_values(args, "--xds-server-name")
    return given[0] if given else parse_listen(option_values(args, "--xds")[0])[0]


def run_bootstrap(args: Sequence[str], output: Path) -> dict[str, Any]:
    """Run `kafka-xds bootstrap` with these arguments, writing to `output`; its SDS files by name."""
    args = list(args)
    args[args.index("--output") + 1] = str(output)
    assert kafka_xds(args) == 0
    return {
        path.name: yaml.safe_load(path.read_text())["resources"][0]
        for path in output.parent.glob(f"{output.stem}.*.yaml")
    }


def watched_directories(secrets: dict[str, Any]) -> set[str]:
    return {
        (resource.get("tls_certificate") or resource["validation_context"])["watched_directory"]["path"]
        for resource in secrets.values()
    }


def readme_section(title: str) -> str:
    sections = (REPO / "README.md").read_text().split("\n## ")
    (section,) = [text for text in sections if text.startswith(title)]
    return section


def readme_commands(program: str) -> list[list[str]]:
    """Every `program` command of the README's shell examples (continuation lines joined)."""
    blocks = (REPO / "README.md").read_text().split("```sh\n")[1:]
    lines = [line for block in blocks for line in block.split("```")[0].replace("\\\n", " ").splitlines()]
    return [
        shlex.split(line, comments=True)
        for line in lines
        if line.strip().removeprefix(".venv/bin/").startswith(program)
    ]


# --- docker-compose ---
