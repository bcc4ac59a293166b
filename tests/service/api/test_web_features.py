"""The page's Features view in a real browser against the real service with an atlas: a grid of
every feature map's strongest projection, a map's entries opened from the keyboard, an entry's
image opened in Visualise at that layer and map, and a phone screen in dark mode."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from devkit.fake_weights import write_alexnet_weights
from tests.browser import axe_violations
from tests.servers import running_service, served_checkpoints
from tests.service.api.test_web_page import DATA_PNG, KEY, browser, visit  # noqa: F401
from training.__main__ import main

pytestmark = pytest.mark.browser
LAYERS = (1, 3, 4)


@pytest.fixture(scope="module")
def service(checkpoint_dir, hub_dir, tmp_path_factory):
    """The service (trusting conftest's random AlexNet weights) with two atlases: the cnn's over
    the held-out digits, and AlexNet's over a folder of three small images."""
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path_factory.mktemp("checkpoints"))
    argv = ["atlas", "--checkpoints", str(checkpoints), "--no-progress"]
    assert main([*argv, "--network", "cnn", "--layers", ",".join(map(str, LAYERS))]) == 0
    folder = tmp_path_factory.mktemp("images")
    for i, size in enumerate([(40, 30), (20, 50), (64, 64)]):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (*size, 3), np.uint8)).save(
            folder / f"{i}.png"
        )
    weights = write_alexnet_weights(hub_dir)
    alexnet = ["--network", "alexnet", "--data", str(folder), "--weights", str(weights)]
    assert main([*argv, *alexnet, "--layers", "1,3"]) == 0
    env = {
        "UNCONV_NETWORKS": "alexnet",
        "TORCH_HOME": str(hub_dir),
        "UNCONV_API_KEY": KEY,
        "UNCONV_LOG_LEVEL": "warning",
    }
    log = tmp_path_factory.mktemp("service") / "service.log"
    with running_service(checkpoints, log, module="devkit.fake_weights", **env) as (_, url):
        yield url


def test_features_grid_a_map_and_its_item_in_visualise(visit):  # noqa: F811
    from playwright.sync_api import expect

    v = visit()
    page = v.page
    page.get_by_role("tab", name="Features").click()
    page.locator("#feat-network").select_option("cnn")
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
    page.locator("#feat-network").select_option("cnn")
    page.locator("#feat-grid button").first.click()
    expect(page.locator("#feat-entries li")).to_have_count(9)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"Features is {width} px wide"
    assert axe_violations(page) == []
    v.shoot("phone-dark-features")
    assert v.errors == []


def test_features_of_alexnet_over_a_folder_of_images(visit):  # noqa: F811
    from playwright.sync_api import expect

    v = visit()
    page = v.page
    page.get_by_role("tab", name="Features").click()
    page.locator("#feat-network").select_option("alexnet")
    expect(page.locator("#feat-network option[value=alexnet]")).to_contain_text("3 images of")
    page.locator("#feat-layer").select_option("1")
    expect(page.locator("#feat-grid img[src^='data:image/png']")).to_have_count(64)
    page.locator("#feat-grid button").nth(10).click()
    entries = page.locator("#feat-entries li")
    expect(entries).to_have_count(3)  # three images: three entries a map
    expect(entries.first.locator("img").first).to_have_attribute("src", DATA_PNG)
    v.shoot("features-alexnet")
    assert v.errors == []
