"""Failpoints: off by default, parse errors name the entry, raise / exit fire on the configured hit only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from v6_assets import failpoints
from v6_assets.failpoints import FailpointError, failpoint, parse, reload_from_env


@pytest.fixture(autouse=True)
def _reset() -> object:
    yield
    reload_from_env({})


def test_off_unless_named() -> None:
    assert reload_from_env({}) == {}
    for _ in range(3):
        failpoint("delta_write")  # nothing configured: no effect, however often it is passed
    active = reload_from_env({"V6_FAILPOINTS": "other:raise@*"})
    assert active == {"other": failpoints.FailpointSpec("other", "raise", None)}
    for _ in range(3):
        failpoint("delta_write")  # not named: no effect
    with pytest.raises(FailpointError, match="failpoint other fired \\(hit 1"):
        failpoint("other")  # the one that is named does fire: the configuration above is live
    assert failpoints._hits == {"other": 1}  # passes of unnamed failpoints are not even counted


def test_raise_fires_on_the_configured_hit_only() -> None:
    reload_from_env({"V6_FAILPOINTS": "delta_write:raise@3"})
    failpoint("delta_write")
    failpoint("delta_write")
    with pytest.raises(FailpointError, match="delta_write fired \\(hit 3"):
        failpoint("delta_write")
    failpoint("delta_write")  # hit 4: passes again


def test_every_hit_with_star() -> None:
    reload_from_env({"V6_FAILPOINTS": "a:raise@*, b:raise"})
    for _ in range(3):
        with pytest.raises(FailpointError):
            failpoint("a")


@pytest.mark.parametrize("raw", ["nocolon", "x:explode", ":raise", "x:raise@0", "x:raise@two"])
def test_bad_values_name_the_entry(raw: str) -> None:
    with pytest.raises(ValueError, match="V6_FAILPOINTS"):
        parse(raw)


def test_exit_ends_the_process_like_kill_9() -> None:
    code = "from v6_assets.failpoints import failpoint\nfailpoint('x')\nprint('survived')"
    env = {"V6_FAILPOINTS": "x:exit", "PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == failpoints.EXIT_CODE
    assert "survived" not in done.stdout
