"""Screenshots of the web page for the README, taken in Debian's Chromium from a running service.

Usage: ``python -m bench.pictures.page_screenshots --url http://127.0.0.1:8000 [--out docs/images]``
(needs ``apt-get install chromium`` and Playwright from the dev extra; the service should serve
trained checkpoints: ``python -m training defaults``). ``--checkpoints``, the directory the
service serves, gives each picture's record in ``docs/images/provenance.json``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from playwright.sync_api import expect, sync_playwright
from unconv_client import UnconvClient

from . import provenance

PICTURES = ("page-visualise.png", "page-reconstruct.png", "page-generate-phone-dark.png")

# two strokes of a 4, in fractions of the drawing canvas
STROKES = [
    [(0.3, 0.15), (0.22, 0.55), (0.7, 0.55)],
    [(0.6, 0.2), (0.58, 0.88)],
]


def _draw(page) -> None:
    box = page.locator("#rec-canvas").bounding_box()
    for stroke in STROKES:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=8)
        page.mouse.up()


def _visit(browser, url: str, width: int, scheme: str):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.goto(url)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument(
        "--checkpoints", type=Path, default=Path("checkpoints"), help="the directory it serves"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    _screenshots(args.url, args.out)
    with UnconvClient(args.url) as client:
        models = provenance.served_records(client.models(), args.checkpoints)
    # the page shows every model the service lists: its networks, every AE and VAE, the VAEs
    pictures = {picture: sorted(models) for picture in PICTURES}
    provenance.record(args.out, pictures, "python -m bench.pictures.page_screenshots", models)
    print(f"wrote the page's screenshots to {args.out}")


def _screenshots(url: str, out: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        page = _visit(browser, url + "/", 1200, "light")
        expect(page.locator("#vis-projection")).to_have_attribute("src", re.compile("^data:"))
        expect(page.locator("#vis-strip img:visible")).to_have_count(
            page.locator("#vis-strip li").count(), timeout=60_000
        )
        page.locator("#vis-activations tbody tr").first.hover()
        page.screenshot(path=out / "page-visualise.png")
        page.get_by_role("tab", name="Reconstruct").click()
        _draw(page)
        expect(page.locator(".card img:visible")).not_to_have_count(0)
        page.wait_for_timeout(1000)
        page.screenshot(path=out / "page-reconstruct.png")
        page = _visit(browser, url + "/#generate", 390, "dark")
        expect(page.locator("#gen-strip img").first).to_be_visible()
        page.screenshot(path=out / "page-generate-phone-dark.png", full_page=False)
        browser.close()


if __name__ == "__main__":
    main()
