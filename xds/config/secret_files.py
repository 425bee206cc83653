"""Secret files kafka-xds reads (private keys, passwords, the debug token) that others can read too.

`check-config` and `serve` warn once per such file, naming the key, the file and its mode, never
its content. The upstream_tls files are not checked: they are on each sidecar's filesystem, and
kafka-xds only names them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel

from xds.config.model import Config, DebugSettings, XdsTls
from xds.config.sources import KraftSasl, KraftSsl, ZookeeperDigestAuth, ZookeeperTls

_SECRET_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {
    XdsTls: ("key_file",),
    ZookeeperTls: ("key_file",),
    ZookeeperDigestAuth: ("password_file",),
    KraftSsl: ("key_file", "key_password_file"),
    KraftSasl: ("password_file",),
    DebugSettings: ("token_file",),
}
_OTHERS_READ = stat.S_IRGRP | stat.S_IROTH


@dataclass(frozen=True, slots=True)
class ReadableSecret:
    """A secret file whose mode lets its group or everyone read it."""

    key: str  # e.g. kafka_clusters[0].zookeeper.tls.key_file
    path: str
    mode: int  # the permission bits

    def describe(self) -> str:
        readers = " and ".join(
            who for bit, who in ((stat.S_IRGRP, "its group"), (stat.S_IROTH, "everyone")) if self.mode & bit
        )
        return (
            f"{self.key}: {self.path} is readable by {readers} (mode {self.mode:04o}); "
            f"make it readable by its owner only (chmod 600)"
        )


def readable_secrets(config: Config) -> list[ReadableSecret]:
    """Every secret file of `config` that its group or everyone may read (files that cannot be
    stat'ed are left to whoever reads them, which reports that)."""
    found = []
    for key, path in _secret_files(config, ""):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)  # a symlink's target (Kubernetes Secrets)
        except OSError:
            continue
        if mode & _OTHERS_READ:
            found.append(ReadableSecret(key, path, mode))
    return found


def _secret_files(model: BaseModel, prefix: str) -> Iterator[tuple[str, str]]:
    for name in _SECRET_FIELDS.get(type(model), ()):
        value = getattr(model, name)
        if isinstance(value, str):
            yield prefix + name, value
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _secret_files(value, f"{prefix}{name}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _secret_files(item, f"{prefix}{name}[{index}].")
