"""What Kafka (ZooKeeper mode, 1.x-3.x) writes in ZooKeeper, read into `Broker` values. Pure: no I/O.

`<chroot>/brokers/ids/<id>` holds a JSON registration whose `version` (1 to 5) decides its fields:
1 has only `host`/`port`; 2 adds `endpoints` (`"PROTOCOL://host:port"`); 3 adds `rack`; 4 names
endpoints by listener (`"CLIENT://..."`) and adds `listener_security_protocol_map`; 5 adds `features`.
Later versions are read the same way as 5, since Kafka only ever added fields.

Whatever a znode holds, the parsers raise `ZnodeError` and nothing else: anyone with write access to
the chroot can put anything there (numbers beyond `int()`'s digit limit, JSON nested past the
recursion limit, megabytes of text), and one such znode must cost only its own broker.
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
# A Kafka registration is well under 4 KiB; ZooKeeper itself allows up to 1 MiB (jute.maxbuffer).
MAX_ZNODE_BYTES = 64 * 1024
_MAX_BROKER_ID = 2**31 - 1  # Kafka's broker.id is an int32
_MAX_SHOWN = 80  # characters of a bad value quoted in a reason


class ZnodeError(ValueError):
    """A znode Kafka could not have written, or that cannot be used; the message is the reason."""


def parse_broker_id(name: str) -> int:
    """A child name of /brokers/ids as a broker id (Kafka writes the id in decimal, no sign or zeros)."""
    # The length check comes first: int() refuses more than 4300 digits with a plain ValueError.
    if not name.isascii() or not name.isdigit() or len(name) > 10 or str(int(name)) != name:
        raise ZnodeError(f"znode name {_shown(name)} is not a broker id (a non-negative integer)")
    broker_id = int(name)
    if broker_id > _MAX_BROKER_ID:
        raise ZnodeError(f"znode name {_shown(name)} is not a broker id (above {_MAX_BROKER_ID})")
    return broker_id


def parse_broker_registration(broker_id: int, data: bytes | None) -> Broker:
    """The broker registered in one `/brokers/ids/<id>` znode; raises ZnodeError saying what is wrong."""
    body = _json_object(data)
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ZnodeError(f"'version' is {_shown(version)}, expected an integer")
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
        raise ZnodeError(f"'id' is {_shown(cluster_id)}, expected a non-empty string")
    return cluster_id


def _json_object(data: bytes | None) -> dict[str, Any]:
    if not data:
        raise ZnodeError("empty znode, expected JSON")
    if len(data) > MAX_ZNODE_BYTES:
        raise ZnodeError(f"{len(data)} bytes, larger than a registration can be ({MAX_ZNODE_BYTES})")
    try:
        body = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ZnodeError("not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ZnodeError(f"not JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except RecursionError:
        raise ZnodeError("not JSON Kafka writes (nested too deeply)") from None
    except ValueError as err:  # an integer beyond int()'s digit limit
        raise ZnodeError(f"not JSON Kafka writes ({_shown(str(err))})") from None
    if not isinstance(body, dict):
        raise ZnodeError(f"expected a JSON object, got {type(body).__name__}")
    return body


def _endpoints(raw: Any) -> dict[str, HostPort]:
    if not isinstance(raw, list):
        raise ZnodeError(f"'endpoints' is {_shown(raw)}, expected a list of 'LISTENER://host:port'")
    listeners: dict[str, HostPort] = {}
    for entry in raw:
        match = _ENDPOINT.match(entry) if isinstance(entry, str) else None
        if match is None:
            raise ZnodeError(f"endpoint {_shown(entry)} is not 'LISTENER://host:port'")
        name, host = match["listener"], match["host"]
        if not host:
            raise ZnodeError(f"endpoint {_shown(entry)} has no host")
        if name in listeners:
            raise ZnodeError(f"listener {_shown(name)} is registered twice")
        listeners[name] = HostPort(host, _port(match["port"], entry))
    return listeners


def _host_port_listener(body: dict[str, Any]) -> dict[str, HostPort]:
    host, port = body.get("host"), body.get("port")
    if host is None and port in (None, -1):
        return {}  # Kafka writes null/-1 when the broker has no PLAINTEXT listener
    if not isinstance(host, str) or not host:
        raise ZnodeError(f"'host' is {_shown(host)}, expected a host name or address")
    if isinstance(port, bool) or not isinstance(port, int):
        raise ZnodeError(f"'port' is {_shown(port)}, expected an integer")
    return {_HOST_PORT_LISTENER: HostPort(host.strip("[]"), _port(str(port), f"{host}:{port}"))}


def _port(text: str, where: str) -> int:
    port = int(text) if len(text.lstrip("-")) <= 5 else None  # longer: out of range, and maybe of int()
    if port is None or not 1 <= port <= 65535:
        raise ZnodeError(f"port {_shown(text, quoted=False)} of {_shown(where)} is outside 1..65535")
    return port


def _rack(raw: Any) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw or None
    raise ZnodeError(f"'rack' is {_shown(raw)}, expected a string or null")


def _timestamp(raw: Any) -> int | None:
    """Registration time in ms; Kafka writes it as a string. Informational, so a bad one is dropped."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        return int(raw)
    return None


def _shown(value: Any, quoted: bool = True) -> str:
    """A bad value as a reason quotes it: shortened, since a znode may hold a megabyte of it."""
    text = repr(value) if quoted else str(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[: _MAX_SHOWN - 20]}...({len(text)} characters)"
