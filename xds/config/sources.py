"""The config of each kind of source: a static broker list, ZooKeeper, and Kafka's Metadata API."""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Literal

import pydantic
from pydantic import Field, ValidationInfo, field_validator, model_validator

from xds.config.fields import USERNAME_PATTERN, ListenAddress, Model, Port
from xds.shared.addresses import is_host


class StaticBroker(Model):
    id: int = Field(ge=0)
    host: str
    port: Port
    rack: str | None = None
    listeners: dict[str, ListenAddress] = Field(default_factory=dict)  # other listeners, name -> HOST:PORT

    @field_validator("host")
    @classmethod
    def _host_is_an_address_or_a_name(cls, host: str, info: ValidationInfo) -> str:
        if not is_host(host):
            hint = " (the port goes in 'port')" if is_host(host.rpartition(":")[0].strip("[]")) else ""
            broker = info.data.get("id", "?")
            raise ValueError(f"expected an IP address or a DNS name for broker {broker}, got {host!r}{hint}")
        return host


def _unique_broker_ids(brokers: list[StaticBroker]) -> list[StaticBroker]:
    first: dict[int, int] = {}
    for index, broker in enumerate(brokers):
        if broker.id in first:
            raise ValueError(
                f"expected unique broker ids, got id {broker.id} at brokers[{first[broker.id]}] "
                f"and brokers[{index}]"
            )
        first[broker.id] = index
    return brokers


StaticBrokers = Annotated[list[StaticBroker], pydantic.AfterValidator(_unique_broker_ids)]


class StaticBrokerFile(Model):
    brokers: StaticBrokers


class StaticSettings(Model):
    file: str | None = None
    brokers: StaticBrokers | None = None
    poll_interval_seconds: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _one_of_file_or_brokers(self) -> StaticSettings:
        if (self.file is None) == (self.brokers is None):
            raise ValueError("give exactly one of 'file' or 'brokers'")
        return self


class ZookeeperDigestAuth(Model):
    """ZooKeeper `digest` authentication; the password is read from a file, never from the config."""

    username: str = Field(min_length=1, pattern=USERNAME_PATTERN)
    password_file: str = Field(min_length=1)


class _ClientTls(Model):
    """TLS from kafka-xds to a backend; a client certificate only where the backend asks for one."""

    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> _ClientTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both 'cert_file' and 'key_file', or neither")
        return self


class ZookeeperTls(_ClientTls):
    """TLS to ZooKeeper (its secureClientPort)."""

    ca_file: str = Field(min_length=1)


def _check_zookeeper_hosts(hosts: str) -> str:
    """`host:port,host:port` as in a broker's zookeeper.connect, but without its chroot."""
    if "/" in hosts:
        raise ValueError(f"expected HOST:PORT,... with the chroot in 'chroot', got {hosts!r}")
    for entry in hosts.split(","):
        try:
            parsed = urllib.parse.urlsplit("zk://" + entry.strip())
            port = parsed.port  # raises ValueError when out of range or not a number
        except ValueError:
            parsed, port = None, None
        if parsed is None or not parsed.hostname or (port is not None and port < 1):
            raise ValueError(f"expected HOST:PORT,..., got {hosts!r} ({entry.strip()!r} is not HOST:PORT)")
    return hosts


class ZookeeperSettings(Model):
    hosts: Annotated[str, Field(min_length=1), pydantic.AfterValidator(_check_zookeeper_hosts)]
    chroot: str = ""
    session_timeout_seconds: float = Field(default=10.0, ge=1, le=600)
    startup_timeout_seconds: float | None = Field(default=None, gt=0)
    auth: ZookeeperDigestAuth | None = None
    tls: ZookeeperTls | None = None

    @field_validator("chroot")
    @classmethod
    def _chroot_is_absolute(cls, chroot: str) -> str:
        if chroot and (not chroot.startswith("/") or chroot.endswith("/") or "//" in chroot):
            raise ValueError(
                f"expected a path that starts with '/' and does not end with '/' (e.g. /kafka-a), "
                f"got {chroot!r}"
            )
        return chroot


def _check_bootstrap_server(server: str) -> str:
    """`host:port` (or `[v6]:port`) with a real port, as in a Kafka client's bootstrap.servers."""
    try:
        parsed = urllib.parse.urlsplit("kafka://" + server)
        port = parsed.port  # raises ValueError when out of range or not a number
    except ValueError:
        parsed, port = None, None
    if parsed is None or not parsed.hostname or port is None or port < 1 or parsed.path:
        raise ValueError(f"{server!r} is not HOST:PORT")
    return server


class KraftSsl(_ClientTls):
    """TLS to the brokers' bootstrap listener (a client certificate for ssl.client.auth=required).
    Without `ca_file` the system's trust store is used."""

    ca_file: str | None = None
    key_password_file: str | None = None

    @model_validator(mode="after")
    def _password_needs_a_key(self) -> KraftSsl:
        if self.key_password_file is not None and self.key_file is None:
            raise ValueError("'key_password_file' needs 'key_file'")
        return self


class KraftSasl(Model):
    """SASL on the bootstrap listener; the password is read from a file, never from the config."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    username: str = Field(min_length=1)
    password_file: str = Field(min_length=1)


class KraftSettings(Model):
    """Kafka's own Metadata API, for ZooKeeper-less (KRaft) clusters; see docs/kraft.md."""

    bootstrap_servers: list[Annotated[str, pydantic.AfterValidator(_check_bootstrap_server)]] = Field(
        min_length=1
    )
    # The listener these addresses belong to is the one whose advertised endpoints kafka-xds learns;
    # upstream_port replaces their port, for sidecars that must use another listener on the same host.
    upstream_port: Port | None = None
    poll_interval_seconds: float = Field(default=2.0, ge=0.1, le=3600)
    request_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    max_backoff_seconds: float = Field(default=30.0, ge=0.1, le=3600)
    startup_timeout_seconds: float | None = Field(default=None, gt=0)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl: KraftSsl | None = None
    sasl: KraftSasl | None = None

    @model_validator(mode="after")
    def _security_settings_match_the_protocol(self) -> KraftSettings:
        uses_ssl = self.security_protocol in ("SSL", "SASL_SSL")
        uses_sasl = self.security_protocol.startswith("SASL_")
        if self.ssl is not None and not uses_ssl:
            raise ValueError(f"'ssl' is set but security_protocol {self.security_protocol} does not use TLS")
        if uses_sasl and self.sasl is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs 'sasl'")
        if self.sasl is not None and not uses_sasl:
            raise ValueError(
                f"'sasl' is set but security_protocol {self.security_protocol} does not use SASL"
            )
        return self
