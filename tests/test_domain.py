"""Dates as the Flashback backend writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from flashback_contract.domain import format_iso, iso


def test_dates_are_written_in_utc_with_milliseconds() -> None:
    moment = datetime(2026, 2, 1, 9, 0, 0, 123456, tzinfo=UTC)
    assert iso(moment) == "2026-02-01T09:00:00.123Z"
    assert format_iso(moment) == "2026-02-01T09:00:00.123Z"  # the same, not remembered


def test_the_same_instant_in_another_zone_is_written_alike_and_others_not() -> None:
    utc = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    assert iso(utc) == "2026-02-01T09:00:00.000Z"
    assert iso(paris) == "2026-02-01T09:00:00.000Z"  # after the UTC one is remembered
    later = datetime(2026, 2, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    assert iso(later) == "2026-02-01T09:00:00.000Z"
    assert iso(later + timedelta(milliseconds=1)) == "2026-02-01T09:00:00.001Z"
