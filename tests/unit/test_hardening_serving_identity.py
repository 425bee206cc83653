"""One identity cannot take every stream slot: `xds.max_streams_per_identity` (issue 17, item 12)."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from tests.unit.test_server import AdsClient
from tests.unit.test_server_tls import PAYMENTS_APP, TlsServer, _ask_clusters, _refused_code
from xds.config.model import XdsSettings, XdsTls
from xds.serving.stream_metrics import StreamMetrics
from xds.serving.transport import AdsServer

ANALYTICS_APP = "spiffe://prod/ns/analytics/sa/app"


async def _limited_server(tmp_path, per_identity: int) -> TlsServer:
    served = TlsServer(tmp_path, None)
    served.registry = CollectorRegistry()
    served.server = AdsServer(
        XdsSettings(
            listen="127.0.0.1:0",
            tls=XdsTls(
                cert_file=str(served.volume.path("tls.crt")),
                key_file=str(served.volume.path("tls.key")),
                client_ca_file=str(served.volume.path("ca.crt")),
            ),
            overload_lag_seconds=60,
            max_streams_per_identity=per_identity,
        ),
        StreamMetrics(served.registry),
    )
    return await served.start()


async def _served(client: AdsClient) -> AdsClient:
    _ask_clusters(client)
    await client.receive()
    return client


async def test_streams_of_one_identity_beyond_its_limit_are_refused_and_others_are_not(tmp_path):
    served = await _limited_server(tmp_path, per_identity=2)
    try:
        payments = [await _served(served.client(served.certs, uris=(PAYMENTS_APP,))) for _ in range(2)]
        extra = served.client(served.certs, uris=(PAYMENTS_APP,))
        _ask_clusters(extra)
        assert await _refused_code(extra) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert served.refused("identity_limit") == 1
        other = await _served(served.client(served.certs, uris=(ANALYTICS_APP,)))  # unaffected
        await payments.pop().close()
        again = await _served(served.client(served.certs, uris=(PAYMENTS_APP,)))  # a slot is free again
        for client in [*payments, other, again]:
            await client.close()
    finally:
        await served.server.stop(grace=0)


async def test_the_refusal_names_the_limit_and_the_setting(tmp_path):
    served = await _limited_server(tmp_path, per_identity=1)
    try:
        first = await _served(served.client(served.certs, uris=(PAYMENTS_APP,)))
        extra = served.client(served.certs, uris=(PAYMENTS_APP,))
        _ask_clusters(extra)
        with pytest.raises(aio.AioRpcError) as raised:
            await extra.receive()
        details = raised.value.details() or ""
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert PAYMENTS_APP in details and "xds.max_streams_per_identity" in details
        await extra.close()
        await first.close()
    finally:
        await served.server.stop(grace=0)


def test_each_worker_takes_the_share_of_the_identity_limit_it_takes_of_the_stream_limit():
    settings = XdsSettings(max_concurrent_streams=20_000, max_streams_per_identity=100)
    alone = AdsServer(settings, StreamMetrics(CollectorRegistry()))
    one_of_three = AdsServer(settings, StreamMetrics(CollectorRegistry()), stream_limit=6_667)
    assert (alone.admission.identity_limit, one_of_three.admission.identity_limit) == (100, 34)
    unlimited = AdsServer(XdsSettings(), StreamMetrics(CollectorRegistry()), stream_limit=10_000)
    assert unlimited.admission.identity_limit is None
