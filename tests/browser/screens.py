"""Screenshots of every page, and the checks each page gets in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from tests.e2e.harness import ROOT

SCREENSHOTS = ROOT / "test-output" / "screenshots"
# A rendered page has text (anti-aliased: many shades) on a background; a blank or failed one has
# one or two colours.
MIN_COLOURS = 16


def distinct_colours(png: Path) -> int:
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    return (1 << 16) if colours is None else len(colours)


def screenshot(page: Any, name: str) -> Path:
    """Save the whole page as test-output/screenshots/NAME.png and check that it is not blank."""
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    colours = distinct_colours(path)
    assert colours > MIN_COLOURS, f"{path} looks blank ({colours} colours)"
    return path


# Run in the page: every visible form control has a label the browser binds to it.
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]):not([hidden]), select, textarea')]
    .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label')).map(el => el.name)"""


def check_page(page: Any, name: str) -> Path:
    """A gateway page: labelled inputs, a phone-ready viewport, our stylesheet applied, and its screenshot."""
    assert page.evaluate(UNLABELLED) == [], f"{name}: inputs without a label"
    assert page.locator('meta[name=viewport]').count() == 1
    # The stylesheet loaded under the CSP (an unstyled page would have a white body).
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert page.locator("h1").count() == 1
    return screenshot(page, name)
