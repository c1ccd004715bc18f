"""The page in a real headless Chromium (Playwright): upload a photo, draw, see what the model says."""

import os
import shutil
from urllib.parse import urlsplit

import pytest

from fmnist.inference.predict import predict_files
from tests.serve.test_app import jpeg

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
# Debian's chromium: Playwright's own browser download needs the internet, which CI lacks.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: install Debian's chromium (`make test` does when run as root)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright not installed: pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A phone-width page on the server, recording every request's origin and every console error."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    page = context.new_page()
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server.url)
    # Locators, not wait_for_function: that one polls with eval(), which the page's CSP forbids.
    page.locator("#model", has_text="mlp-100").wait_for()
    yield page
    context.close()


def _own_origin_only(page, server, expected_errors: int = 0):
    """Every request went to the server itself; no console errors but the expected 4xx answers."""
    origin = urlsplit(server.url).netloc
    foreign = [u for u in page.requests if not u.startswith(("data:", "blob:")) and urlsplit(u).netloc != origin]
    assert foreign == []
    assert len(page.errors) == expected_errors and all("status of 422" in e for e in page.errors), page.errors


def test_uploading_a_photo_shows_the_predicted_class(page, server, tiny_run, tmp_path):
    photo = tmp_path / "garment.jpg"
    photo.write_bytes(jpeg(7))
    expected = predict_files(tiny_run, [photo]).predictions[0]
    page.set_input_files("#files", str(photo))
    page.wait_for_selector(".class-name", timeout=120_000)
    assert page.inner_text(".class-name") == expected.class_name
    assert f"{expected.probability:.3f}" in page.inner_text(".verdict")
    card = page.locator(".card").first
    assert card.locator(".bars li").count() == 3
    assert card.locator(".name").inner_text() == "garment.jpg"
    # The 28x28 image the model saw is shown, and it loaded.
    page.locator("#status", has_text="Classified 1 image").wait_for()
    assert card.locator(".seen").evaluate("img => img.complete && img.naturalWidth") == 28
    # Nothing wider than a phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    _own_origin_only(page, server)


def test_many_photos_and_a_bad_file(page, server, tmp_path):
    files = []
    for label in (3, 5, 7):
        files.append(tmp_path / f"g{label}.jpg")
        files[-1].write_bytes(jpeg(label))
    (tmp_path / "notes.jpg").write_text("not a picture")
    page.set_input_files("#files", [str(f) for f in files] + [str(tmp_path / "notes.jpg")])
    page.locator("#status", has_text="Classified 3 of 4 images; 1 failed.").wait_for(timeout=120_000)
    assert page.locator(".class-name").count() == 3
    assert "not an image" in page.locator(".verdict.error").inner_text()
    # The failed file's card has no image boxes (they would show broken-image icons); the others have both.
    assert page.locator(".card:has(.verdict.error) img").count() == 0
    assert page.locator(".card:not(:has(.verdict.error)) img").count() == 6
    _own_origin_only(page, server, expected_errors=1)  # the browser logs the bad file's 422


def test_drawing_is_classified(page, server):
    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.down()
    for fx, fy in ((0.7, 0.2), (0.7, 0.8), (0.3, 0.8), (0.3, 0.2)):
        page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=8)
    page.mouse.up()
    page.click("#classify-drawing")
    page.wait_for_selector(".class-name", timeout=120_000)
    assert page.locator(".card .name").first.inner_text() == "drawing-1.png"
    _own_origin_only(page, server)


def test_keyboard_reaches_every_control(page):
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    assert {"files", "camera", "classify-drawing", "clear"} <= set(reached)
    assert page.get_attribute("#camera", "capture") == "environment"


def test_the_focused_upload_control_is_the_one_outlined(page):
    def outlined():
        return [page.locator(f"label[for={i}]").evaluate("l => getComputedStyle(l).outlineStyle") for i in
                ("files", "camera")]

    for _ in range(8):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id")
        if focused in ("files", "camera"):
            assert outlined() == ["solid" if focused == i else "none" for i in ("files", "camera")], focused


def test_a_dropped_file_that_is_no_image_gets_its_card(page, server):
    # A drop as the browser delivers it: a DataTransfer holding a text file.
    page.evaluate("""() => {
        const t = new DataTransfer();
        t.items.add(new File(["not a picture"], "notes.txt", { type: "text/plain" }));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: t, bubbles: true }));
    }""")
    page.locator("#status", has_text="Could not use the file.").wait_for(timeout=60_000)
    assert "not an image" in page.locator(".verdict.error").inner_text()
    assert page.locator(".card .name").first.inner_text() == "notes.txt"
    _own_origin_only(page, server, expected_errors=1)


def test_progress_counts_what_is_left_and_a_lost_connection_is_not_the_files_fault(page, tmp_path):
    held = []
    page.route("**/api/predict*", lambda route: held.append(route))  # unanswered until aborted below
    files = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for f in files:
        f.write_bytes(jpeg(3))
    page.set_input_files("#files", [str(f) for f in files])
    page.locator("#status", has_text="Classifying\u2026 2 of 2 left.").wait_for(timeout=30_000)
    while len(held) < 2:
        page.wait_for_timeout(50)
    for route in held:
        route.abort("connectionrefused")
    page.locator("#status", has_text="Could not use any of the 2 files.").wait_for(timeout=30_000)
    for text in page.locator(".verdict.error").all_inner_texts():
        assert text.startswith("Could not reach the server") and "this file" not in text.split(";")[0], text
    assert page.locator(".card img").count() == 0


def test_api_docs_render_from_the_servers_own_files(browser, server):
    """/docs: Swagger UI from the server itself, within its content policy, listing the API."""
    context = browser.new_context()
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "docs")
    page.locator(".opblock-summary-path", has_text="/api/predict").wait_for(timeout=60_000)
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("fmnist")
    origin = urlsplit(server.url).netloc
    assert [u for u in requests if not u.startswith("data:") and urlsplit(u).netloc != origin] == []
    assert errors == []
    context.close()


def test_the_page_shows_as_many_classes_as_the_server_was_told(browser, tiny_run, tmp_path):
    from tests.serve.conftest import Server

    server = Server(tiny_run, "--top-k", "5")
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(server.url)
        photo = tmp_path / "garment.jpg"
        photo.write_bytes(jpeg(7))
        page.set_input_files("#files", str(photo))
        page.wait_for_selector(".class-name", timeout=120_000)
        assert page.locator(".card").first.locator(".bars li").count() == 5
        context.close()
    finally:
        server.stop()
