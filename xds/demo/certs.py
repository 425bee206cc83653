"""`python -m xds.demo.certs OUT --broker kafka-1 ...`: a CA and certificates for the compose demo.

Writes `ca.pem`; `client.pem`/`client.key` for the sidecars; per broker `<name>.pem` holding the
PKCS#8 private key followed by its certificate, the PEM keystore format Kafka reads
(`ssl.keystore.type=PEM`, KIP-651); and `debug-token`, a random bearer token for kafka-xds's debug
server (which listens beyond loopback in a container). Test and demo certificates only: production brokers and
sidecars get theirs from the platform's PKI (cert-manager, Vault, ...).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization


def _pkcs8(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_certs(out: Path, brokers: list[str], client: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="kafka-xds demo")
    (out / "ca.pem").write_bytes(ca.cert_pem.bytes())
    sidecar = ca.issue_cert(client, common_name=client)
    (out / "client.pem").write_bytes(b"".join(blob.bytes() for blob in sidecar.cert_chain_pems))
    (out / "client.key").write_bytes(_pkcs8(sidecar.private_key_pem.bytes()))
    for name in brokers:
        cert = ca.issue_cert(name, "localhost", common_name=name)
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        (out / f"{name}.pem").write_bytes(_pkcs8(cert.private_key_pem.bytes()) + chain)
    (out / "debug-token").write_text(secrets.token_urlsafe(24) + "\n")
    for path in out.iterdir():
        path.chmod(0o644)  # read by the broker, Envoy and kcat containers, which run as other users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xds.demo.certs", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--broker", action="append", default=[], help="a broker host name (repeatable)")
    parser.add_argument("--client", default="sidecar.kafka-xds.demo")
    args = parser.parse_args(argv)
    if (args.out / "ca.pem").exists():
        print(f"{args.out}/ca.pem exists: keeping the certificates already there")
        return 0
    write_certs(args.out, args.broker, args.client)
    print(
        f"wrote a CA, a sidecar certificate, {len(args.broker)} broker keystores and a debug token "
        f"to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
