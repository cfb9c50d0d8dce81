"""Partitions start at V6_PARTITIONS_START (README) and the demo's at its first seeded session (issue 14 point 4)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from v6_assets.defs.partitions import build_trading_day_partitions, partitions_start
from v6_assets.demo import demo_environment
from v6_assets_tests.pyenv import del_env, set_env


def test_start_from_the_variable_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    del_env(monkeypatch, "V6_PARTITIONS_START")
    assert partitions_start() == date(2025, 1, 2)  # the README's default
    set_env(monkeypatch, "V6_PARTITIONS_START", "2026-11-09")
    assert partitions_start() == date(2026, 11, 9)
    assert build_trading_day_partitions().get_first_partition_key() == "2026-11-09"
    set_env(monkeypatch, "V6_PARTITIONS_START", "Nov 9")
    with pytest.raises(ValueError, match="V6_PARTITIONS_START='Nov 9' is invalid"):
        partitions_start()


def test_the_demo_starts_its_partitions_at_the_first_seeded_session(tmp_path: Path) -> None:
    env = demo_environment(
        {"V6_PARTITIONS_START": "2025-01-02"}, tmp_path, 4100, 61, partitions_start=date(2026, 11, 3)
    )
    assert env["V6_PARTITIONS_START"] == "2026-11-03"
    assert "V6_PARTITIONS_START" not in demo_environment({}, tmp_path, 4100, 61)
