"""`python -m xds.demo.certs OUT --broker kafka-1 ... --xds-server kafka-xds`: the compose demo's PKI.

Writes `ca.pem`; `client.pem`/`client.key`, the sidecars' certificate, for both of their connections
(to kafka-xds, where `--client-uri` as a URI SAN is their identity, and to the brokers); with
`--xds-server`, `xds-server.pem`/`xds-server.key`, kafka-xds's ADS certificate for those host names;
per broker `<name>.pem` holding the PKCS#8 private key followed by its certificate for the host name
`<name>` (the name config/compose's `upstream_tls.broker_names` render for it, which the sidecars
verify), the PEM keystore format Kafka reads (`ssl.keystore.type=PEM`, KIP-651); and `debug-token`,
a random bearer token for kafka-xds's debug server (which listens beyond loopback in a container).
Test and demo certificates only: production brokers and sidecars get theirs from the platform's PKI
(cert-manager, Vault, ...).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

from xds.demo.brokers import issue_certificate

XDS_SERVER = "xds-server"


def _pkcs8(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def made_files(brokers: Sequence[str], xds_servers: Sequence[str] = ()) -> list[str]:
    """The names of the files `write_certs` writes for these arguments."""
    server = [f"{XDS_SERVER}.pem", f"{XDS_SERVER}.key"] if xds_servers else []
    return [
        "ca.pem",
        "client.pem",
        "client.key",
        *server,
        *(f"{name}.pem" for name in brokers),
        "debug-token",
    ]


def write_certs(
    out: Path,
    brokers: Sequence[str],
    client: str,
    *,
    xds_servers: Sequence[str] = (),
    client_uri: str | None = None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="kafka-xds demo")
    (out / "ca.pem").write_bytes(ca.cert_pem.bytes())
    # Subject and DNS SAN `client` (Kafka's principal), and the URI SAN kafka-xds takes as identity.
    cert, key = issue_certificate(ca, out, client, uris=[client_uri] if client_uri else (), hosts=[client])
    cert.replace(out / "client.pem")
    key.replace(out / "client.key")
    if xds_servers:
        issue_certificate(ca, out, XDS_SERVER, hosts=xds_servers)
    for name in brokers:
        issued = ca.issue_cert(name, "localhost", common_name=name)
        chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
        (out / f"{name}.pem").write_bytes(_pkcs8(issued.private_key_pem.bytes()) + chain)
    (out / "debug-token").write_text(secrets.token_urlsafe(24) + "\n")
    for path in out.iterdir():
        path.chmod(0o644)  # read by the broker, Envoy and kcat containers, which run as other users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xds.demo.certs", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--broker", action="append", default=[], help="a broker host name (repeatable)")
    parser.add_argument("--client", default="sidecar.kafka-xds.demo", help="the sidecars' certificate name")
    parser.add_argument("--client-uri", help="the sidecars' identity, a URI SAN (e.g. a SPIFFE id)")
    parser.add_argument(
        "--xds-server",
        action="append",
        default=[],
        help="a host name sidecars dial kafka-xds by (repeatable)",
    )
    args = parser.parse_args(argv)
    expected = made_files(args.broker, args.xds_server)
    if all((args.out / name).exists() for name in expected):
        print(f"{args.out} holds every certificate already: keeping them")
        return 0
    write_certs(args.out, args.broker, args.client, xds_servers=args.xds_server, client_uri=args.client_uri)
    print(f"wrote {', '.join(expected)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
