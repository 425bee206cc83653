"""The ADS server's TLS: its certificate, and the CA its clients' certificates must come from.

The files are read at start and again whenever they change: gRPC asks `fetch` before every TLS
handshake (on one of its own threads, not the event loop), and `fetch` only compares the files'
identities (device, inode, size, modification time, following symlinks), so the check is a few
`stat` calls. Kubernetes updates a Secret volume by pointing its `..data` symlink at a new
directory: every path then resolves to a new inode, which is a change. A changed set is read and
checked (the key belongs to the certificate, every file parses) before gRPC gets it; a broken or
half-written set is logged once and the previous certificate stays in use. Each serving process
reads the files itself.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from xds.serving.settings import ServingTls
from xds.shared.errors import ConfigError
from xds.shared.log import event

log = logging.getLogger("kafka_xds.server")

_Signature = tuple[tuple[int, int, int, int], ...]
_KEPT = "cannot use the changed xDS certificate files; the previous certificate stays in use"


class TlsFilesError(ConfigError):
    """A certificate file that cannot be used: `xds.tls.<key>: problem` (never its content)."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    signature: _Signature
    configuration: grpc.ServerCertificateConfiguration
    subject: str
    not_after: str


class ServerCertificates:
    """The certificate files of `xds.tls`, as gRPC server credentials that follow file changes."""

    def __init__(self, tls: ServingTls) -> None:
        self._tls = tls
        self._files: tuple[tuple[str, str], ...] = (
            ("xds.tls.cert_file", tls.cert_file),
            ("xds.tls.key_file", tls.key_file),
            *((("xds.tls.client_ca_file", tls.client_ca_file),) if tls.client_ca_file else ()),
        )
        self._lock = threading.Lock()
        self._current = self._load(self._signature())
        self._failed: _Signature | None = None  # a changed set that did not load: not read again
        self._problem: str | None = None  # the last problem logged, logged again only when it changes

    @property
    def requires_client_certificate(self) -> bool:
        return self._tls.client_ca_file is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._current.configuration,
            self.fetch,  # type: ignore[arg-type]  # the stubs omit it: None keeps the current one
            require_client_authentication=self.requires_client_certificate,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's certificate-configuration fetcher: a new configuration when the files changed and
        read well, else None (keep the current one). A broken set is read and reported once."""
        with self._lock:
            try:
                signature = self._signature()
                if signature == self._current.signature or signature == self._failed:
                    return None
                try:
                    loaded = self._load(signature)
                except TlsFilesError:
                    self._failed = signature
                    raise
            except TlsFilesError as err:
                if str(err) != self._problem:
                    self._problem = str(err)
                    event(log, logging.ERROR, _KEPT, error=self._problem)
                return None
            self._current, self._failed, self._problem = loaded, None, None
        event(
            log,
            logging.INFO,
            "xDS server certificate files changed; new connections use them",
            subject=loaded.subject,
            not_after=loaded.not_after,
        )
        return loaded.configuration

    def _signature(self) -> _Signature:
        signature = []
        for key, path in self._files:
            try:
                found = os.stat(path)
            except OSError as err:
                raise TlsFilesError(key, f"cannot read {path}: {err.strerror or err}") from None
            signature.append((found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns))
        return tuple(signature)

    def _load(self, signature: _Signature) -> _Loaded:
        contents = {key: _read(key, path) for key, path in self._files}
        chain = _certificates("xds.tls.cert_file", contents["xds.tls.cert_file"])
        key = _private_key(contents["xds.tls.key_file"])
        public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if chain[0].public_key().public_bytes(*public) != key.public_key().public_bytes(*public):
            raise TlsFilesError("xds.tls.key_file", "is not the key of the certificate in xds.tls.cert_file")
        client_ca = contents.get("xds.tls.client_ca_file")
        if client_ca is not None:
            _certificates("xds.tls.client_ca_file", client_ca)
        configuration = grpc.ssl_server_certificate_configuration(
            [(contents["xds.tls.key_file"], contents["xds.tls.cert_file"])], root_certificates=client_ca
        )
        return _Loaded(
            signature,
            configuration,
            chain[0].subject.rfc4514_string(),
            chain[0].not_valid_after_utc.isoformat(),
        )


def _read(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise TlsFilesError(key, f"cannot read {path}: {err.strerror or err}") from None


def _certificates(key: str, content: bytes) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(content)
    except ValueError:
        found = []
    if not found:
        raise TlsFilesError(key, "expected PEM certificates, found none that parse")
    return found


def _private_key(content: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(content, password=None)
    except TypeError:
        raise TlsFilesError("xds.tls.key_file", "is encrypted; expected an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsFilesError(
            "xds.tls.key_file", "expected a PEM private key, found none that parses"
        ) from None
