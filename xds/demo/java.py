"""Kafka's Java processes for xds/demo/kafka.py: a class of the release's jars run with a small heap,
its log4j settings beside its log, and `kafka-storage format` before a KRaft node's first start."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

_HEAP = "-Xms64m -Xmx256m"
_JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k", "-Djava.awt.headless=true"]


def write_properties(path: Path, properties: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path


async def format_storage(
    libs: Path, config: Path, cluster_id: str, log: Path, standalone: bool = False, extra: Sequence[str] = ()
) -> None:
    """`kafka-storage.sh format` (its class, kafka.tools.StorageTool), once before a first start."""
    arguments = ["format", "-t", cluster_id, "-c", str(config), "--ignore-formatted", *extra]
    process = await java(
        libs, "kafka.tools.StorageTool", [*arguments, *(["--standalone"] if standalone else [])], log
    )
    if await process.wait() != 0:
        raise RuntimeError(f"formatting {config.parent} failed: {tail(log)}")


async def java(
    libs: Path, main_class: str, arguments: list[str], log: Path, *, append: bool = False
) -> asyncio.subprocess.Process:
    log.parent.mkdir(parents=True, exist_ok=True)
    log4j = log.parent / "log4j"
    log4j.mkdir(exist_ok=True)
    (log4j / "log4j.properties").write_text(_LOG4J)
    (log4j / "log4j2.yaml").write_text(_LOG4J2)
    command = [
        "java",
        *_HEAP.split(),
        *_JVM_FLAGS,
        f"-Dlog4j.configuration=file:{log4j / 'log4j.properties'}",
        f"-Dlog4j2.configurationFile={log4j / 'log4j2.yaml'}",
        "-cp",
        f"{libs}/*",
        main_class,
        *arguments,
    ]
    with log.open("ab" if append else "wb") as output:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal is for the demo, which stops brokers in order
        )


# The brokers' own logs, into their log file: INFO of what a reader of a failed test needs.
_LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.logger.kafka.controller=INFO
"""
_LOG4J2 = """Configuration:
  Appenders:
    Console: {name: STDOUT, PatternLayout: {pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {level: WARN, AppenderRef: [{ref: STDOUT}]}
    Logger:
      - {name: kafka.server.BrokerServer, level: INFO}
      - {name: kafka.server.ControllerServer, level: INFO}
"""


def tail(path: Path, lines: int = 15) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"
