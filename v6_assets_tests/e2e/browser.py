"""Debian's chromium driven by playwright (never a downloaded browser), and where screenshots go.

``V6_CHROMIUM`` overrides the binary (default ``/usr/bin/chromium``, installed by the Makefile/CI with apt).
Screenshots land in ``test-artifacts/e2e/`` (gitignored) so CI can keep them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from v6_assets_tests.e2e.harness import PROJECT_ROOT

CHROMIUM = Path(os.environ.get("V6_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS_DIR = PROJECT_ROOT / "test-artifacts" / "e2e"
VIEWPORT = {"width": 1600, "height": 1000}


class BrowserMissingError(RuntimeError):
    """Debian's chromium is not installed (apt-get install chromium); the browser test cannot run."""


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        raise BrowserMissingError(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) or set V6_CHROMIUM"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def page() -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        pg = context.new_page()
        try:
            yield pg
        except BaseException:
            # what the browser showed when the test gave up: the first thing to look at in a failure
            with contextlib.suppress(Exception):
                screenshot(pg, "failure")
            raise
        finally:
            context.close()


def screenshot(pg: Page, name: str) -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    return path
