"""Broker rack → named dimensions: the pattern, the explicit map, and what stays unplaced."""

from __future__ import annotations

import pytest

from xds.health.dimensions import DimensionSettings, place
from xds.health.state import BrokerState

PATTERN = r"(?P<cluster>[^.]+)\.(?P<zone>.+)"


def test_pattern_groups_name_the_dimensions_in_order() -> None:
    assert DimensionSettings(PATTERN).dimensions == ("cluster", "zone")


def test_pattern_maps_a_rack_to_values() -> None:
    assert DimensionSettings(PATTERN).locate(BrokerState(1, "k8s-1.az-a")) == ("k8s-1", "az-a")


def test_rack_that_does_not_match_is_unplaced() -> None:
    assert DimensionSettings(PATTERN).locate(BrokerState(1, "ec2")) is None


def test_pattern_must_match_the_whole_rack() -> None:
    assert DimensionSettings(r"(?P<zone>az-[a-c])").locate(BrokerState(1, "az-a-extra")) is None


def test_broker_without_rack_and_entry_is_unplaced() -> None:
    assert DimensionSettings(PATTERN).locate(BrokerState(1)) is None


def test_explicit_entry_places_a_broker_without_rack() -> None:
    settings = DimensionSettings(PATTERN, {7: {"cluster": "vm", "zone": "az-b"}})
    assert settings.locate(BrokerState(7)) == ("vm", "az-b")


def test_explicit_entry_wins_over_the_rack() -> None:
    settings = DimensionSettings(PATTERN, {7: {"cluster": "vm", "zone": "az-b"}})
    assert settings.locate(BrokerState(7, "k8s-1.az-a")) == ("vm", "az-b")


def test_explicit_only_takes_dimensions_from_entries() -> None:
    settings = DimensionSettings(explicit={1: {"zone": "a"}, 2: {"zone": "b"}})
    assert settings.dimensions == ("zone",)
    assert settings.locate(BrokerState(3, "a")) is None


def test_optional_group_that_matched_nothing_is_unplaced() -> None:
    settings = DimensionSettings(r"(?P<cluster>[^.]*)\.?(?P<zone>z\d)?")
    assert settings.locate(BrokerState(1, "k8s-1")) is None


def test_pattern_that_does_not_compile_is_rejected() -> None:
    with pytest.raises(ValueError, match="does not compile"):
        DimensionSettings("(?P<zone>")


def test_pattern_without_named_group_is_rejected() -> None:
    with pytest.raises(ValueError, match="no named group"):
        DimensionSettings(r"(k8s-\d)\.(.+)")


def test_explicit_entry_must_name_the_pattern_dimensions() -> None:
    with pytest.raises(ValueError, match="must name exactly"):
        DimensionSettings(PATTERN, {7: {"zone": "az-a"}})


def test_explicit_entry_values_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        DimensionSettings(PATTERN, {7: {"cluster": "", "zone": "az-a"}})


def test_settings_need_a_pattern_or_explicit_map() -> None:
    with pytest.raises(ValueError, match="pattern, an explicit map"):
        DimensionSettings()


def test_place_splits_brokers_into_located_and_unplaced() -> None:
    placement = place(DimensionSettings(PATTERN), [BrokerState(1, "k8s-1.az-a"), BrokerState(2, "ec2")])
    assert dict(placement.located) == {1: ("k8s-1", "az-a")}
    assert placement.unplaced == frozenset({2})


def test_values_lists_each_dimension_value_once_sorted() -> None:
    brokers = [BrokerState(b, f"k8s-{b % 2}.az-{'abc'[b % 3]}") for b in range(6)]
    placement = place(DimensionSettings(PATTERN), brokers)
    assert placement.values("zone") == ("az-a", "az-b", "az-c")
    assert placement.values("cluster", excluding=[1, 3, 5]) == ("k8s-0",)


def test_settings_are_frozen() -> None:
    settings = DimensionSettings(PATTERN, {1: {"cluster": "a", "zone": "b"}})
    with pytest.raises(AttributeError):
        settings.pattern = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.explicit[2] = {}  # type: ignore[index]
