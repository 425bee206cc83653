"""`kafka-xds broker-ready`: a broker's readiness probe that knows in-sync replicas, and which brokers
a rolling restart may take next (`--restartable`).

It asks the cluster (one Metadata request for every topic, DescribeConfigs of
`min.insync.replicas`: `xds.health.fetch`) and decides with `xds.health.readiness`:

* exit 0 and `ready: ...` when the broker is registered and in the ISR of every partition it hosts
  and the cluster has no more degraded partitions than the thresholds allow (all 0 by default: the
  next broker of a gated roll goes down only once every partition is fully in sync again);
* exit 1 and `not ready: <every reason>` otherwise, `not ready: cluster unreachable (...)` when no
  bootstrap server answered within `--timeout`;
* exit 0 and `OVERRIDDEN by <source> until <time>...` while an override is active
  (`xds.health.override`: the environment variable, or `--override-file`), whatever the check says
  (which the line shows after it);
* exit 2 and a line on stderr for a bad option or config, like every command.

One line on stdout (`--json`: one JSON object on one line). The answer comes within `--timeout`
seconds of the command starting its work, always: the fetch is bounded, and a watchdog thread ends
the process `WATCHDOG_GRACE_SECONDS` later whatever is still running (a DNS lookup or a file read
stuck in a thread), with the answer already given or `not ready: cluster unreachable (no answer
within ...)`. No secret is in any output: the settings hold only the files passwords are read from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from xds.config.fields import PATTERNS, describe_validation_error
from xds.config.model import KafkaCluster, KraftSettings, load_config
from xds.health.override import ENV_VAR, Override, first_active, override_from_env, read_override_file
from xds.health.readiness import (
    Readiness,
    ReadinessThresholds,
    Reason,
    RestartPlan,
    broker_readiness,
    restart_plan,
)

if TYPE_CHECKING:
    from xds.health.fetch import ClusterUnreachable, FetchedState

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "WATCHDOG_GRACE_SECONDS", "add_command", "run"]

DEFAULT_TIMEOUT_SECONDS = 5.0  # below a probe's timeoutSeconds, which must be set above it (see docs)
WATCHDOG_GRACE_SECONDS = 1.0
MAX_TIMEOUT_SECONDS = 300.0
EXIT_READY, EXIT_NOT_READY, EXIT_USAGE = 0, 1, 2
_ORDINAL = re.compile(r"-(\d+)$")

_DESCRIPTION = """\
Say whether broker N may be ready, for an exec readiness probe in its pod: exit 0 when it is
registered, in the ISR of every partition it hosts, and no partition in the cluster is offline,
under or at min ISR, or under-replicated (the thresholds allow none by default, which keeps a gated
rolling restart at or above min.insync.replicas); exit 1 with the reasons otherwise, or when no
bootstrap server answers within --timeout. One line on stdout.

An override makes it exit 0 and say so loudly: the environment variable KAFKA_XDS_READY_OVERRIDE
(1, or a reason), or --override-file (an empty file, or lines "for: 30m", "until: <ISO time>",
"reason: ..."). --restartable prints instead which brokers could be restarted now without taking
any partition below min ISR.

Bootstrap servers and TLS/SASL as a KRaft source takes them: --bootstrap-server and the options
below, or --config FILE --cluster NAME: the cluster's health.connection, else its kraft source's
settings (options given override them). Works with KRaft and ZooKeeper-mode clusters alike."""


class _Usage(Exception):
    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_TIMEOUT_SECONDS:  # also NaN
        raise argparse.ArgumentTypeError(f"expected seconds in (0, {MAX_TIMEOUT_SECONDS:g}], got {text!r}")
    return value


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register `broker-ready` on the CLI's subcommands (argparse's _SubParsersAction)."""
    defaults = ReadinessThresholds()
    parser: argparse.ArgumentParser = commands.add_parser(
        "broker-ready",
        help="readiness probe of a broker that knows in-sync replicas (exit 0 ready, 1 not)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_argument_group("the cluster")
    where.add_argument(
        "--bootstrap-server",
        action="append",
        metavar="HOST:PORT",
        help="a broker to ask, repeatable, asked in order until one answers",
    )
    where.add_argument(
        "--config", type=Path, metavar="FILE", help="a kafka-xds config to take the cluster from"
    )
    where.add_argument(
        "--cluster", metavar="NAME", help="the cluster of --config (needed when it has several); its name"
    )
    where.add_argument(
        "--security-protocol", metavar="PROTOCOL", help="PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    where.add_argument(
        "--ssl-ca-file", metavar="FILE", help="CA to verify the brokers with (default: the system's)"
    )
    where.add_argument(
        "--ssl-cert-file", metavar="FILE", help="client certificate (chain), with --ssl-key-file"
    )
    where.add_argument("--ssl-key-file", metavar="FILE", help="client private key")
    where.add_argument("--ssl-key-password-file", metavar="FILE", help="file holding the key's password")
    where.add_argument(
        "--no-ssl-check-hostname", action="store_true", help="do not check the broker's certificate name"
    )
    where.add_argument("--sasl-mechanism", metavar="NAME", help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    where.add_argument("--sasl-username", metavar="NAME", help="the SASL user")
    where.add_argument("--sasl-password-file", metavar="FILE", help="file holding the SASL password")

    broker = parser.add_argument_group("the broker")
    broker.add_argument("--broker-id", type=_count, metavar="N", help="the broker this probe is for")
    broker.add_argument(
        "--broker-id-from-hostname",
        action="store_true",
        help="take it from the pod's ordinal: the trailing -N of $HOSTNAME (kafka-2 is 2)",
    )
    broker.add_argument(
        "--broker-id-offset",
        type=int,
        default=0,
        metavar="K",
        help="added to the ordinal (brokers numbered from 1: --broker-id-offset 1); default 0",
    )

    limits = parser.add_argument_group(
        "thresholds",
        "How many degraded partitions the cluster may have while the broker says ready.\n"
        "The defaults (none) keep a gated roll at or above min ISR: loosen them only on purpose.\n"
        "With --config, the cluster's health.readiness is the default.",
    )
    for option, default, what in (
        ("--max-offline", defaults.max_offline, "partitions without a leader or any in-sync replica"),
        ("--max-under-min-isr", defaults.max_under_min_isr, "partitions with fewer in sync than min ISR"),
        ("--max-at-min-isr", defaults.max_at_min_isr, "partitions degraded to exactly min ISR"),
        (
            "--max-under-replicated",
            defaults.max_under_replicated,
            "partitions missing a replica, above min ISR",
        ),
        ("--examples", defaults.examples, "partitions named per reason"),
    ):
        limits.add_argument(option, type=_count, metavar="N", help=f"{what} (default {default})")
    parser.add_argument(
        "--override-file",
        type=Path,
        metavar="FILE",
        help=f"while this file exists (and has not expired), exit 0, loudly; also ${ENV_VAR}",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"answer within this long, always (default {DEFAULT_TIMEOUT_SECONDS:g}; set the probe's "
        "timeoutSeconds above it)",
    )
    parser.add_argument(
        "--restartable",
        action="store_true",
        help="print which brokers can be restarted now without taking a partition below min ISR "
        "(exit 0; with a broker id, exit 1 when that broker cannot)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the line")
    parser.set_defaults(run=run, parser=parser)
    return parser


# -- the request ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    cluster: str
    settings: KraftSettings
    broker_id: int | None
    thresholds: ReadinessThresholds
    override_file: Path | None
    timeout: float
    restartable: bool
    json: bool


_OPTIONS = {
    "bootstrap_servers": "--bootstrap-server",
    "security_protocol": "--security-protocol",
    "ssl.ca_file": "--ssl-ca-file",
    "ssl.cert_file": "--ssl-cert-file",
    "ssl.key_file": "--ssl-key-file",
    "ssl.key_password_file": "--ssl-key-password-file",
    "ssl": "--ssl-cert-file/--ssl-key-file",
    "sasl.mechanism": "--sasl-mechanism",
    "sasl.username": "--sasl-username",
    "sasl.password_file": "--sasl-password-file",
    "sasl": "--sasl-mechanism/--sasl-username/--sasl-password-file",
}


def _option(key: str) -> str:
    for name, option in _OPTIONS.items():
        if key == name or key.startswith((f"{name}[", f"{name}.")):
            return option
    return "--security-protocol" if key == "<top>" else key


_OPTION_WORDS = (
    ("'ssl' is set", "--ssl-* options are given"),
    ("'sasl' is set", "--sasl-* options are given"),
    ("needs 'sasl'", "needs --sasl-mechanism, --sasl-username and --sasl-password-file"),
    ("security_protocol ", "--security-protocol "),
)


def _in_options(problem: str) -> str:
    """A KraftSettings problem in the words of the options (the config's keys otherwise)."""
    for key, option in _OPTION_WORDS:
        problem = problem.replace(key, option)
    return problem


def _cluster(args: argparse.Namespace) -> tuple[str, KafkaCluster | None]:
    """The cluster's name, and the cluster of --config when one is given."""
    if args.config is None:
        return args.cluster or "kafka", None
    config = load_config(args.config)  # ConfigError: the CLI says `config error: ...`, exit 2
    names = [cluster.name for cluster in config.kafka_clusters]
    if args.cluster is None and len(names) > 1:
        raise _Usage("--cluster", f"{args.config} has {len(names)} clusters: name one of {', '.join(names)}")
    name = args.cluster or names[0]
    if name not in names:
        raise _Usage("--cluster", f"{args.config} has no cluster {name!r} (it has {', '.join(names)})")
    return name, config.cluster(name)


def _connection(args: argparse.Namespace, cluster: KafkaCluster | None) -> dict[str, Any]:
    """The cluster's connection settings from --config (raw, to be validated with the options):
    its `health.connection`, else its kraft source's; nothing without --config."""
    if cluster is None:
        return {}
    connection = cluster.health_connection
    if connection is None:
        if not args.bootstrap_server:
            raise _Usage(
                "--cluster",
                f"{cluster.name} has a {cluster.source_kind} source and no health.connection: give "
                "--bootstrap-server (and its TLS/SASL options)",
            )
        return {}
    return connection.model_dump(exclude_none=True)


def _settings(args: argparse.Namespace, cluster: KafkaCluster | None) -> KraftSettings:
    raw = _connection(args, cluster)
    if args.bootstrap_server:
        raw["bootstrap_servers"] = list(args.bootstrap_server)
    if not raw.get("bootstrap_servers"):
        raise _Usage("--bootstrap-server", "give at least one (or --config FILE --cluster NAME)")
    if args.security_protocol is not None:
        raw["security_protocol"] = args.security_protocol
    tls = dict(raw.get("ssl") or {})
    for option, key in (
        ("ssl_ca_file", "ca_file"),
        ("ssl_cert_file", "cert_file"),
        ("ssl_key_file", "key_file"),
        ("ssl_key_password_file", "key_password_file"),
    ):
        if getattr(args, option) is not None:
            tls[key] = str(Path(getattr(args, option)).absolute())
    if args.no_ssl_check_hostname:
        tls["check_hostname"] = False
    if tls:
        raw["ssl"] = tls
    sasl = dict(raw.get("sasl") or {})
    for option, key in (("sasl_mechanism", "mechanism"), ("sasl_username", "username")):
        if getattr(args, option) is not None:
            sasl[key] = getattr(args, option)
    if args.sasl_password_file is not None:
        sasl["password_file"] = str(Path(args.sasl_password_file).absolute())
    if sasl:
        raw["sasl"] = sasl
    raw["request_timeout_seconds"] = max(raw.get("request_timeout_seconds", 0), args.timeout)
    try:
        settings = KraftSettings.model_validate(raw)
    except pydantic.ValidationError as err:
        problem = describe_validation_error(err, raw, PATTERNS, KraftSettings)
        raise _Usage(_option(problem.key), _in_options(problem.problem)) from None
    _check_readable(settings)
    return settings


def _check_readable(settings: KraftSettings) -> None:
    """The files the client reads, checked now: a missing one is a usage error naming its option,
    not a puzzling `cluster unreachable`."""
    files = []
    if settings.ssl is not None:
        files += [
            ("ssl.ca_file", settings.ssl.ca_file),
            ("ssl.cert_file", settings.ssl.cert_file),
            ("ssl.key_file", settings.ssl.key_file),
            ("ssl.key_password_file", settings.ssl.key_password_file),
        ]
    if settings.sasl is not None:
        files.append(("sasl.password_file", settings.sasl.password_file))
    for key, path in files:
        if path is not None and not os.access(path, os.R_OK):
            why = "no such file" if not os.path.exists(path) else "not readable"
            raise _Usage(_option(key), f"cannot read {path}: {why}")


def _broker_id(args: argparse.Namespace) -> int | None:
    if args.broker_id is not None and args.broker_id_from_hostname:
        raise _Usage("--broker-id", "give --broker-id or --broker-id-from-hostname, not both")
    if args.broker_id_offset != 0 and not args.broker_id_from_hostname:
        raise _Usage("--broker-id-offset", "only with --broker-id-from-hostname")
    if args.broker_id_from_hostname:
        hostname = os.environ.get("HOSTNAME") or socket.gethostname()
        match = _ORDINAL.search(hostname.split(".")[0])
        if match is None or len(match[1]) > 9:
            raise _Usage(
                "--broker-id-from-hostname", f"hostname {hostname!r} does not end in -N (a pod ordinal)"
            )
        offset: int = args.broker_id_offset
        from_ordinal = int(match[1]) + offset
        if from_ordinal < 0:
            raise _Usage("--broker-id-offset", f"ordinal {match[1]} + {offset} is below 0")
        return from_ordinal
    if args.broker_id is None and not args.restartable:
        raise _Usage("--broker-id", "give --broker-id N or --broker-id-from-hostname (or --restartable)")
    given: int | None = args.broker_id
    return given


def _thresholds(args: argparse.Namespace, cluster: KafkaCluster | None) -> ReadinessThresholds:
    """The options given, over the config's `health.readiness`, over readiness.py's defaults."""
    base = ReadinessThresholds()
    if cluster is not None and cluster.health is not None:
        base = ReadinessThresholds(**cluster.health.readiness.model_dump())
    given = {name: getattr(args, name) for name in _THRESHOLDS if getattr(args, name) is not None}
    return dataclasses.replace(base, **given)


_THRESHOLDS = ("max_offline", "max_under_min_isr", "max_at_min_isr", "max_under_replicated", "examples")


def _request(args: argparse.Namespace) -> _Request:
    broker_id = _broker_id(args)
    name, cluster = _cluster(args)
    settings = _settings(args, cluster)
    return _Request(
        name,
        settings,
        broker_id,
        _thresholds(args, cluster),
        args.override_file,
        args.timeout,
        args.restartable,
        args.json,
    )


# -- the answer -----------------------------------------------------------------------------------


class _Watchdog:
    """Ends the process `seconds` from now whatever is running, with the answer given by then, or
    with `not ready` when none was: a probe that answers late is a probe that hangs."""

    def __init__(self, seconds: float, request: _Request) -> None:
        self._lock = threading.Lock()
        self._code: int | None = None
        self._request = request
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def answer(self, text: str, code: int) -> None:
        with self._lock:
            if self._code is not None:
                return
            _write(text)
            self._code = code

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._code is None:
                detail = f"no answer within {self._request.timeout:g} s"
                line = f"not ready: cluster unreachable ({detail})"
                _write(json.dumps({"ready": False, "summary": line}) if self._request.json else line)
                self._code = EXIT_NOT_READY
            code = self._code
        os._exit(code)


def _write(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass  # nobody reads the answer: the exit code still says it


def _reason(reason: Reason) -> dict[str, Any]:
    return {"kind": str(reason.kind), "count": reason.count, "partitions": [str(p) for p in reason.examples]}


def _override(override: Override | None) -> dict[str, Any] | None:
    if override is None:
        return None
    return {
        "source": override.source,
        "active": override.active,
        "expired": override.expired,
        "until": override.expires_at.isoformat() if override.expires_at else None,
        "reason": override.reason,
        "error": override.error,
        "message": override.message,
    }


def _unreachable_line(err: ClusterUnreachable) -> str:
    return f"cluster unreachable ({err.detail})"


def _fetched(fetched: FetchedState | None, err: ClusterUnreachable | None) -> dict[str, Any]:
    if fetched is None:
        assert err is not None
        return {
            "reachable": False,
            "unreachable": [{"server": server, "problem": problem} for server, problem in err.problems],
            "timed_out": err.timed_out,
        }
    state = fetched.state
    return {
        "reachable": True,
        "answered_by": fetched.server,
        "cluster_id": fetched.cluster_id,
        "controller_id": state.controller_id,
        "brokers": sorted(state.brokers),
        "topics": len(state.topics),
        "partitions": len(state.partitions),
        "warnings": list(fetched.warnings),
        "elapsed_seconds": round(fetched.elapsed_seconds, 3),
    }


def _with_warnings(line: str, fetched: FetchedState | None) -> str:
    if fetched is not None and fetched.warnings:
        return f"{line}; warning: {'; '.join(fetched.warnings)}"
    return line


def _readiness_answer(
    request: _Request,
    fetched: FetchedState | None,
    err: ClusterUnreachable | None,
    overrides: Sequence[Override],
    notes: Sequence[str],
) -> tuple[str, int]:
    assert request.broker_id is not None
    readiness: Readiness | None = None
    if fetched is not None:
        readiness = broker_readiness(fetched.state, request.broker_id, request.thresholds)
        check = _with_warnings(readiness.summary(), fetched)
    else:
        assert err is not None
        check = f"not ready: {_unreachable_line(err)}"
    notes = [*(o.message for o in overrides if o.expired), *notes]
    if notes:
        check = f"{check}; {'; '.join(notes)}"
    active = first_active(*overrides)
    ready = readiness is not None and readiness.ready
    line = f"{active.message}; the check says: {check}" if active is not None else check
    code = EXIT_READY if ready or active is not None else EXIT_NOT_READY
    if not request.json:
        return line, code
    answer: dict[str, Any] = {
        "cluster": request.cluster,
        "broker_id": request.broker_id,
        "ready": code == EXIT_READY,
        "checked_ready": ready,
        "overridden": active is not None,
        "summary": line,
        "override": _override(active),
        "overrides_expired": [_override(o) for o in overrides if o.expired],
        "reasons": [_reason(r) for r in readiness.reasons] if readiness else [],
        "tolerated": [_reason(r) for r in readiness.tolerated] if readiness else [],
        "hosted": readiness.hosted if readiness else None,
        "thresholds": {
            "max_offline": request.thresholds.max_offline,
            "max_under_min_isr": request.thresholds.max_under_min_isr,
            "max_at_min_isr": request.thresholds.max_at_min_isr,
            "max_under_replicated": request.thresholds.max_under_replicated,
        },
        **_fetched(fetched, err),
    }
    return json.dumps(answer), code


def _restart_line(plan: RestartPlan, examples: int) -> str:
    restartable = ", ".join(str(b) for b in plan.restartable) or "none"
    blocked = [restart.summary(examples) for restart in plan.brokers if not restart.restartable]
    return "; ".join([f"restartable now: {restartable}", *blocked])


def _restartable_answer(
    request: _Request, fetched: FetchedState | None, err: ClusterUnreachable | None
) -> tuple[str, int]:
    if fetched is None:
        assert err is not None
        line, code, plan = f"restartable: unknown: {_unreachable_line(err)}", EXIT_NOT_READY, None
    else:
        plan = restart_plan(fetched.state)
        line = _with_warnings(_restart_line(plan, request.thresholds.examples), fetched)
        code = EXIT_READY
        if request.broker_id is not None and not plan.broker(request.broker_id).restartable:
            code = EXIT_NOT_READY
    if not request.json:
        return line, code
    answer: dict[str, Any] = {
        "cluster": request.cluster,
        "broker_id": request.broker_id,
        "broker_restartable": (
            plan.broker(request.broker_id).restartable
            if plan is not None and request.broker_id is not None
            else None
        ),
        "restartable": list(plan.restartable) if plan is not None else None,
        "blocked": [
            {
                "broker_id": restart.broker_id,
                "blockers": [
                    {
                        "partition": str(b.partition),
                        "kind": str(b.kind),
                        "in_sync": b.in_sync,
                        "min_isr": b.min_isr,
                    }
                    for b in restart.blockers
                ],
            }
            for restart in (plan.brokers if plan is not None else ())
            if not restart.restartable
        ],
        "summary": line,
        **_fetched(fetched, err),
    }
    return json.dumps(answer), code


async def _answer(request: _Request, watchdog: _Watchdog) -> int:
    import asyncio

    from xds.health.fetch import ClusterUnreachable, fetch_cluster_state

    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.timeout
    now = datetime.now(UTC)
    reading = None
    if request.override_file is not None and not request.restartable:
        reading = asyncio.ensure_future(asyncio.to_thread(read_override_file, request.override_file, now))
    overrides = [override_from_env(os.environ.get(ENV_VAR))]
    notes: list[str] = []
    fetched, unreachable = None, None
    try:
        fetched = await fetch_cluster_state(
            request.cluster, request.settings, max(0.0, deadline - loop.time())
        )
    except ClusterUnreachable as err:
        unreachable = err
    if reading is not None:
        try:
            overrides.append(
                await asyncio.wait_for(asyncio.shield(reading), max(0.05, deadline - loop.time()))
            )
        except TimeoutError:
            notes.append(f"override file {request.override_file} not read within the time, ignored")
    if request.restartable:
        text, code = _restartable_answer(request, fetched, unreachable)
    else:
        text, code = _readiness_answer(request, fetched, unreachable, overrides, notes)
    watchdog.answer(text, code)
    return code


def run(args: argparse.Namespace) -> int:
    """The command: parse, ask, answer (see the module)."""
    started = time.monotonic()
    try:
        request = _request(args)
    except _Usage as err:
        print(f"kafka-xds broker-ready: {err}", file=sys.stderr)
        return EXIT_USAGE
    import asyncio

    from xds.shared.log import configure

    configure("error")  # aiokafka's and asyncio's lines, redacted, only for errors (stderr)
    remaining = max(0.1, request.timeout - (time.monotonic() - started))
    request = dataclasses.replace(request, timeout=remaining)
    watchdog = _Watchdog(remaining + WATCHDOG_GRACE_SECONDS, request)
    try:
        return asyncio.run(_answer(request, watchdog))
    finally:
        watchdog.cancel()
