"""What a serving process needs to know of its settings, as protocols.

Serving never imports the config package: `AdsServer` takes anything with these attributes. The
config's `xds` section (`XdsSettings`, `XdsTls`) has them, and it is what the main process hands a
worker; a test may pass a dataclass of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class ServingTls(Protocol):
    """The ADS server's certificate and key, and the CA of the client certificates it requires."""

    @property
    def cert_file(self) -> str: ...

    @property
    def key_file(self) -> str: ...

    @property
    def client_ca_file(self) -> str | None: ...


class ServingSettings(Protocol):
    """The ADS listener: its address, TLS (None: plaintext), gRPC limits, and overload and shutdown."""

    @property
    def listen(self) -> str: ...

    @property
    def tls(self) -> ServingTls | None: ...

    @property
    def keepalive_time_seconds(self) -> float: ...

    @property
    def keepalive_timeout_seconds(self) -> float: ...

    @property
    def max_concurrent_streams(self) -> int: ...

    @property
    def overload_lag_seconds(self) -> float: ...

    @property
    def max_request_bytes(self) -> int: ...

    @property
    def max_resource_names(self) -> int: ...

    @property
    def max_streams_per_identity(self) -> int | None: ...

    @property
    def shutdown_grace_seconds(self) -> float: ...


class AccessRuleSettings(Protocol):
    """One rule of the access policy: an identity (`*` matches any run) and the clusters it may see."""

    @property
    def identity(self) -> str: ...

    @property
    def kafka_clusters(self) -> Sequence[str]: ...
