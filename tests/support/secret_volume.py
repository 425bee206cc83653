"""A directory laid out as the kubelet lays out a mounted Secret: files swapped atomically via `..data`.

`<dir>/tls.crt -> ..data/tls.crt`, `<dir>/..data -> ..<timestamp>`; an update writes a new
timestamped directory, points a temporary symlink at it and renames that over `..data` (one atomic
rename), then removes the old directory. Readers never see a half-updated set.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path


class SecretVolume:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._serial = itertools.count(1)
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.directory / name

    def write(self, files: Mapping[str, bytes]) -> None:
        """Replace every file at once, as a renewed Secret reaches a pod."""
        data = self.directory / "..data"
        old = data.resolve() if data.is_symlink() else None
        version = self.directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{next(self._serial)}"
        version.mkdir()
        for name, content in files.items():
            (version / name).write_bytes(content)
        temporary = self.directory / "..data_tmp"
        os.symlink(version.name, temporary)
        os.replace(temporary, data)
        for name in files:
            if not self.path(name).is_symlink():
                os.symlink(f"..data/{name}", self.path(name))
        if old is not None:
            shutil.rmtree(old)

    def write_files(self, **sources: Path) -> None:
        """`write` with each file's content read from a path: `write_files(**{"tls.crt": cert})`."""
        self.write({name: source.read_bytes() for name, source in sources.items()})
