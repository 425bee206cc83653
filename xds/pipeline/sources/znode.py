"""What Kafka (ZooKeeper mode, 1.x-3.x) writes in ZooKeeper, read into `Broker` values. Pure: no I/O.

`<chroot>/brokers/ids/<id>` holds a JSON registration whose `version` (1 to 5) decides its fields:
1 has only `host`/`port`; 2 adds `endpoints` (`"PROTOCOL://host:port"`); 3 adds `rack`; 4 names
endpoints by listener (`"CLIENT://..."`) and adds `listener_security_protocol_map`; 5 adds `features`.
Later versions are read the same way as 5, since Kafka only ever added fields.
"""

from __future__ import annotations

import json
import re
from typing import Any

from xds.pipeline.topology import Broker
from xds.shared.addresses import HostPort

# Kafka's EndPoint.uriParseExp: listener name, then an optional [IPv6] host, then the port.
_ENDPOINT = re.compile(r"^(?P<listener>[^:/]+)://\[?(?P<host>[0-9a-zA-Z\-%._:]*)\]?:(?P<port>-?[0-9]+)$")
# Without endpoints, Kafka reads host/port as the PLAINTEXT listener.
_HOST_PORT_LISTENER = "PLAINTEXT"


class ZnodeError(ValueError):
    """A znode Kafka could not have written, or that cannot be used; the message is the reason."""


def parse_broker_id(name: str) -> int:
    """A child name of /brokers/ids as a broker id (Kafka writes the id in decimal, no sign or zeros)."""
    if not name.isascii() or not name.isdigit() or str(int(name)) != name:
        raise ZnodeError(f"znode name {name!r} is not a broker id (a non-negative integer)")
    return int(name)


def parse_broker_registration(broker_id: int, data: bytes | None) -> Broker:
    """The broker registered in one `/brokers/ids/<id>` znode; raises ZnodeError saying what is wrong."""
    body = _json_object(data)
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ZnodeError(f"'version' is {version!r}, expected an integer")
    if version < 1:
        raise ZnodeError(f"unsupported registration version {version}")
    # Version 1 has only host/port; a later one without endpoints falls back to them the same way.
    listeners = _endpoints(body["endpoints"]) if "endpoints" in body else _host_port_listener(body)
    if not listeners:
        raise ZnodeError("no endpoints registered")
    return Broker.create(broker_id, listeners, _rack(body.get("rack")), _timestamp(body.get("timestamp")))


def parse_cluster_id(data: bytes | None) -> str:
    """The id in `/cluster/id` (`{"version":"1","id":"..."}`)."""
    body = _json_object(data)
    cluster_id = body.get("id")
    if not isinstance(cluster_id, str) or not cluster_id:
        raise ZnodeError(f"'id' is {cluster_id!r}, expected a non-empty string")
    return cluster_id


def _json_object(data: bytes | None) -> dict[str, Any]:
    if not data:
        raise ZnodeError("empty znode, expected JSON")
    try:
        body = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ZnodeError("not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ZnodeError(f"not JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    if not isinstance(body, dict):
        raise ZnodeError(f"expected a JSON object, got {type(body).__name__}")
    return body


def _endpoints(raw: Any) -> dict[str, HostPort]:
    if not isinstance(raw, list):
        raise ZnodeError(f"'endpoints' is {raw!r}, expected a list of 'LISTENER://host:port'")
    listeners: dict[str, HostPort] = {}
    for entry in raw:
        match = _ENDPOINT.match(entry) if isinstance(entry, str) else None
        if match is None:
            raise ZnodeError(f"endpoint {entry!r} is not 'LISTENER://host:port'")
        name, host = match["listener"], match["host"]
        if not host:
            raise ZnodeError(f"endpoint {entry!r} has no host")
        if name in listeners:
            raise ZnodeError(f"listener {name} is registered twice")
        listeners[name] = HostPort(host, _port(match["port"], entry))
    return listeners


def _host_port_listener(body: dict[str, Any]) -> dict[str, HostPort]:
    host, port = body.get("host"), body.get("port")
    if host is None and port in (None, -1):
        return {}  # Kafka writes null/-1 when the broker has no PLAINTEXT listener
    if not isinstance(host, str) or not host:
        raise ZnodeError(f"'host' is {host!r}, expected a host name or address")
    if isinstance(port, bool) or not isinstance(port, int):
        raise ZnodeError(f"'port' is {port!r}, expected an integer")
    return {_HOST_PORT_LISTENER: HostPort(host.strip("[]"), _port(str(port), f"{host}:{port}"))}


def _port(text: str, where: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ZnodeError(f"port {port} of {where!r} is outside 1..65535")
    return port


def _rack(raw: Any) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw or None
    raise ZnodeError(f"'rack' is {raw!r}, expected a string or null")


def _timestamp(raw: Any) -> int | None:
    """Registration time in ms; Kafka writes it as a string. Informational, so a bad one is dropped."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        return int(raw)
    return None
