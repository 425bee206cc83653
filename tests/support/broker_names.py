"""The names kafka-xds verifies on test brokers' certificates, and the names those certificates carry.

`BROKER_NAMES` is the `upstream_tls.broker_names` of every test config; each broker's Cluster then
expects `<cluster>-broker-<id>.brokers.kafka-xds.test`. A test about something else starts its brokers
with `FLEET_CERTIFICATE_NAME`, one wildcard that matches every such name (as a platform issuing one
certificate to a whole fleet would), so it need not know which id and cluster each broker will get.
The tests of the name check itself issue exact names (tests/e2e/test_broker_names_e2e.py).
"""

from __future__ import annotations

BROKER_DOMAIN = "brokers.kafka-xds.test"
BROKER_NAMES = {"dns": ["{cluster}-broker-{broker_id}." + BROKER_DOMAIN]}
FLEET_CERTIFICATE_NAME = "*." + BROKER_DOMAIN


def broker_name(cluster: str, broker_id: int) -> str:
    """The DNS name `BROKER_NAMES` renders for a broker: what its own certificate must carry."""
    return f"{cluster}-broker-{broker_id}.{BROKER_DOMAIN}"
