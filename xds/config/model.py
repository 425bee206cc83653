"""The configuration file: pydantic models at the boundary, and every check that spans keys.

`load_config` either returns a `Config` that the rest of the program can trust, or raises
`ConfigError` naming one key and one problem (the CLI prints it as one line and exits 2). Types are
strict: YAML's `true` is not a port, `"9090"` is not a number (floats do accept integers).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, Field, field_validator, model_validator

from xds.config.fields import (
    NAME_PATTERN,
    PATTERNS,
    ListenAddress,
    Model,
    Port,
    describe_validation_error,
    read_file,
    read_yaml,
)
from xds.config.fields import ConfigError as ConfigError
from xds.config.health import HealthSettings
from xds.config.sources import (
    KraftSasl,
    KraftSettings,
    KraftSsl,
    StaticBroker,
    StaticBrokerFile,
    StaticSettings,
    ZookeeperDigestAuth,
    ZookeeperSettings,
    ZookeeperTls,
)
from xds.shared.addresses import parse_listen

_M = TypeVar("_M", bound=BaseModel)
__all__ = [
    "MAX_STATIC_FILE_BYTES",
    "BrokerNames",
    "Config",
    "ConfigError",
    "DebugSettings",
    "KafkaCluster",
    "KraftSettings",
    "SidecarSettings",
    "StaticBroker",
    "SubjectAltName",
    "UpstreamTls",
    "XdsSettings",
    "XdsTls",
    "ZookeeperSettings",
    "load_config",
    "load_static_brokers",
    "parse_config",
    "parse_static_brokers",
]

KAFKA_MAX_IDLE_SECONDS = 600  # Kafka's connections.max.idle.ms default: never cut a connection sooner
# A static broker file is about 100 bytes a broker: 1 MiB is thousands of brokers, and a bound on
# what one bad `file:` (a log file, a disk image) can cost.
MAX_STATIC_FILE_BYTES = 1024 * 1024


def available_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity (a container's cpuset), capped by its CPU
    quota (a Kubernetes CPU limit is a quota, not a cpuset), rounded up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def _cpu_quota(root: Path) -> float | None:
    """The CPU quota in cores from cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`); None: none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # "max 100000" or "150000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


class XdsTls(Model):
    """TLS on the ADS server: its certificate and key and, to require client certificates, the CA
    that issues them. Read by kafka-xds (every worker itself) and re-read when the files change."""

    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    client_ca_file: str | None = Field(default=None, min_length=1)


class XdsSettings(Model):
    listen: ListenAddress = "127.0.0.1:18000"
    # Required in the file (see _check_xds_tls): the certificate files, or null for plaintext.
    tls: XdsTls | None = None
    # Serving processes sharing the ADS port (SO_REUSEPORT); None: one per available core. With 1,
    # streams are served in the main process.
    workers: int | None = Field(default=None, ge=1, le=256)
    keepalive_time_seconds: float = Field(default=30.0, gt=0)
    keepalive_timeout_seconds: float = Field(default=10.0, gt=0)
    # For the whole replica; each worker takes an equal share, since each is its own event loop.
    max_concurrent_streams: int = Field(default=20_000, ge=1)
    # A worker whose event loop runs this late refuses new streams (RESOURCE_EXHAUSTED) until it
    # catches up, rather than let them queue unserved until gRPC cancels them.
    overload_lag_seconds: float = Field(default=2.0, gt=0, le=60)
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    # Per stream and resource type: names a sidecar subscribes to (or declares it holds); a request
    # beyond it ends its stream (RESOURCE_EXHAUSTED). Envoy asks for one per broker it may reach.
    max_resource_names: int = Field(default=10_000, ge=1, le=1_000_000)
    # Streams of one verified client-certificate identity, per replica (each worker takes the share
    # of it that it takes of max_concurrent_streams); None: no limit. Off by default: every replica of
    # a workload usually shares one identity (its service account).
    max_streams_per_identity: int | None = Field(default=None, ge=1)
    debounce_ms: int = Field(default=100, ge=0, le=60_000)
    shutdown_grace_seconds: float = Field(default=3.0, ge=0, le=30)

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers is not None else available_cores()


class DebugSettings(Model):
    listen: ListenAddress = "127.0.0.1:19000"  # loopback by default: it shows the whole topology
    token_file: str | None = None  # a bearer token for all but /healthz, /readyz and a broker's /ready
    # Held-open connections cannot starve the process (see xds/debug/connections.py): at most
    # this many at once (and at most an eighth of the process's file descriptor limit), ...
    max_connections: int = Field(default=64, ge=1, le=10_000)
    # ... each closed unless it sent a complete request this soon after it opened, ...
    header_timeout_seconds: float = Field(default=5.0, gt=0)
    # ... or when it is idle this long between requests.
    idle_timeout_seconds: float = Field(default=30.0, gt=0)


class AccessRule(Model):
    """Sidecars whose certificate identity matches `identity` (exact, or `*` for any run of
    characters) may see these Kafka clusters; a sidecar gets the union over every rule it matches."""

    identity: str = Field(min_length=1)
    kafka_clusters: list[str]


class DnsSettings(Model):
    """Brokers registered by DNS name are resolved here (EDS needs IPs) and re-resolved periodically."""

    refresh_seconds: float = Field(default=30.0, gt=0)
    timeout_seconds: float = Field(default=5.0, gt=0)


class SidecarSettings(Model):
    """Connection behaviour every sidecar applies to broker connections."""

    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    idle_timeout_seconds: float = Field(default=3600.0, ge=KAFKA_MAX_IDLE_SECONDS)
    keepalive_time_seconds: int = Field(default=60, ge=1)
    keepalive_interval_seconds: int = Field(default=10, ge=1)
    keepalive_probes: int = Field(default=3, ge=1)


BROKER_NAME_PLACEHOLDERS = ("broker_id", "cluster")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class SubjectAltName:
    """One name a broker's certificate must carry: a DNS or URI subject alternative name."""

    kind: Literal["dns", "uri"]
    value: str


def _check_template(template: str) -> str:
    """A name template holds only known placeholders and no other braces, so that `str.format`
    with every placeholder given renders it and nothing in it is read as a format directive."""
    if not template:
        raise ValueError("expected a non-empty name template")
    for placeholder in _PLACEHOLDER.findall(template):
        if placeholder not in BROKER_NAME_PLACEHOLDERS:
            known = " or ".join(f"{{{name}}}" for name in BROKER_NAME_PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{placeholder}}} in {template!r}: expected {known}")
    outside = _PLACEHOLDER.sub("", template)
    if "{" in outside or "}" in outside:
        raise ValueError(f"unmatched brace in {template!r}: placeholders are {{broker_id}} and {{cluster}}")
    return template


def _templates(value: object) -> object:
    """YAML gives lists; the model keeps tuples, so an UpstreamTls stays hashable (a memo key)."""
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple):
        raise ValueError(f"expected a list of name templates, got {value!r}")
    for template in value:
        if isinstance(template, str):  # anything else is refused as not a string by the model
            _check_template(template)
    return value


class BrokerNames(Model):
    """The names a broker's certificate must carry, as templates rendered per broker with
    {broker_id} and {cluster}. A certificate passes when it carries any one of them (Envoy's
    `match_typed_subject_alt_names`), on top of chaining to the trusted CA."""

    dns: tuple[str, ...] = ()
    uri: tuple[str, ...] = ()

    _dns_templates = field_validator("dns", mode="before")(_templates)
    _uri_templates = field_validator("uri", mode="before")(_templates)

    @model_validator(mode="after")
    def _some_name(self) -> BrokerNames:
        if not self.dns and not self.uri:
            raise ValueError("expected at least one dns or uri template")
        return self

    def render(self, cluster: str, broker_id: int) -> tuple[SubjectAltName, ...]:
        """The names broker `broker_id` of Kafka cluster `cluster` must show. Only the broker's id
        and cluster go in, never its address: a broker's move does not change its Cluster."""
        values = {"broker_id": broker_id, "cluster": cluster}
        return tuple(SubjectAltName("dns", template.format_map(values)) for template in self.dns) + tuple(
            SubjectAltName("uri", template.format_map(values)) for template in self.uri
        )


class UpstreamTls(Model):
    """mTLS from the sidecar to the broker. Paths are on the sidecar's filesystem, not ours.

    The broker's certificate must chain to `ca_file` and carry one of `broker_names`: without the
    name check, any certificate the broker CA signed (another broker's, any service's) would pass
    as every broker. `verify_broker_names: false` turns the name check off, explicitly."""

    ca_file: str
    cert_file: str
    key_file: str
    broker_names: BrokerNames | None = None
    verify_broker_names: bool = True

    def names_for(self, cluster: str, broker_id: int) -> tuple[SubjectAltName, ...]:
        """The names to verify on this broker's certificate; none when verification is off."""
        if not self.verify_broker_names or self.broker_names is None:
            return ()
        return self.broker_names.render(cluster, broker_id)


SOURCE_KINDS = ("static", "zookeeper", "kraft")


class KafkaCluster(Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    loopback_ip: ipaddress.IPv4Address = Field(strict=False)  # YAML gives a string: see _loopback_ip_text
    port_base: int = Field(ge=0, le=65535)
    max_broker_id: int | None = Field(default=None, ge=0)
    broker_ports: dict[int, Port] = Field(default_factory=dict)  # broker id -> port, overrides port_base
    upstream_listener: str = Field(min_length=1)
    # Sidecars connect to this port on the upstream listener's host, instead of that listener's own
    # port: for brokers whose sidecar-facing listener advertises the loopback plan address (see README).
    upstream_port: Port | None = None
    client_listener: str | None = None
    removal_grace_seconds: float = Field(default=300.0, ge=0)
    upstream_tls: UpstreamTls | None = None
    static: StaticSettings | None = None
    zookeeper: ZookeeperSettings | None = None
    kraft: KraftSettings | None = None
    health: HealthSettings | None = None

    @property
    def health_connection(self) -> KraftSettings | None:
        """How the health follower and the CLI ask this cluster: `health.connection`, else the kraft
        source's settings; None when neither is set."""
        if self.health is not None and self.health.connection is not None:
            return self.health.connection
        return self.kraft

    @field_validator("loopback_ip", mode="before")
    @classmethod
    def _loopback_ip_text(cls, ip: object) -> object:
        if not isinstance(ip, str | ipaddress.IPv4Address):  # lax mode alone would take 2130706442
            raise ValueError(f"expected an IPv4 address inside 127.0.0.0/8, got {ip!r}")
        return ip

    @field_validator("loopback_ip")
    @classmethod
    def _on_loopback(cls, ip: ipaddress.IPv4Address) -> ipaddress.IPv4Address:
        if ip not in ipaddress.IPv4Network("127.0.0.0/8"):
            raise ValueError(f"expected an address inside 127.0.0.0/8, got {ip}")
        return ip

    @field_validator("broker_ports")
    @classmethod
    def _broker_ids_are_not_negative(cls, ports: dict[int, int]) -> dict[int, int]:
        for broker_id in ports:
            if broker_id < 0:
                raise ValueError(f"expected broker ids >= 0, got {broker_id}")
        return ports

    @property
    def source_kind(self) -> str:
        return next(kind for kind in SOURCE_KINDS if getattr(self, kind) is not None)

    @property
    def highest_broker_id(self) -> int:
        """The highest broker id that gets a port from port_base (the port range's top end)."""
        return self.max_broker_id if self.max_broker_id is not None else 65535 - self.port_base

    def broker_port(self, broker_id: int) -> int | None:
        """The planned port of a broker, or None when its id has no port in this cluster's plan."""
        if broker_id in self.broker_ports:
            return self.broker_ports[broker_id]
        if broker_id < 0 or broker_id > self.highest_broker_id:
            return None
        port = self.port_base + broker_id
        return port if 1 <= port <= 65535 else None

    def no_port_reason(self, broker_id: int) -> str:
        """Why `broker_port(broker_id)` is None, for error messages and logs."""
        if self.max_broker_id is not None and broker_id > self.max_broker_id:
            why = f"it is above max_broker_id {self.max_broker_id} and not in broker_ports"
        else:
            top = self.port_base + broker_id
            why = f"port_base {self.port_base} + {broker_id} = {top} is outside 1..65535"
        return f"broker id {broker_id} has no port: {why}"


class Config(Model):
    xds: XdsSettings = XdsSettings()
    debug: DebugSettings = DebugSettings()
    sidecar: SidecarSettings = SidecarSettings()
    dns: DnsSettings = DnsSettings()
    upstream_tls: UpstreamTls | None = None
    kafka_clusters: list[KafkaCluster] = Field(min_length=1)
    # None: every sidecar sees every cluster. A list (even empty): only what a rule allows it.
    access: list[AccessRule] | None = None

    def tls_for(self, cluster: KafkaCluster) -> UpstreamTls | None:
        """A cluster's own `upstream_tls` (even `null`) wins over the global one."""
        if "upstream_tls" in cluster.model_fields_set:
            return cluster.upstream_tls
        return self.upstream_tls

    def cluster(self, name: str) -> KafkaCluster:
        return next(cluster for cluster in self.kafka_clusters if cluster.name == name)


def load_config(path: str | Path) -> Config:
    """Read, validate and cross-check a config file; raise ConfigError for the first problem.

    Relative paths of files kafka-xds reads resolve against the config file's folder."""
    path = Path(path)
    raw = read_yaml(_read_bytes(path), str(path))
    return parse_config(raw, base_dir=path.absolute().parent)


def parse_config(raw: Any, base_dir: Path | None = None) -> Config:
    """Validate a parsed config; without `base_dir`, relative paths are from the working directory."""
    if not isinstance(raw, dict):
        raise ConfigError("<top>", "the config must be a mapping with at least 'kafka_clusters'")
    try:
        config = Config.model_validate(raw)
    except pydantic.ValidationError as err:
        raise describe_validation_error(err, raw, PATTERNS, Config) from None
    _check_clusters(raw, config)
    _check_broker_names(config)
    _check_listen_addresses(config)
    _check_xds_tls(config)
    _check_access(config)
    _check_debug_exposure(config)
    return _resolve_local_files(config, base_dir or Path.cwd())


def load_static_brokers(path: Path, cluster: KafkaCluster) -> list[StaticBroker]:
    """The brokers of a static source file, checked against the cluster's plan; ConfigError names
    the file and the key."""
    return parse_static_brokers(read_file(path, MAX_STATIC_FILE_BYTES).content, str(path), cluster)


def parse_static_brokers(content: bytes, origin: str, cluster: KafkaCluster) -> list[StaticBroker]:
    raw = read_yaml(content, origin)
    if not isinstance(raw, dict):
        raise ConfigError(origin, "expected a mapping with 'brokers', a list of brokers")
    try:
        brokers = StaticBrokerFile.model_validate(raw).brokers
    except pydantic.ValidationError as err:
        first = describe_validation_error(err, raw, PATTERNS, StaticBrokerFile)
        raise ConfigError(f"{origin}: {first.key}", first.problem) from None
    _check_static_brokers(cluster, brokers, f"{origin}: brokers")
    return brokers


def _check_static_brokers(cluster: KafkaCluster, brokers: list[StaticBroker], key: str) -> None:
    """A static broker's port is known when it is listed: one without a port is refused, not skipped."""
    for index, broker in enumerate(brokers):
        if cluster.broker_port(broker.id) is None:
            raise ConfigError(f"{key}[{index}].id", cluster.no_port_reason(broker.id))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(str(path), f"cannot read: {err.strerror or err}") from None


def _check_clusters(raw: dict[str, Any], config: Config) -> None:
    names: dict[str, int] = {}
    ips: dict[ipaddress.IPv4Address, int] = {}
    for index, cluster in enumerate(config.kafka_clusters):
        key = f"kafka_clusters[{index}]"
        sources = [kind for kind in SOURCE_KINDS if getattr(cluster, kind) is not None]
        if len(sources) != 1:
            found = ", ".join(sources) or "none"
            raise ConfigError(key, f"needs exactly one source of {', '.join(SOURCE_KINDS)} (found: {found})")
        if cluster.name in names:
            raise ConfigError(f"{key}.name", f"duplicate cluster name {cluster.name!r}")
        names[cluster.name] = index
        if cluster.loopback_ip in ips:
            other = config.kafka_clusters[ips[cluster.loopback_ip]].name
            raise ConfigError(f"{key}.loopback_ip", f"{cluster.loopback_ip} is already used by {other!r}")
        ips[cluster.loopback_ip] = index
        _check_ports(key, cluster)
        _check_kraft(key, cluster)
        if cluster.health is not None and cluster.health_connection is None:
            raise ConfigError(
                f"{key}.health.connection",
                f"missing: a {cluster.source_kind} cluster's partition state is asked of its brokers; "
                "set connection.bootstrap_servers (and TLS or SASL as a Kafka client needs them)",
            )
        if cluster.static is not None and cluster.static.brokers is not None:
            _check_static_brokers(cluster, cluster.static.brokers, f"{key}.static.brokers")
        if "upstream_tls" not in cluster.model_fields_set and "upstream_tls" not in raw:
            raise ConfigError(
                f"{key}.upstream_tls",
                "missing: set upstream_tls (globally or per cluster), or null for plain TCP",
            )


def _check_broker_names(config: Config) -> None:
    """Every upstream_tls says how brokers' certificate names are verified, or that they are not."""
    found = [("upstream_tls", config.upstream_tls)]
    for index, cluster in enumerate(config.kafka_clusters):
        found.append((f"kafka_clusters[{index}].upstream_tls", cluster.upstream_tls))
    for key, tls in found:
        if tls is None:
            continue
        if tls.verify_broker_names and tls.broker_names is None:
            raise ConfigError(
                f"{key}.broker_names",
                "missing: set the names each broker's certificate carries (dns/uri templates with "
                "{broker_id} and {cluster}), or verify_broker_names: false to accept any certificate "
                "the CA signed as any broker",
            )
        if not tls.verify_broker_names and tls.broker_names is not None:
            raise ConfigError(
                f"{key}.verify_broker_names", "is false, but broker_names is set: remove one of them"
            )


_ANY_HOST = frozenset({"0.0.0.0", "::"})


def _check_listen_addresses(config: Config) -> None:
    """The two servers kafka-xds runs need addresses of their own, clear of every broker port."""
    listens = (("xds.listen", config.xds.listen), ("debug.listen", config.debug.listen))
    for listen_key, listen in listens:
        host, port = parse_listen(listen)
        for index, cluster in enumerate(config.kafka_clusters):
            if host == str(cluster.loopback_ip) and port in _port_range(cluster):
                raise ConfigError(
                    listen_key, f"{listen} overlaps the broker port range of {cluster.name!r} (index {index})"
                )
    (xds_host, xds_port), (debug_host, debug_port) = (parse_listen(listen) for _, listen in listens)
    same_host = xds_host == debug_host or {xds_host, debug_host} & _ANY_HOST
    if xds_port == debug_port and xds_port != 0 and same_host:  # port 0: each gets a free port
        raise ConfigError(
            "debug.listen",
            f"expected an address other than xds.listen's ({config.xds.listen}), got {config.debug.listen!r}",
        )


def _check_xds_tls(config: Config) -> None:
    if "tls" not in config.xds.model_fields_set:
        raise ConfigError(
            "xds.tls",
            "missing: set xds.tls (cert_file, key_file, client_ca_file), or null for plaintext xDS",
        )


def _check_access(config: Config) -> None:
    """Identities are only known from verified client certificates; rules name known clusters."""
    if config.access is None:
        return
    tls = config.xds.tls
    if tls is None or tls.client_ca_file is None:
        raise ConfigError(
            "access",
            "needs xds.tls with client_ca_file: identities come from verified client certificates",
        )
    known = [cluster.name for cluster in config.kafka_clusters]
    for index, rule in enumerate(config.access):
        for position, name in enumerate(rule.kafka_clusters):
            if name not in known:
                raise ConfigError(
                    f"access[{index}].kafka_clusters[{position}]",
                    f"unknown Kafka cluster {name!r}: expected one of {', '.join(known)}",
                )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_debug_exposure(config: Config) -> None:
    """The debug server shows the whole topology: beyond loopback only behind a token."""
    host, _ = parse_listen(config.debug.listen)
    if not _is_loopback(host) and config.debug.token_file is None:
        raise ConfigError(
            "debug.listen",
            f"{config.debug.listen} is not a loopback address: set debug.token_file to expose it",
        )


def _check_kraft(key: str, cluster: KafkaCluster) -> None:
    if cluster.kraft is None:
        return
    if cluster.client_listener is not None:
        raise ConfigError(
            f"{key}.client_listener",
            "cannot be checked with a kraft source: Metadata shows only the listener it is asked on "
            "(remove it; see docs/kraft.md)",
        )
    if cluster.upstream_port is not None and cluster.kraft.upstream_port is not None:
        raise ConfigError(f"{key}.kraft.upstream_port", "also set as the cluster's upstream_port: set one")


def _port_range(cluster: KafkaCluster) -> set[int]:
    ports = set(range(cluster.port_base, cluster.port_base + cluster.highest_broker_id + 1))
    return ports | set(cluster.broker_ports.values())


def _check_ports(key: str, cluster: KafkaCluster) -> None:
    top = cluster.port_base + cluster.highest_broker_id
    if top > 65535:
        raise ConfigError(
            f"{key}.max_broker_id",
            f"port_base {cluster.port_base} + max_broker_id {cluster.highest_broker_id} = {top} "
            "is outside 1..65535",
        )
    if cluster.port_base + 0 < 1 and 0 not in cluster.broker_ports:
        raise ConfigError(f"{key}.port_base", "broker 0 would get port 0: use port_base >= 1")
    seen: dict[int, int] = {}
    for broker_id in sorted(cluster.broker_ports):
        port = cluster.broker_ports[broker_id]
        if port in seen:
            raise ConfigError(
                f"{key}.broker_ports.{broker_id}", f"port {port} is also given to broker {seen[port]}"
            )
        seen[port] = broker_id
        owner = port - cluster.port_base
        if (
            0 <= owner <= cluster.highest_broker_id
            and owner != broker_id
            and owner not in cluster.broker_ports
        ):
            raise ConfigError(
                f"{key}.broker_ports.{broker_id}",
                f"port {port} overlaps broker {owner}'s port_base port on {cluster.loopback_ip}",
            )


# Files kafka-xds itself reads, by model: these resolve against the config file's folder. (The
# upstream_tls paths are on each sidecar's filesystem and are passed to Envoy as they are.)
_LOCAL_FILES: dict[type[BaseModel], tuple[str, ...]] = {
    StaticSettings: ("file",),
    ZookeeperDigestAuth: ("password_file",),
    ZookeeperTls: ("ca_file", "cert_file", "key_file"),
    KraftSsl: ("ca_file", "cert_file", "key_file", "key_password_file"),
    KraftSasl: ("password_file",),
    DebugSettings: ("token_file",),
    XdsTls: ("cert_file", "key_file", "client_ca_file"),
}


def _resolve_local_files(model: _M, base_dir: Path) -> _M:
    """Make the paths of files kafka-xds reads absolute: a relative path is relative to `base_dir`
    (the config file's folder), wherever kafka-xds was started from."""
    update: dict[str, Any] = {}
    for name in _LOCAL_FILES.get(type(model), ()):
        value = getattr(model, name)
        if value is not None:
            update[name] = str(base_dir / value)  # an absolute value stays as it is
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            resolved = _resolve_local_files(value, base_dir)
            if resolved is not value:
                update[name] = resolved
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            items = [_resolve_local_files(item, base_dir) for item in value]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                update[name] = items
    return model.model_copy(update=update) if update else model
