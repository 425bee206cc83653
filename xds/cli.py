"""`kafka-xds` (and `python -m xds`): serve, check-config, bootstrap.

Configuration problems end the process with exit code 2 and one line naming the key; no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from xds import __version__
from xds.config import Config, ConfigError, KafkaCluster, load_config, load_static_brokers
from xds.log import configure
from xds.plan import ClusterPlan, format_plan_table, plan_rows

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except ConfigError as err:
        print(f"kafka-xds: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kafka-xds", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kafka-xds {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the control plane")
    serve.add_argument("--config", required=True, type=Path)
    serve.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="logfmt", choices=["logfmt", "json"])
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a config and print the address plan")
    check.add_argument("config", type=Path)
    check.add_argument("--plan", action="store_true", help="print only the plan table (tab-separated)")
    check.add_argument("--json", action="store_true", help="print the plan as JSON")
    check.set_defaults(run=_check_config)

    boot = commands.add_parser("bootstrap", help="print an Envoy bootstrap (YAML) for a sidecar")
    boot.add_argument("--node-id", required=True)
    boot.add_argument("--xds", action="append", metavar="HOST:PORT", help="a kafka-xds replica (repeatable)")
    boot.add_argument("--node-cluster", default="kafka-clients")
    boot.add_argument("--admin", default="127.0.0.1:9901", metavar="HOST:PORT")
    boot.set_defaults(run=_bootstrap)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from xds.app import serve

    config = load_config(args.config)
    _check_static_files(config)
    configure(args.log_level, args.log_format)
    asyncio.run(serve(config))
    return 0


def _check_static_files(config: Config) -> None:
    for index, cluster in enumerate(config.kafka_clusters):
        if cluster.static is not None and cluster.static.file is not None:
            try:
                load_static_brokers(Path(cluster.static.file), cluster)
            except ConfigError as err:
                raise ConfigError(f"kafka_clusters[{index}].static.file", str(err)) from None


def _static_plans(config: Config) -> list[ClusterPlan]:
    """The plan of every static cluster, computed the way the server does (DNS names not resolved)."""
    from xds.grace import GraceState
    from xds.plan import plan_cluster
    from xds.sources.static import brokers_from_static

    plans = []
    for cluster in config.kafka_clusters:
        if cluster.static is None:
            continue
        entries = cluster.static.brokers
        if entries is None:
            assert cluster.static.file is not None
            entries = load_static_brokers(Path(cluster.static.file), cluster)
        topology = brokers_from_static(cluster, entries)
        plans.append(plan_cluster(cluster, topology, GraceState(cluster.removal_grace_seconds)))
    return plans


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _check_static_files(config)
    plans = {plan.cluster: plan for plan in _static_plans(config)}
    if args.json:
        clusters = [
            {
                "cluster": cluster.name,
                "source": cluster.source_kind,
                "loopback_ip": str(cluster.loopback_ip),
                "port_rule": _port_rule(cluster),
                "brokers": plan_rows([plans[cluster.name]]) if cluster.name in plans else [],
            }
            for cluster in config.kafka_clusters
        ]
        print(json.dumps({"clusters": clusters}, indent=2))
        return 0
    if not args.plan:
        print(f"{args.config}: OK, {len(config.kafka_clusters)} Kafka cluster(s)")
        for cluster in config.kafka_clusters:
            tls = "mTLS" if config.tls_for(cluster) else "PLAIN TCP"
            source = f"{cluster.source_kind} source"
            print(f"  {cluster.name}: {source}, {cluster.loopback_ip}, {_port_rule(cluster)}, {tls}")
            for skipped in plans[cluster.name].skipped if cluster.name in plans else ():
                print(f"    skipped {skipped.where}: {skipped.reason}")
        print()
    sys.stdout.write(format_plan_table(plan_rows(plans.values())))
    return 0


def _port_rule(cluster: KafkaCluster) -> str:
    rule = f"broker N -> port {cluster.port_base}+N for N in 0..{cluster.highest_broker_id}"
    if cluster.broker_ports:
        overrides = ", ".join(f"{broker}->{port}" for broker, port in sorted(cluster.broker_ports.items()))
        rule += f" (overrides: {overrides})"
    return rule


def _bootstrap(args: argparse.Namespace) -> int:
    from xds.bootstrap import bootstrap_yaml, build_bootstrap

    try:
        bootstrap = build_bootstrap(
            args.node_id, args.xds or ["127.0.0.1:18000"], args.node_cluster, args.admin
        )
    except ValueError as err:
        raise ConfigError("--xds/--admin", str(err)) from None
    sys.stdout.write(bootstrap_yaml(bootstrap))
    return 0
