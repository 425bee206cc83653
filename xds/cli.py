"""`kafka-xds` (and `python -m xds`): serve, check-config, bootstrap, broker-ready, placement.

Configuration and argument problems end the process with exit code 2 and one line naming the key or
the option; no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from xds import __version__
from xds.config.model import Config, ConfigError, KafkaCluster, StaticBroker, load_config, load_static_brokers
from xds.health.placement_command import add_command as add_placement_command
from xds.health.probe import add_command as add_broker_ready_command
from xds.pipeline.plan import ClusterPlan, format_plan_table, plan_rows, rows_for_ids
from xds.shared.log import configure

if TYPE_CHECKING:
    from xds.bootstrap import XdsClientTls

_DESCRIPTION = """\
kafka-xds is an Envoy control plane for Kafka: every application reaches every Kafka broker through
its own local Envoy sidecar, on a stable loopback address per broker, while kafka-xds follows where
each broker runs (a static file, ZooKeeper, or KRaft's Metadata) and pushes it to every sidecar.

Configuration and argument problems exit with code 2 and one line naming the key or the option."""

EXIT_CONFIG = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command cut off by its reader
_MAX_IDS = 10_000  # --ids 0-4294967295 would print forever


class _UsageError(Exception):
    """A command-line argument problem: `kafka-xds COMMAND: --option: problem`."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Reported against the command it was given to, with that command's usage (argparse would
        # print the top-level usage).
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result: int = args.run(args)
    except ConfigError as err:
        print(f"kafka-xds: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except _UsageError as err:
        print(f"kafka-xds {args.command}: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        # The reader went away (`kafka-xds check-config --plan | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kafka-xds", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"kafka-xds {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")

    serve = commands.add_parser(
        "serve", help="run the control plane", description="Run the control plane until SIGTERM."
    )
    serve.add_argument("config", nargs="?", type=Path, metavar="FILE", help="the config file (or --config)")
    serve.add_argument("--config", dest="config_option", type=Path, metavar="FILE", help="the config file")
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="the lowest level logged (default: warning)",
    )
    serve.add_argument(
        "--log-format", default="logfmt", choices=["logfmt", "json"], help="log line format (default: logfmt)"
    )
    serve.set_defaults(run=_serve, parser=serve)

    check = commands.add_parser(
        "check-config",
        help="validate a config and print the address plan",
        description="Validate a config (and the files it names) as serve would, and print the address "
        "plan: which loopback address each broker gets. Static clusters list their brokers; ZooKeeper "
        "and KRaft brokers are known only at run time, so pass --ids to print theirs.",
    )
    check.add_argument("config", nargs="?", type=Path, metavar="FILE", help="the config file (or --config)")
    check.add_argument(
        "--config", dest="config_option", type=Path, metavar="FILE", help="the config file, as for serve"
    )
    check.add_argument("--plan", action="store_true", help="print only the plan table (tab-separated)")
    check.add_argument("--json", action="store_true", help="print the clusters and their plan as JSON")
    check.add_argument(
        "--ids",
        metavar="IDS",
        help="print the plan of these broker ids in every cluster, registered or not: ids and ranges "
        "such as 1-6 or 0-2,5 (status 'planned' for a broker not known here)",
    )
    check.set_defaults(run=_check_config, parser=check)

    boot = commands.add_parser(
        "bootstrap",
        help="print an Envoy bootstrap (YAML) for a sidecar",
        description="Print the Envoy bootstrap of a sidecar: ADS against the kafka-xds replicas.",
    )
    boot.add_argument("--node-id", required=True, help="this sidecar's node id, unique (e.g. the pod name)")
    boot.add_argument(
        "--xds",
        action="append",
        metavar="HOST:PORT",
        help="a kafka-xds replica, repeatable (default: 127.0.0.1:18000)",
    )
    boot.add_argument(
        "--node-cluster",
        default="kafka-clients",
        help="Envoy's node.cluster: a label in Envoy's stats and in kafka-xds's debug views only; it "
        "does not choose which Kafka clusters the sidecar gets (default: kafka-clients)",
    )
    boot.add_argument(
        "--admin",
        default="127.0.0.1:9901",
        metavar="HOST:PORT",
        help="Envoy's admin address (default: 127.0.0.1:9901; a second sidecar on one machine needs "
        "another, and Envoy's own --base-id)",
    )
    boot.add_argument(
        "--api",
        choices=["delta", "sotw"],
        default="delta",
        help="incremental (delta, the default) or state-of-the-world (sotw) ADS",
    )
    tls = boot.add_argument_group(
        "mTLS to kafka-xds",
        "Paths on the sidecar's filesystem (a Secret volume): kafka-xds names them and never reads "
        "them. They are written into two SDS files beside --output, which Envoy re-reads when the "
        "files' directory changes (a renewed certificate is used for the next connection).",
    )
    tls.add_argument("--xds-ca", metavar="FILE", help="the CA that issued kafka-xds's certificate")
    tls.add_argument("--xds-cert", metavar="FILE", help="this sidecar's client certificate (chain)")
    tls.add_argument("--xds-key", metavar="FILE", help="this sidecar's private key")
    tls.add_argument(
        "--xds-server-name",
        metavar="NAME",
        help="the name kafka-xds's certificate holds, sent as SNI and verified (default: the host of --xds)",
    )
    boot.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="write the bootstrap here (and, with TLS, its SDS files beside it) instead of to stdout",
    )
    boot.set_defaults(run=_bootstrap, parser=boot)
    add_broker_ready_command(commands)  # xds/health/probe.py
    add_placement_command(commands)  # xds/health/placement_command/
    return parser


def _serve(args: argparse.Namespace) -> int:
    from xds.process.spawn import prespawn, raise_file_limit

    config = load_config(_config_path(args))
    _read_local_files(config)
    configure(args.log_level, args.log_format)
    raise_file_limit()  # before the workers start: they inherit it
    workers = config.xds.worker_count
    prespawned = prespawn(workers) if workers > 1 else []  # their start overlaps the imports below
    from xds.app import serve
    from xds.shared.errors import StartupError

    try:
        asyncio.run(serve(config, prespawned=prespawned))
    except StartupError as err:
        print(f"kafka-xds: cannot start: {err}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        for spawned in prespawned:
            spawned.close()  # any the fleet did not take (it takes and stops the others)
    return 0


def _read_local_files(config: Config) -> dict[str, list[StaticBroker]]:
    """What serve reads at start besides the config, read the same way: the static broker files
    (returned by cluster name), the xDS server's certificate files and the debug token (neither
    shown)."""
    entries: dict[str, list[StaticBroker]] = {}
    for index, cluster in enumerate(config.kafka_clusters):
        if cluster.static is not None and cluster.static.file is not None:
            try:
                entries[cluster.name] = load_static_brokers(Path(cluster.static.file), cluster)
            except ConfigError as err:
                raise ConfigError(f"kafka_clusters[{index}].static.file", str(err)) from None
        elif cluster.static is not None and cluster.static.brokers is not None:
            entries[cluster.name] = cluster.static.brokers
    if config.xds.tls is not None:
        from xds.serving.tls import ServerCertificates

        ServerCertificates(config.xds.tls)
    if config.debug.token_file is not None:
        from xds.debug.token import read_token

        read_token(config.debug.token_file)
    return entries


def _static_plans(config: Config, entries: dict[str, list[StaticBroker]]) -> dict[str, ClusterPlan]:
    """The plan of every static cluster, computed the way the server does (DNS names not resolved)."""
    from xds.pipeline.grace import GraceState
    from xds.pipeline.plan import plan_cluster
    from xds.pipeline.sources.static import brokers_from_static

    plans = {}
    for cluster in config.kafka_clusters:
        if cluster.name in entries:
            topology = brokers_from_static(cluster, entries[cluster.name])
            grace = GraceState(cluster.removal_grace_seconds)
            plans[cluster.name] = plan_cluster(cluster, topology, grace)
    return plans


def _check_config(args: argparse.Namespace) -> int:
    path = _config_path(args)
    ids = _parse_ids(args.ids) if args.ids is not None else None
    config = load_config(path)
    plans = _static_plans(config, _read_local_files(config))
    from xds.config.secret_files import readable_secrets

    for secret in readable_secrets(config):
        print(f"kafka-xds check-config: warning: {secret.describe()}", file=sys.stderr)
    rows = {cluster.name: _rows(cluster, plans.get(cluster.name), ids) for cluster in config.kafka_clusters}
    unlisted = [cluster.name for cluster in config.kafka_clusters if cluster.name not in plans]
    if ids is None and unlisted and (args.json or args.plan):
        print(
            f"kafka-xds check-config: {', '.join(unlisted)}: brokers are known only at run time; "
            "pass --ids (e.g. --ids 1-6) to print their addresses",
            file=sys.stderr,
        )
    if args.json:
        clusters = [
            {
                "cluster": cluster.name,
                "source": cluster.source_kind,
                "loopback_ip": str(cluster.loopback_ip),
                "port_rule": _port_rule(cluster),
                "brokers": rows[cluster.name],
                "mismatches": _mismatches(plans.get(cluster.name)),
            }
            for cluster in config.kafka_clusters
        ]
        print(json.dumps({"clusters": clusters}, indent=2))
        return 0
    if not args.plan:
        print(f"{path}: OK, {len(config.kafka_clusters)} Kafka cluster(s)")
        print(f"  xDS on {config.xds.listen}: {_xds_security(config)}")
        for cluster in config.kafka_clusters:
            upstream_tls = config.tls_for(cluster)
            tls = "PLAIN TCP" if upstream_tls is None else "mTLS"
            if upstream_tls is not None and not upstream_tls.verify_broker_names:
                tls += " (broker certificate names NOT verified)"
            source = f"{cluster.source_kind} source"
            print(f"  {cluster.name}: {source}, {cluster.loopback_ip}, {_port_rule(cluster)}, {tls}")
            plan = plans.get(cluster.name)
            for skipped in plan.skipped if plan is not None else ():
                print(f"    skipped {skipped.where}: {skipped.reason}")
            for mismatch in plan.mismatches if plan is not None else ():
                print(f"    plan mismatch: {mismatch.describe()}")
            if ids is None and cluster.name in unlisted:
                print("    brokers known only at run time: pass --ids (e.g. --ids 1-6) for their addresses")
        print()
    sys.stdout.write(format_plan_table(row for name in rows for row in rows[name]))
    return 0


def _xds_security(config: Config) -> str:
    tls = config.xds.tls
    if tls is None:
        return "PLAINTEXT (xds.tls: null)"
    if tls.client_ca_file is None:
        return "TLS, no client certificate required"
    if config.access is None:
        return "mTLS, every sidecar sees every Kafka cluster (no access section)"
    return f"mTLS, access policy of {len(config.access)} rule(s)"


def _mismatches(plan: ClusterPlan | None) -> list[dict[str, str | int | None]]:
    return [
        {
            "broker_id": mismatch.broker_id,
            "listener": mismatch.listener,
            "advertised": str(mismatch.advertised) if mismatch.advertised else None,
            "planned": str(mismatch.planned),
        }
        for mismatch in (plan.mismatches if plan is not None else ())
    ]


def _rows(
    cluster: KafkaCluster, plan: ClusterPlan | None, ids: Sequence[int] | None
) -> list[dict[str, str | int]]:
    if ids is None:
        return plan_rows([plan]) if plan is not None else []
    try:
        return rows_for_ids(cluster, ids, plan)
    except ValueError as err:
        raise _UsageError("--ids", str(err)) from None


def _config_path(args: argparse.Namespace) -> Path:
    given: list[Path] = [path for path in (args.config, args.config_option) if path is not None]
    if not given:
        raise _UsageError("--config", f"give the config file (kafka-xds {args.command} FILE)")
    if len(given) == 2 and given[0] != given[1]:
        raise _UsageError("--config", f"give one config file, got {given[0]} and {given[1]}")
    return given[0]


def _parse_ids(text: str) -> list[int]:
    """`1-6`, `0-2,5`: sorted, without repeats."""
    ids: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise _UsageError("--ids", f"expected ids and ranges such as 1-6 or 0-2,5, got {text!r}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise _UsageError("--ids", f"expected a range from low to high, got {part.strip()!r}")
        if last - first + 1 + len(ids) > _MAX_IDS:
            raise _UsageError("--ids", f"expected at most {_MAX_IDS} ids, got {text!r}")
        ids.update(range(first, last + 1))
    return sorted(ids)


def _port_rule(cluster: KafkaCluster) -> str:
    rule = f"broker N -> port {cluster.port_base}+N for N in 0..{cluster.highest_broker_id}"
    if cluster.broker_ports:
        overrides = ", ".join(f"{broker}->{port}" for broker, port in sorted(cluster.broker_ports.items()))
        rule += f" (overrides: {overrides})"
    return rule


def _bootstrap(args: argparse.Namespace) -> int:
    from xds.bootstrap import BootstrapError, bootstrap_files

    tls = _xds_client_tls(args)
    if tls is not None and args.output is None:
        raise _UsageError(
            "--output", "required with --xds-ca/--xds-cert/--xds-key: the SDS files go beside it"
        )
    output = args.output if args.output is not None else Path("envoy.yaml")
    try:
        files = bootstrap_files(
            output,
            args.node_id,
            args.xds or ["127.0.0.1:18000"],
            args.node_cluster,
            args.admin,
            args.api,
            tls,
        )
    except BootstrapError as err:
        raise _UsageError(err.option, err.problem) from None
    if args.output is None:
        sys.stdout.write(files.text)
        return 0
    try:
        files.write()
    except OSError as err:
        # The error names the file asked for, not the temporary file it is written through.
        raise _UsageError("--output", f"cannot write {args.output}: {err.strerror or err}") from None
    return 0


def _xds_client_tls(args: argparse.Namespace) -> XdsClientTls | None:
    """--xds-ca, --xds-cert and --xds-key together, or none of them."""
    from xds.bootstrap import XdsClientTls

    given = {"--xds-ca": args.xds_ca, "--xds-cert": args.xds_cert, "--xds-key": args.xds_key}
    missing = [option for option, value in given.items() if value is None]
    if len(missing) == len(given):
        if args.xds_server_name is not None:
            raise _UsageError("--xds-server-name", "only with --xds-ca, --xds-cert and --xds-key")
        return None
    if missing:
        raise _UsageError(missing[0], "give --xds-ca, --xds-cert and --xds-key together")
    return XdsClientTls(args.xds_ca, args.xds_cert, args.xds_key, args.xds_server_name)
