"""The web page in headless Chromium (Debian's package, driven by Playwright; its own browser
download cannot work here), against the real service: upload a seed video, the verdict appears,
the chart holds one point per sampled frame, the CSV downloads, the demo banner shows, signing and
verifying work, and bad files show their error in words."""

from __future__ import annotations

import hashlib
import re

import pytest
from playwright.sync_api import expect

from preprocess_service.settings import Settings
from testing.server import running_service
from tests import media

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def service(demo_repository, tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    settings = Settings(
        model_repository=demo_repository, keys_dir=folder / "keys", database_url=f"sqlite:///{folder}/history.sqlite3"
    )
    with running_service(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_a_seed_video_gives_verdict_chart_frames_csv_and_signature(service, browser, seed_videos, tmp_path):
    video = seed_videos[1]
    page = browser.new_page(accept_downloads=True, viewport={"width": 1100, "height": 1600})
    refused: list[str] = []  # what the page's Content-Security-Policy blocked: nothing may be
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.goto(service + "/")
    assert "frame-ancestors 'none'" in page.evaluate("fetch('/').then(r => r.headers.get('content-security-policy'))")
    assert page.locator("#demo-banner").is_visible()  # shown from /readyz, before any upload
    page.set_input_files("#file", str(video))
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert page.inner_text("#verdict") in {"FAKE", "REAL"}
    assert page.locator("#rules tbody tr").count() == 2
    assert page.locator("#chart .frame-point").count() == 30  # one per sampled frame, faces or not
    assert page.locator("#chart .threshold").count() == 1
    assert page.locator("#frames canvas.display-frame").count() == 4
    assert hashlib.sha256(video.read_bytes()).hexdigest() in page.inner_text("#metadata")
    assert page.locator("#demo-banner").is_visible()

    with page.expect_download() as download:
        page.click("#download-csv")
    lines = download.value.path().read_text().splitlines()
    assert lines[0].startswith("frame_index,frame_time_sec") and len(lines) == 31

    page.click("#sign")
    # locator waits, not wait_for_function: the page's CSP (no eval) refuses Playwright's string predicates
    expect(page.locator("#signature")).to_have_value(re.compile(r"^.{100,}$"))
    page.click("#verify")
    expect(page.locator("#integrity")).to_have_text(re.compile(r"^Valid"))

    expect(page.locator("#recent")).to_contain_text(video.name, timeout=30_000)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert refused == []
    page.close()


@pytest.mark.parametrize(
    "name,content,words",
    [
        ("notes.mp4", b"these are notes, not a video " * 50, "not a video"),
        ("empty.mp4", b"", "empty"),
    ],
)
def test_a_bad_file_shows_its_error_in_words(service, browser, name, content, words):
    page = browser.new_page()
    page.goto(service + "/")
    page.set_input_files("#file", files=[{"name": name, "mimeType": "video/mp4", "buffer": content}])
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert words in page.inner_text("#error")
    assert page.locator("#result").is_hidden()
    page.close()


def test_a_video_without_a_face_says_so(service, browser, tmp_path):
    path = media.write_video(tmp_path / "coffee.mp4", [media.no_face()] * 12)
    page = browser.new_page()
    page.goto(service + "/")
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "No face was found" in page.inner_text("#error")
    page.close()
