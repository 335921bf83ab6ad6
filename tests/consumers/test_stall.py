"""``consumers.stall.held_back`` (no broker) and the transaction-timeout setting it is bounded by."""

from __future__ import annotations

import pytest

from consumers.stall import HeldLso, held_back
from infra.errors import ConfigurationError
from infra.settings import Settings


def test_a_hold_is_an_lso_below_the_high_watermark_and_keeps_its_start_while_the_lso_stays() -> None:
    first = held_back({0: 5, 1: 9}, {0: 8, 1: 9}, {}, now=100.0)
    assert first == {0: HeldLso(0, 5, 8, 100.0)}, "partition 1 is stable to its end: nothing held"
    assert first[0].open_records == 3 and first[0].held_seconds(now=104.0) == 4.0
    later = held_back({0: 5}, {0: 12}, first, now=106.0)
    assert later[0].since == 100.0 and later[0].open_records == 7, "the same LSO: the same hold, longer"
    moved = held_back({0: 8}, {0: 12}, later, now=107.0)
    assert moved[0].since == 107.0, "the LSO moved on: another transaction holds it now"
    assert held_back({0: 12}, {0: 12}, moved, now=108.0) == {}
    assert held_back({0: 12}, {}, moved, now=108.0) == {}, "no high watermark known yet: not held"


def test_the_transaction_timeout_is_a_setting_in_seconds_within_the_brokers_cap() -> None:
    assert Settings().transaction_timeout == 30.0
    assert Settings.load(environ={"VECTORIZER_TRANSACTION_TIMEOUT": "5"}).transaction_timeout == 5.0
    for bad in ("0.5", "901"):
        with pytest.raises(ConfigurationError, match="VECTORIZER_TRANSACTION_TIMEOUT"):
            Settings.load(environ={"VECTORIZER_TRANSACTION_TIMEOUT": bad})
