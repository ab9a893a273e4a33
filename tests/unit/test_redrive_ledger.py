"""The redrive ledger (last state per failure, attempts, the lock) and --since."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bridge.cli.failures import BadInput, parse_since
from bridge.cli.redriveledger import FAILED, IN_FLIGHT, REDRIVEN, Ledger, LedgerBusy


def test_the_last_step_wins_and_in_flight_steps_count_attempts(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "m.jsonl.redrive")
    ledger.lock()
    ledger.write("a", IN_FLIGHT)
    ledger.write("a", FAILED, "function error")
    ledger.write("a", IN_FLIGHT)
    ledger.write("a", REDRIVEN)
    ledger.write("b", IN_FLIGHT)
    ledger.close()
    # A line torn by a crash (no such write is made whole, but a disk may lose it).
    with (tmp_path / "m.jsonl.redrive").open("ab") as file:
        file.write(b'{"id": "c", "sta')
    entries = Ledger(tmp_path / "m.jsonl.redrive").read()
    assert set(entries) == {"a", "b"}
    assert (entries["a"].state, entries["a"].attempts, entries["a"].error) == (REDRIVEN, 2, None)
    assert (entries["b"].state, entries["b"].attempts) == (IN_FLIGHT, 1)
    assert (tmp_path / "m.jsonl.redrive").stat().st_mode & 0o777 == 0o600


def test_a_second_redrive_cannot_take_the_ledger(tmp_path: Path) -> None:
    first, second = Ledger(tmp_path / "l"), Ledger(tmp_path / "l")
    first.lock()
    with pytest.raises(LedgerBusy, match="another redrive is running"):
        second.lock()
    first.close()
    second.lock()
    second.close()


def test_since_takes_durations_and_iso_times() -> None:
    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    assert parse_since("2h", now) == dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
    assert parse_since("90s", now) == dt.datetime(2026, 12, 7, 11, 58, 30, tzinfo=dt.UTC)
    assert parse_since("1d", now) == dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    assert parse_since("2026-12-07T06:00:00Z", now) == dt.datetime(2026, 12, 7, 6, tzinfo=dt.UTC)
    assert parse_since("2026-12-07", now) == dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    assert parse_since(None, now) is None
    with pytest.raises(BadInput, match="give an ISO time"):
        parse_since("2 hours", now)


@pytest.mark.parametrize("text", ["800000d", "99999999999d", "1" * 400 + "s"])
def test_a_duration_reaching_before_the_year_1_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="before the year 1"):
        parse_since(text)
