"""The web page in a real browser (Debian's Chromium through Playwright) against the real service
on loopback, with an API key set: every panel makes its pictures, errors show the API's words,
a phone-sized screen needs no sideways scrolling, axe-core finds nothing serious, and nothing
is fetched from anywhere but the service."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser import ARTEFACTS, axe_violations, launch_chromium, missing, running_service

pytestmark = pytest.mark.browser

KEY = "browser-test-key"
DATA_PNG = re.compile(r"^data:image/png;base64,")


@pytest.fixture(scope="module")
def service(checkpoint_dir, tmp_path_factory):
    env = {
        "UNCONV_CHECKPOINT_DIR": str(checkpoint_dir),
        "UNCONV_NETWORKS": "alexnet,vgg16",  # no weights: both shown unavailable, with why
        "UNCONV_API_KEY": KEY,
        "UNCONV_LOG_LEVEL": "warning",
        "TORCH_HOME": str(tmp_path_factory.mktemp("torch_home")),
    }
    log = tmp_path_factory.mktemp("service") / "service.log"
    with running_service(env, log) as url:
        yield url


@pytest.fixture(scope="module")
def api(service):
    with httpx.Client(base_url=service, headers={"X-API-Key": KEY}, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        missing("Playwright is not installed (pip install -e '.[dev]')")
    expect.set_options(timeout=30_000)  # two shared cores in CI: a slow answer is no failure
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


class Visit:
    """One browser context on the service: its page, console errors and outside requests."""

    def __init__(self, browser, service, width=1280, scheme="light", key=KEY):
        self.context = browser.new_context(
            viewport={"width": width, "height": 900}, color_scheme=scheme
        )
        self.context.set_default_timeout(30_000)
        if key:
            self.context.add_init_script(f"sessionStorage.setItem('unconv.apiKey', '{key}')")
        self.outside: list[str] = []
        self.context.route("**/*", self._only_the_service(service))
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.base = service
        self.page.goto(service + "/")

    def _only_the_service(self, service):
        def handle(route):
            if route.request.url.startswith(service + "/"):
                return route.continue_()
            self.outside.append(route.request.url)
            return route.abort()

        return handle

    def shoot(self, name: str) -> None:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=ARTEFACTS / f"{name}.png", full_page=True)


@pytest.fixture
def visit(browser, service):
    opened = []

    def open_visit(**options) -> Visit:
        opened.append(Visit(browser, service, **options))
        return opened[-1]

    yield open_visit
    for each in opened:
        each.context.close()
        assert each.outside == [], "the page fetched from outside the service"


def _models(api) -> dict[str, dict]:
    return {m["name"]: m for m in api.get("/models").json()["models"]}


def test_visualise_shows_the_projection_every_layer_and_the_kept_activations(visit, api):
    from playwright.sync_api import expect

    cnn = _models(api)["cnn"]
    v = visit()
    page = v.page
    expect(page.locator("#vis-network")).to_have_value("cnn")
    for network in ("alexnet", "vgg16"):
        expect(page.locator(f"#vis-network option[value={network}]")).to_be_disabled()
    expect(page.locator("#vis-network-note")).to_contain_text("alexnet: alexnet weights not found")
    expect(page.locator("#vis-projection")).to_have_attribute("src", DATA_PNG)
    expect(page.locator("#vis-activations tbody tr")).to_have_count(9)  # k = 9
    strip = page.locator("#vis-strip img:visible")
    expect(strip).to_have_count(len(cnn["layers"]))
    size = page.eval_on_selector("#vis-projection", "img => [img.naturalWidth, img.naturalHeight]")
    assert size == cnn["input_shape"][1:]
    page.locator("#vis-activations tbody tr").first.hover()
    expect(page.locator(".marker")).to_have_count(2)  # on the input and on the projection
    page.locator("#vis-k").focus()
    page.keyboard.press("ArrowRight")  # k = 10, with the keyboard
    expect(page.locator("#vis-activations tbody tr")).to_have_count(10)
    v.shoot("visualise")
    assert axe_violations(page) == []
    # the colour sample (meant for the ImageNet networks) and a layer chosen from the strip
    projection = page.locator("#vis-projection").get_attribute("src")
    page.get_by_role("button", name="Drawn scene: a house and a tree").click()
    expect(page.locator("#vis-projection")).not_to_have_attribute("src", projection)
    page.locator("#vis-strip button").first.click()
    expect(page.locator("#vis-layer")).to_have_value("1")
    expect(page.locator("#vis-caption")).to_contain_text("layer 1: Conv2d")
    assert v.errors == []


def test_visualise_method_choice_and_the_methods_side_by_side(visit, api):
    from playwright.sync_api import expect

    cnn = _models(api)["cnn"]
    v = visit()
    page = v.page
    projection = page.locator("#vis-projection")
    expect(projection).to_have_attribute("src", DATA_PNG)
    expect(page.locator("#vis-strip img:visible")).to_have_count(len(cnn["layers"]))
    # the last layer: at the first ReLU the methods agree (what reaches it is the kept activations)
    last = str(len(cnn["layers"]))
    page.locator("#vis-layer").select_option(last)
    expect(page.locator("#vis-caption")).to_contain_text(f"layer {last}:")
    deconvnet = projection.get_attribute("src")
    method = page.get_by_label("Method", exact=True)
    expect(method).to_have_value("deconvnet")
    method.select_option("guided_backprop")
    expect(projection).not_to_have_attribute("src", deconvnet)
    expect(page.locator("#vis-caption")).to_contain_text("Guided backpropagation")
    # the page's picture is the API's answer to the same request
    layer = page.locator("#vis-layer").input_value()
    sample = api.get("/static/samples/digit-4.png").content
    fields = {"network": "cnn", "layer": layer, "k": "9", "method": "guided_backprop"}
    answer = api.post(
        "/visualise",
        files={"file": ("digit-4.png", sample, "image/png")},
        data={**fields, "format": "json"},
    ).json()
    assert answer["method"] == "guided_backprop"
    expect(projection).to_have_attribute("src", "data:image/png;base64," + answer["image_png"])
    # the compare view, with the keyboard: the three methods of this layer side by side
    page.locator("#vis-compare").focus()
    page.keyboard.press("Space")
    expect(page.locator("#vis-strip-title")).to_have_text("Every method at this layer")
    expect(page.locator("#vis-strip img:visible")).to_have_count(3)
    expect(page.locator("#vis-strip .name")).to_have_text(
        ["Deconvnet", "Guided backpropagation", "Saliency (gradient)"]
    )
    expect(page.locator("#vis-strip button[aria-current=true]")).to_have_text(
        "Guided backpropagation"
    )
    page.locator("#vis-strip button").nth(2).click()  # study saliency above
    expect(method).to_have_value("saliency")
    expect(page.locator("#vis-caption")).to_contain_text("Saliency")
    expect(page.locator("#messages")).to_be_empty()
    v.shoot("visualise-methods")
    assert axe_violations(page) == []
    assert v.errors == []


def test_attribute_shows_four_maps_the_top_five_and_a_target_picker(visit, api):
    from playwright.sync_api import expect

    v = visit()
    page = v.page
    page.locator("#tab-visualise").focus()
    page.keyboard.press("ArrowRight")  # the tab beside Visualise, with the keyboard
    expect(page.locator("#tab-attribute")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#att-network")).to_have_value("cnn")
    methods = ("gradcam", "guided_gradcam", "integrated_gradients", "occlusion")
    for method in methods:
        expect(page.locator(f'[data-method="{method}"] img')).to_have_attribute("src", DATA_PNG)
    expect(page.locator("#att-top button")).to_have_count(5)
    # the page's map is the API's answer to the same request (the cnn starts from the 4)
    sample = api.get("/static/samples/digit-4.png").content
    fields = {"network": "cnn", "method": "occlusion", "format": "json"}
    answer = api.post("/attribute", files={"file": ("d.png", sample)}, data=fields).json()
    occlusion = page.locator('[data-method="occlusion"] img')
    expect(occlusion).to_have_attribute("src", f"data:image/png;base64,{answer['image_png']}")
    first, second = answer["top"][0]["index"], answer["top"][1]["index"]
    expect(page.locator("#att-top button").first).to_contain_text(f"class {first}:")
    expect(occlusion).to_have_attribute("alt", re.compile(f"class {first} over the input"))
    # explain the second likeliest class instead, with the keyboard
    page.locator("#att-top button").nth(1).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#att-target")).to_have_value(str(second))
    for method in methods:
        img = page.locator(f'[data-method="{method}"] img')
        expect(img).to_have_attribute("alt", re.compile(f"class {second} over the input"))
    v.shoot("attribute")
    assert axe_violations(page) == []
    assert v.errors == []


def test_reconstruct_draws_and_every_model_answers_while_drawing(visit, api):
    from playwright.sync_api import expect

    latent_size = _models(api)["vae"]["latent_size"]
    v = visit()
    page = v.page
    page.locator("#tab-visualise").focus()
    page.keyboard.press("ArrowRight")  # the tabs work with the keyboard: Attribute, then
    page.keyboard.press("ArrowRight")  # Reconstruct
    expect(page.locator("#panel-reconstruct")).to_be_visible()
    box = page.locator("#rec-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.8, steps=10)
    page.mouse.up()
    for model in ("ae", "vae"):
        expect(page.locator(f".card[data-model={model}] img")).to_have_attribute("src", DATA_PNG)
    expect(page.locator(".latent svg rect")).to_have_count(latent_size)
    v.shoot("reconstruct")
    assert axe_violations(page) == []
    assert v.errors == []
    expected = api.post(
        "/reconstruct",
        files={"file": ("broken.png", b"not an image", "image/png")},
        data={"model": "ae"},
    ).json()["detail"]
    broken = {"name": "broken.png", "mimeType": "image/png", "buffer": b"not an image"}
    page.set_input_files("#rec-file", files=[broken])
    expect(page.locator("#messages")).to_contain_text(expected)
    v.shoot("reconstruct-error")


def test_generate_grid_sliders_and_walk(visit, api):
    from playwright.sync_api import expect

    v = visit()
    page = v.page
    page.get_by_role("tab", name="Generate").click()
    grid = page.locator("#gen-grid button")
    expect(grid).to_have_count(16)
    # the grid is what the API gives for the page's seed
    answer = api.post("/generate", json={"model": "vae", "n": 16, "seed": 7, "format": "json"})
    first = page.eval_on_selector("#gen-grid img", "img => img.src")
    assert first == "data:image/png;base64," + answer.json()["images"][0]["image_png"]
    expect(page.locator("#gen-label-row")).to_be_hidden()  # the model lists no labels
    edited = page.locator("#gen-edited")
    before = edited.get_attribute("src")
    page.locator("#gen-z0").focus()
    page.keyboard.press("End")  # z1 = 4
    expect(edited).not_to_have_attribute("src", before)
    expect(page.locator("#gen-strip img")).to_have_count(10)
    frame = page.locator("#gen-frame").get_attribute("src")
    page.get_by_role("button", name="Play").click()
    expect(page.locator("#gen-frame")).not_to_have_attribute("src", frame)
    page.get_by_role("button", name="Pause").click()
    v.shoot("generate")
    assert axe_violations(page) == []
    # the temperature starts at the model's own; at the contract's maximum the grid is the API's
    temperature = page.locator("#gen-temperature")
    assert float(temperature.input_value()) == _models(api)["vae"]["temperature"]
    temperature.focus()
    page.keyboard.press("End")
    hot = api.post(
        "/generate", json={"model": "vae", "n": 16, "seed": 7, "temperature": 2, "format": "json"}
    )
    expect(page.locator("#gen-grid img").first).to_have_attribute(
        "src", "data:image/png;base64," + hot.json()["images"][0]["image_png"]
    )
    page.get_by_role("button", name="New seed").click()
    expect(page.locator("#gen-grid img").first).not_to_have_attribute("src", first)
    assert v.errors == []


def test_the_api_key_is_asked_for_kept_and_sent(visit):
    from playwright.sync_api import expect

    v = visit(key=None)
    page = v.page
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#key-why")).to_contain_text("missing or wrong X-API-Key header")
    v.shoot("api-key")
    page.get_by_label("API key").fill(KEY)
    page.get_by_label("API key").press("Enter")
    expect(page.locator("#vis-projection")).to_have_attribute("src", DATA_PNG)
    assert page.evaluate("sessionStorage.getItem('unconv.apiKey')") == KEY
    # the 401 before the key was given logged one failed request, and nothing else failed
    assert [e for e in v.errors if "401" not in e] == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_screen_needs_no_sideways_scrolling(visit, scheme):
    from playwright.sync_api import expect

    v = visit(width=390, scheme=scheme)
    page = v.page
    expect(page.locator("#vis-projection")).to_have_attribute("src", DATA_PNG)
    for tab, ready in [
        ("Visualise", "#vis-strip img:visible"),
        ("Attribute", '[data-method="occlusion"] img:visible'),
        ("Reconstruct", "#rec-canvas"),
        ("Generate", "#gen-strip img"),
    ]:
        page.get_by_role("tab", name=tab).click()
        expect(page.locator(ready).first).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{tab} is {width} px wide"
        if scheme == "dark":
            assert axe_violations(page) == [], tab
        v.shoot(f"phone-{scheme}-{tab.lower()}")
    assert v.errors == []


def test_docs_render_every_operation_offline(visit, api):
    from playwright.sync_api import expect

    spec = api.get("/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    v = visit()
    page = v.page
    page.goto(v.base + "/docs")
    expect(page.locator(".opblock")).to_have_count(operations)
    icon = page.eval_on_selector("link[rel*=icon]", "link => link.href")
    assert icon.endswith("/static/favicon.svg")
    v.shoot("docs")
    page.goto(v.base + "/redoc")
    expect(page.get_by_text("Project a layer's top-k activations").first).to_be_visible()
    # ReDoc's logo from its makers' CDN is refused by the docs' Content-Security-Policy
    assert [e for e in v.errors if "Content Security Policy" not in e] == []
