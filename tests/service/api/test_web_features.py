"""The page's Features view in a real browser against the real service with an atlas: a grid of
every feature map's strongest projection, a map's entries opened from the keyboard, an entry's
image opened in Visualise at that layer and map, and a phone screen in dark mode."""

from __future__ import annotations

import pytest

from tests.browser import axe_violations, running_service
from tests.servers import served_checkpoints
from tests.service.api.test_web_page import DATA_PNG, KEY, browser, visit  # noqa: F401
from training.__main__ import main

pytestmark = pytest.mark.browser
LAYERS = (1, 3, 4)


@pytest.fixture(scope="module")
def service(checkpoint_dir, tmp_path_factory):
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path_factory.mktemp("checkpoints"))
    argv = ["atlas", "--network", "cnn", "--checkpoints", str(checkpoints), "--no-progress"]
    assert main([*argv, "--layers", ",".join(map(str, LAYERS))]) == 0
    env = {
        "UNCONV_CHECKPOINT_DIR": str(checkpoints),
        "UNCONV_NETWORKS": "none",
        "UNCONV_API_KEY": KEY,
        "UNCONV_LOG_LEVEL": "warning",
    }
    log = tmp_path_factory.mktemp("service") / "service.log"
    with running_service(env, log) as url:
        yield url


def test_features_grid_a_map_and_its_item_in_visualise(visit):  # noqa: F811
    from playwright.sync_api import expect

    v = visit()
    page = v.page
    page.get_by_role("tab", name="Features").click()
    expect(page.locator("#feat-network")).to_have_value("cnn")
    expect(page.locator("#feat-layer")).to_have_value("3")  # the middle one: 4 maps
    cells = page.locator("#feat-grid button")
    expect(cells).to_have_count(4)
    expect(page.locator("#feat-grid img[src^='data:image/png']")).to_have_count(4)
    page.locator("#feat-layer").select_option("4")  # 8 maps
    expect(page.locator("#feat-grid img[src^='data:image/png']")).to_have_count(8)
    cells.nth(5).focus()
    page.keyboard.press("Enter")
    entries = page.locator("#feat-entries li")
    expect(entries).to_have_count(9)
    expect(page.locator("#feat-detail-title")).to_contain_text("Feature map 5 of layer 4")
    expect(entries.first.locator("img").first).to_have_attribute("src", DATA_PNG)
    value = entries.first.locator(".note").inner_text().rsplit("· ", 1)[1]
    v.shoot("features")
    entries.first.get_by_role("button").click()
    expect(page.get_by_role("tab", name="Visualise")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#vis-layer")).to_have_value("4")
    expect(page.locator("#vis-channel")).to_have_value("5")
    expect(page.locator("#vis-k")).to_have_value("1")
    rows = page.locator("#vis-activations tbody tr")
    expect(rows).to_have_count(1)
    # the visualiser finds the entry's activation in the entry's item
    expect(rows.first.locator("td").nth(1)).to_have_text("5")
    expect(rows.first.locator("td").nth(4)).to_have_text(value)
    assert v.errors == []


def test_features_on_a_phone_in_dark_mode(visit):  # noqa: F811
    from playwright.sync_api import expect

    v = visit(width=390, scheme="dark")
    page = v.page
    page.get_by_role("tab", name="Features").click()
    page.locator("#feat-grid button").first.click()
    expect(page.locator("#feat-entries li")).to_have_count(9)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"Features is {width} px wide"
    assert axe_violations(page) == []
    v.shoot("phone-dark-features")
    assert v.errors == []
