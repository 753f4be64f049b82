"""The web page in headless Chromium (Debian's package, driven by Playwright; its own browser
download cannot work here), against the real service: upload a seed video, the verdict appears,
the chart holds one point per sampled frame, the CSV downloads, the demo banner shows, signing and
verifying work, and bad files show their error in words."""

from __future__ import annotations

import hashlib
import itertools
import re

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

from preprocess_service.settings import Settings
from testing.server import post_file, running_service
from tests import media

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def service(demo_repository, module_folder):
    folder = module_folder("page")
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
    expect(page.locator("#signature")).to_have_value(re.compile(r"^[\w-]{20,}\.[\w-]{20,}\.[\w-]{100,}$"))  # a JWS
    page.click("#verify")
    expect(page.locator("#integrity")).to_have_text(re.compile(r"^Valid"))

    expect(page.locator("#recent")).to_contain_text(video.name, timeout=30_000)
    expect(page.locator("#recent tbody tr").first).to_contain_text("untrained demo fp32")  # the model column
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


@pytest.fixture(scope="module")
def face_gap_video(tmp_path_factory):
    """A face, then a coffee cup, then the face again (10 frames each, 30 fps): the middle third has
    no face, and 30 fps gives times such as 0.3333 s that must be shown rounded."""
    folder = tmp_path_factory.mktemp("gap")
    face = media.astronaut((320, 320))
    coffee = cv2.resize(media.no_face(), (320, 320), interpolation=cv2.INTER_AREA)
    frames = [np.roll(face, 2 * i, axis=1) for i in range(10)] + [coffee] * 10
    frames += [np.roll(face, -2 * i, axis=1) for i in range(10)]
    return media.write_video(folder / "face_cup_face.mp4", frames, fps=30)


def open_result(service, browser, video):
    """A page that has analyzed ``video``, and the list its CSP refusals go to (must stay empty)."""
    page = browser.new_page(viewport={"width": 1100, "height": 1600})
    refused: list[str] = []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.goto(service + "/")
    page.set_input_files("#file", str(video))
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    return page, refused


def test_the_chart_has_time_ticks_a_gap_where_no_face_and_plain_words(service, browser, face_gap_video):
    page, refused = open_result(service, browser, face_gap_video)
    x_labels = page.locator("#chart text.x-tick-label").all_text_contents()
    assert 4 <= len(x_labels) <= 8, x_labels
    assert x_labels[0] == "0 s" and all(re.fullmatch(r"\d+(\.\d+)? s", label) for label in x_labels), x_labels
    values = [float(label[:-2]) for label in x_labels]
    steps = {round(b - a, 6) for a, b in itertools.pairwise(values)}
    assert len(steps) == 1 and steps.pop() > 0, x_labels  # evenly spaced, increasing
    assert page.locator("#chart line.x-tick").count() == len(x_labels)
    assert page.locator("#chart text.y-tick-label").all_text_contents() == ["0", "0.5", "1"]

    # the line stops at the last frame with a face and starts again at the next one: two runs, not one
    assert page.locator("#chart polyline.p-fake-line").count() == 2
    assert page.locator("#chart .frame-point.no-face").count() == 10

    tooltips = page.locator("#chart title").all_text_contents()
    captions = page.locator("#frames figcaption").all_text_contents()
    shown = page.inner_text("body")
    for text in [*tooltips, *captions, shown]:
        assert "NO_FACE" not in text
        assert not re.search(r"\d\.\d{3,} s", text), text  # 0.3333 s is shown as 0.33 s
    assert any("no face found" in text for text in tooltips)
    assert any("no face found" in text for text in captions)  # display frame 10 is the cup
    assert any("0.33 s" in text for text in captions)
    assert refused == []
    page.close()


def test_a_demo_verdict_is_badged_as_demo_not_as_a_verdict(service, browser, face_gap_video):
    page, refused = open_result(service, browser, face_gap_video)
    verdict = page.locator("#verdict")
    assert "demo" in verdict.get_attribute("class").split()
    assert not {"REAL", "FAKE"} & set(verdict.get_attribute("class").split())  # not the green/red badge
    red, green, blue = map(int, re.findall(r"\d+", verdict.evaluate("v => getComputedStyle(v).backgroundColor"))[:3])
    assert red == green == blue, (red, green, blue)  # grey
    expect(page.locator("#demo-verdict")).to_be_visible()
    expect(page.locator(".verdict-line")).to_contain_text("DEMO")
    expect(page.locator(".verdict-line")).to_contain_text("untrained demo model — meaningless")
    expect(page.locator("#uncalibrated")).to_be_hidden()  # DEMO says it all
    expect(page.locator("#recent tbody tr").first).to_contain_text("demo", timeout=30_000)
    assert refused == []
    page.close()


@pytest.mark.parametrize(("thresholds", "evaluated"), [((0.5, 0.5), False), ((0.4213, 0.4987), True)])
def test_a_checkpoints_verdict_says_whether_an_evaluation_set_its_threshold(
    service, browser, face_gap_video, thresholds, evaluated
):
    """A real checkpoint's answer (the demo's, with its flags cleared on the way): its confidence is
    the model's own score, and while every threshold is the default 0.5 (no ``deepfake-eval
    --write-threshold``) the verdict is outlined, not filled, and tagged NOT EVALUATED. Before, a
    random checkpoint showed a filled "REAL 100.0 %" as if measured."""

    # The service's own answer for this video, its flags changed as a real checkpoint's would read; the
    # page's upload is answered with it (Playwright's route.fetch() cannot resend the page's file body).
    answer = post_file(service, face_gap_video).json()
    answer["untrained_demo"] = answer["model"]["untrained_demo"] = False
    for verdict, threshold in zip(answer["verdicts"].values(), thresholds, strict=True):
        verdict["threshold"] = threshold

    page = browser.new_page(viewport={"width": 1100, "height": 1600})
    page.route(re.compile(r"/predict/(\?.*)?$"), lambda route: route.fulfill(json=answer))
    page.goto(service + "/")
    page.set_input_files("#file", str(face_gap_video))
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    classes = set(page.locator("#verdict").get_attribute("class").split())
    assert "demo" not in classes and len({"REAL", "FAKE"} & classes) == 1
    expect(page.locator("#demo-verdict")).to_be_hidden()
    expect(page.locator("#confidence")).to_contain_text("model's own score")
    if evaluated:
        assert "uncalibrated" not in classes
        expect(page.locator("#uncalibrated")).to_be_hidden()
    else:
        assert "uncalibrated" in classes
        expect(page.locator("#uncalibrated")).to_be_visible()
        expect(page.locator("#uncalibrated")).to_contain_text("NOT EVALUATED")
    page.close()


def test_the_favicon_comes_from_the_package(service, browser):
    icon = httpx.get(service + "/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] in {"image/x-icon", "image/vnd.microsoft.icon"}
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    page = browser.new_page()
    page.goto(service + "/")
    assert page.locator("link[rel='icon']").get_attribute("href") == "/favicon.ico"
    page.close()


def test_redoc_loads_nothing_from_another_site(service, browser):
    """ReDoc's bundle shows Redocly's logo from cdn.redoc.ly; the service's /redoc must not ask for it."""
    html = httpx.get(service + "/redoc").text
    referenced = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
    assert referenced and all(url.startswith("/") for url in referenced), referenced
    for script in re.findall(r"""<script[^>]*src=["']([^"']+)""", html):
        assert "cdn.redoc.ly" not in httpx.get(service + script).text

    page = browser.new_page()
    local = service.rstrip("/")
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((local, "data:", "blob:")) else elsewhere.append(r.url))
    page.goto(service + "/redoc")
    expect(page.get_by_text("API docs by Redocly")).to_be_visible(timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert elsewhere == []
    page.close()
