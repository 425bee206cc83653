"""KRaft Metadata answers are checked like every other source's registrations: a bad broker is skipped."""

from __future__ import annotations

import logging

import pytest

from tests.unit.test_kraft_source import Harness, meta
from xds.kafka.metadata import MetadataError, decode_metadata
from xds.pipeline.topology import SourceState


async def test_brokers_with_a_bad_port_or_host_are_skipped_and_the_others_followed(caplog):
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta(
        (1, "10.1.0.1", 9094),
        (2, "10.1.0.2", -1),
        (3, "10.1.0.3", 70000),
        (4, "not a host!", 9094),
        (5, "", 9094),
    )
    assert await h.poll()
    assert h.current.state is SourceState.SYNCED
    assert h.endpoints() == {1: "10.1.0.1:9094"}
    reasons = {skip.broker_id: skip.reason for skip in h.current.skipped}
    assert set(reasons) == {2, 3, 4, 5}
    assert "port -1" in reasons[2] and "1..65535" in reasons[2]
    assert "port 70000" in reasons[3]
    assert "'not a host!'" in reasons[4] and "IP address or a DNS name" in reasons[4]
    logged = [r for r in caplog.records if r.getMessage().startswith("broker skipped")]
    assert sorted(r.__dict__["fields"]["broker"] for r in logged) == [2, 3, 4, 5]
    assert all(r.levelno == logging.ERROR for r in logged)

    await h.poll()  # the same answer again: reported once, not on every poll
    assert len([r for r in caplog.records if r.getMessage().startswith("broker skipped")]) == 4


async def test_a_skipped_broker_is_not_asked_for_metadata():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094), (2, "10.1.0.2", -1))
    await h.poll()
    h.client.answers.clear()  # every server refuses now: the learned ones are tried too
    await h.poll()
    assert "10.1.0.1:9094" in h.client.asked
    assert all(not asked.endswith(":-1") for asked in h.client.asked)


async def test_a_broker_fixed_in_a_later_answer_joins():
    h = Harness()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094), (2, "10.1.0.2", 0))
    await h.poll()
    h.client.answers["10.0.0.1:9094"] = meta((1, "10.1.0.1", 9094), (2, "10.1.0.2", 9094))
    await h.poll()
    assert h.endpoints() == {1: "10.1.0.1:9094", 2: "10.1.0.2:9094"}
    assert h.current.skipped == ()


@pytest.mark.parametrize(
    "answer",
    [
        {"brokers": [], "controller_id": "x"},
        {"brokers": [], "controller_id": None, "cluster_id": 7},
        {"brokers": [{"node_id": 1, "host": "h", "port": 1, "rack": 5}]},
        {"brokers": [{"node_id": 1, "host": 5, "port": 1}]},
        {"brokers": None},
        {"brokers": [None]},
    ],
)
def test_decode_metadata_raises_only_metadata_error(answer):
    with pytest.raises(MetadataError):
        decode_metadata(answer)
