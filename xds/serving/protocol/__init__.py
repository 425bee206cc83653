"""The xDS protocol, without I/O: wire messages, shared views, and one state machine per stream.

`StreamProtocol(Sotw())` or `StreamProtocol(Delta())` holds one stream's state; see stream.py for
what the two variants share and where they differ.
"""

from xds.serving.protocol.delta import Delta
from xds.serving.protocol.messages import (
    DeltaRequest,
    ErrorDetail,
    MalformedRequest,
    NodeInfo,
    RequestParser,
    SotwRequest,
)
from xds.serving.protocol.sotw import Sotw
from xds.serving.protocol.stream import (
    Acked,
    Ignored,
    Nack,
    Nacked,
    Outcome,
    Sent,
    StreamProtocol,
    SyncState,
    TooManyNames,
    TypeState,
)
from xds.serving.protocol.views import Body, Nonces, Served, ServedSnapshot, View, Views

__all__ = [
    "Acked",
    "Body",
    "Delta",
    "DeltaRequest",
    "ErrorDetail",
    "Ignored",
    "MalformedRequest",
    "Nack",
    "Nacked",
    "NodeInfo",
    "Nonces",
    "Outcome",
    "RequestParser",
    "Sent",
    "Served",
    "ServedSnapshot",
    "Sotw",
    "SotwRequest",
    "StreamProtocol",
    "SyncState",
    "TooManyNames",
    "TypeState",
    "View",
    "Views",
]
