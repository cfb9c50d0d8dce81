"""Change environment variables for the code under test without rewriting the process's C environment.

Why: glibc's ``setenv``/``unsetenv`` are not thread-safe. ``os.environ[k] = v`` (and so ``monkeypatch.setenv``)
calls ``setenv``, which reallocates the C ``environ`` array while native thread pools that the suite's process
holds (tokio workers of deltalake, polars, grpc, jemalloc) may read it with ``getenv``: a use-after-free. That race
was the suite's segfault (reproduced in isolation: polars queries in 4 threads + ``os.environ`` writes in the main
thread crash within seconds). Our code and Dagster read configuration through ``os.environ`` / ``os.getenv``, so
the tests change only Python's mapping; a subprocess that must see a change gets ``env=dict(os.environ)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest


def set_env(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    """``os.environ[key] = value`` for Python readers only, undone with the monkeypatch."""
    monkeypatch.setitem(os.environ._data, os.environ.encodekey(key), os.environ.encodevalue(value))  # type: ignore[attr-defined]


def del_env(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """``del os.environ[key]`` (when present) for Python readers only, undone with the monkeypatch."""
    monkeypatch.delitem(os.environ._data, os.environ.encodekey(key), raising=False)  # type: ignore[attr-defined]


def set_envs(monkeypatch: pytest.MonkeyPatch, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        set_env(monkeypatch, key, value)
