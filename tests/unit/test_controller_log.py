"""The controller logs what the plan finds wrong once, when it appears, and when it is resolved."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.unit.test_pipeline import broker, controller_config, synced
from xds.pipeline.controller import Controller
from xds.pipeline.publisher import Publisher


@pytest.fixture
def controller() -> Controller:
    return Controller(controller_config(0, {"client_listener": "CLIENT"}), Publisher())


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> list[dict[str, Any]]:
    return [record.__dict__["fields"] for record in caplog.records if text in record.getMessage()]


async def test_a_plan_mismatch_is_logged_once_with_both_addresses(controller, caplog):
    caplog.set_level(logging.WARNING, logger="kafka_xds")
    controller.submit(synced(broker(1, client="127.0.0.10:9091"), broker(2, client="10.0.0.2:9092")))
    await controller.rebuild()
    controller.submit(
        synced(broker(1, "10.0.0.7", client="127.0.0.10:9091"), broker(2, client="10.0.0.2:9092"))
    )
    await controller.rebuild()
    logged = _logged(caplog, "advertises another address than its plan")
    assert logged == [
        {
            "cluster": "kafka-a",
            "broker": 2,
            "listener": "CLIENT",
            "advertised": "10.0.0.2:9092",
            "planned": "127.0.0.10:9092",
        }
    ]


async def test_a_broker_advertising_nothing_on_the_client_listener_is_a_mismatch(controller, caplog):
    caplog.set_level(logging.WARNING, logger="kafka_xds")
    controller.submit(synced(broker(3)))
    await controller.rebuild()
    [logged] = _logged(caplog, "advertises another address than its plan")
    assert (logged["broker"], logged["advertised"]) == (3, None)


async def test_a_mismatch_that_changes_is_logged_again(controller, caplog):
    caplog.set_level(logging.WARNING, logger="kafka_xds")
    controller.submit(synced(broker(2, client="10.0.0.2:9092")))
    await controller.rebuild()
    controller.submit(synced(broker(2, client="10.0.0.2:19092")))
    await controller.rebuild()
    logged = _logged(caplog, "advertises another address than its plan")
    assert [entry["advertised"] for entry in logged] == ["10.0.0.2:9092", "10.0.0.2:19092"]


async def test_a_resolved_mismatch_is_logged(controller, caplog):
    caplog.set_level(logging.INFO, logger="kafka_xds")
    controller.submit(synced(broker(2, client="10.0.0.2:9092")))
    await controller.rebuild()
    controller.submit(synced(broker(2, client="127.0.0.10:9092")))
    await controller.rebuild()
    resolved = _logged(caplog, "plan mismatch resolved")
    assert resolved == [
        {"cluster": "kafka-a", "broker": 2, "listener": "CLIENT", "planned": "127.0.0.10:9092"}
    ]


async def test_a_mismatched_broker_that_leaves_is_not_called_resolved(controller, caplog):
    caplog.set_level(logging.INFO, logger="kafka_xds")
    controller.submit(synced(broker(1, client="127.0.0.10:9091"), broker(2, client="10.0.0.2:9092")))
    await controller.rebuild()
    controller.submit(synced(broker(1, client="127.0.0.10:9091")))
    await controller.rebuild()
    assert _logged(caplog, "plan mismatch resolved") == []
