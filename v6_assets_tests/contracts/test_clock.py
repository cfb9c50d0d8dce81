"""One reading of now: the wall clock, shifted only for simulated runs; time-machine pins it in-process."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from v6_assets.contracts.clock import OFFSET_VAR, ClockConfigError, clock_offset_s, fixed_offset_clock, utc_now
from v6_assets_tests.pyenv import del_env, set_env

PINNED = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def test_time_machine_pins_utc_now() -> None:
    with time_machine.travel(PINNED, tick=False):
        assert utc_now() == PINNED
        assert utc_now().tzinfo is UTC


def test_offset_applies_only_to_simulated_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, OFFSET_VAR, "-86400")
    del_env(monkeypatch, "V6_DEMO")
    with pytest.raises(ClockConfigError, match="V6_DEMO=1"):
        utc_now()
    set_env(monkeypatch, "V6_DEMO", "1")
    with time_machine.travel(PINNED, tick=False):
        assert utc_now() == datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["soon", "nan", "inf"])
def test_a_bad_offset_is_a_clear_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(ClockConfigError, match=OFFSET_VAR):
        clock_offset_s({OFFSET_VAR: raw, "V6_DEMO": "1"})


def test_unset_or_empty_is_no_offset() -> None:
    assert clock_offset_s({}) == 0.0
    assert clock_offset_s({OFFSET_VAR: " "}) == 0.0


def test_fixed_offset_clock_reads_the_offset_once_and_agrees_with_utc_now(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, "V6_DEMO", "1")
    set_env(monkeypatch, OFFSET_VAR, "-3600")
    clock = fixed_offset_clock()
    with time_machine.travel(PINNED, tick=False):
        assert clock() == utc_now() == datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
        set_env(monkeypatch, OFFSET_VAR, "0")  # read at creation: a later change is not seen by this clock
        assert clock() == datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
        assert fixed_offset_clock()() == PINNED
    set_env(monkeypatch, OFFSET_VAR, "nan")
    with pytest.raises(ClockConfigError):
        fixed_offset_clock()  # a bad value fails at creation (the streamer's start), not on the first event
