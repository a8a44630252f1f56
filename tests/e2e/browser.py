"""A real headless Chromium (Debian's `chromium`) driven by Playwright, for the dashboard's
browser tests and benches/bench_dashboard.py.

Playwright's own browser download needs a CDN this project cannot rely on, so the browser
is the system one: `$REVOPIPE_CHROMIUM`, else `chromium` on the PATH, else
`/usr/bin/chromium` (`apt-get install chromium`; .ci/run installs it). Without it the
tests skip, except under `CI=true`, where a missing browser fails them: CI must not pass
by skipping what the issue requires to be shown.

Screenshots go to `<repo>/artifacts/` (gitignored), so a person can look at what the
tests saw; each path is printed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
# A sandbox needs user namespaces or a setuid helper, which containers and CI runners
# often lack; the pages loaded are our own, on loopback.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]

try:  # Playwright is a test dependency; the skip below explains a missing one.
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright
except ImportError:  # pragma: no cover - exercised only where Playwright is absent
    sync_playwright = None  # type: ignore[assignment]


def chromium_path() -> str | None:
    """The system Chromium to drive, or None when there is none."""
    explicit = os.environ.get("REVOPIPE_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return DEBIAN_CHROMIUM if os.access(DEBIAN_CHROMIUM, os.X_OK) else None


def require_chromium() -> str:
    """The browser's path; skips the test without one (fails it under CI=true)."""
    path = chromium_path()
    problem = None
    if sync_playwright is None:
        problem = "the `playwright` Python package is missing (pip install -e '.[test]')"
    elif path is None:
        problem = (
            "no system Chromium: install Debian's `chromium` (apt-get install chromium) or "
            "set REVOPIPE_CHROMIUM; Playwright's own download is not used"
        )
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem + "; CI must install it (.ci/run does)")
        pytest.skip(problem)
    assert path is not None
    return path


def launch(p: Playwright) -> Browser:
    return p.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)


@pytest.fixture(name="browser", scope="module")
def browser_fixture() -> Iterator[Browser]:
    """One headless Chromium for the module's tests."""
    require_chromium()
    with sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


@dataclass
class PageErrors:
    """Every console error and uncaught exception of a page, for a "no errors" check."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"console.error: {msg.text} ({msg.location})")


def open_page(
    browser: Browser, url: str, *, width: int = 1600, height: int = 1000
) -> tuple[Page, PageErrors]:
    """A new tab on `url` with its errors collected from the first byte."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = PageErrors()
    errors.attach(page)
    page.goto(url, wait_until="load")
    return page, errors


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as `artifacts/dashboard-<name>.png`; prints the path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
