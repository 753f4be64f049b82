"""The web page in headless Chromium (Debian's package, driven by Playwright; its own browser
download cannot work here), against the real service: upload a seed video, the verdict appears,
the chart holds one point per sampled frame, the CSV downloads, the demo banner shows, signing and
verifying work, and bad files show their error in words."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import time
from pathlib import Path

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


# ---- Jobs: the whole video analysed by a worker, its progress and its timeline on the page.
# A model made sensitive to the swapped face (tests/test_jobs.py's), a real H.264 video whose face is
# another for 20 s, and an API key: the page must send it on every jobs call as on /predict/.

ALTERED = (30.0, 50.0)  # seconds of the 80-second video where the face is swapped


@pytest.fixture(scope="module")
def jobs_service(module_folder):
    from export.repository import export_repository
    from tests.test_jobs import _sensitive_to_the_swap, api_keys

    folder = module_folder("jobs")
    clips = [
        media.altered_stretch_video(folder / "astronaut.mp4", 8, (99, 99)),
        media.altered_stretch_video(folder / "hopper.mp4", 8, (0, 99)),
    ]
    export_repository(_sensitive_to_the_swap(clips), folder / "repository")
    settings = Settings(
        model_repository=folder / "repository",
        keys_dir=folder / "keys",
        database_url=f"sqlite:///{folder}/history.sqlite3",
        jobs_dir=folder / "jobs",
        api_keys=api_keys(),
    )
    with running_service(settings) as url:
        yield url


def jobs_page(browser, url):
    """The page with the API key typed in, and the list its CSP refusals go to (must stay empty)."""
    from tests.test_jobs import KEY_A

    page = browser.new_page(viewport={"width": 1000, "height": 1400})
    refused: list[str] = []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.goto(url + "/")
    page.fill("#api-key", KEY_A)
    return page, refused


def is_job_submission(response) -> bool:
    return response.request.method == "POST" and response.url.endswith("/jobs")


def clock(seconds: float) -> str:
    return f"{round(seconds) // 60}:{round(seconds) % 60:02d}"


def test_a_long_video_as_a_job_shows_progress_and_its_altered_stretch_shaded(jobs_service, browser, tmp_path):
    from tests.test_jobs import KEY_A

    video = media.altered_stretch_video(tmp_path / "interview.mp4", 80, ALTERED)
    page, refused = jobs_page(browser, jobs_service)
    page.check("#as-job")
    with page.expect_response(is_job_submission) as submitted:
        page.set_input_files("#file", str(video))
    assert submitted.value.status == 202
    job_id = submitted.value.json()["id"]

    seen: list[tuple[str | None, float]] = []  # (state, progress bar) as the page showed them
    partial_timeline = False  # the chart drawn while the job was still running
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        state = page.locator("#job").get_attribute("data-state")
        seen.append((state, float(page.locator("#job-progress").get_attribute("value") or 0)))
        if state == "running" and page.locator("#timeline svg").count():
            partial_timeline = True
        if state in ("done", "failed", "cancelled"):
            break
        time.sleep(0.25)
    assert seen[-1] == ("done", 1.0), seen
    assert any(state == "running" and progress < 1 for state, progress in seen), seen
    progress = [value for _, value in seen]
    assert progress == sorted(progress), seen
    assert partial_timeline, "the timeline was not drawn while the job ran"
    expect(page.locator("#job-state")).to_have_text("Job done")
    expect(page.locator("#job-cancel")).to_be_hidden()

    # the job's own answer: one flagged stretch, the altered one to within a window's stride
    view = httpx.get(f"{jobs_service}/jobs/{job_id}", headers={"X-API-Key": KEY_A}).json()
    timeline = view["result"]["timeline"]
    stride_s = timeline["stride"] / timeline["fps"]
    [flagged] = timeline["flagged"]
    assert abs(flagged["start_s"] - ALTERED[0]) <= stride_s and abs(flagged["end_s"] - ALTERED[1]) <= stride_s, flagged

    # the chart shades it where it is: its x-span on the time axis is the stretch's
    chart = page.locator("#timeline svg")
    assert chart.get_attribute("role") == "img"
    assert "1 stretch above the threshold" in chart.get_attribute("aria-label")
    axis = page.locator("#timeline line.x-axis")
    left, right = float(axis.get_attribute("x1")), float(axis.get_attribute("x2"))

    def at(t: float) -> float:
        return left + (right - left) * t / timeline["duration_s"]

    shaded = page.locator("#timeline rect.flagged")
    assert shaded.count() == 1
    x, width = float(shaded.get_attribute("x")), float(shaded.get_attribute("width"))
    assert x == pytest.approx(at(flagged["start_s"]), abs=0.5)
    assert x + width == pytest.approx(at(flagged["end_s"]), abs=0.5)
    assert clock(flagged["start_s"]) in shaded.locator("title").text_content()
    assert page.locator("#timeline .segment").count() == len(timeline["segments"])
    ticks = page.locator("#timeline text.x-tick-label").all_text_contents()
    assert ticks == ["0:00", "0:15", "0:30", "0:45", "1:00", "1:15"], ticks  # m:ss, at most 8
    words = f"Above the threshold: {clock(flagged['start_s'])}–{clock(flagged['end_s'])}"
    expect(page.locator("#flagged li")).to_have_text(f"{words} (max P(FAKE) {flagged['max_p_fake']:.2f})")

    # and the /predict/ view of the same file, from the job's result
    expect(page.locator("#result")).to_be_visible()
    assert page.inner_text("#verdict") in {"FAKE", "REAL"}
    assert page.locator("#chart .frame-point").count() == 30
    expect(page.locator("#error")).to_be_hidden()
    screenshots = Path(os.environ.get("DEEPFAKE_PAGE_SCREENSHOTS", tmp_path))  # docs/page-jobs.png is this one
    page.screenshot(path=str(screenshots / "page-jobs.png"), full_page=True)
    assert refused == []
    page.close()


def test_a_running_job_is_cancelled_from_the_page(jobs_service, browser, tmp_path):
    video = media.altered_stretch_video(tmp_path / "long.mp4", 120, (0, 0))  # 240 samples: seconds of work
    page, refused = jobs_page(browser, jobs_service)
    page.check("#as-job")
    with page.expect_response(is_job_submission) as submitted:
        page.set_input_files("#file", str(video))
    job_path = f"/jobs/{submitted.value.json()['id']}"
    expect(page.locator("#job")).to_have_attribute("data-state", "running", timeout=60_000)
    page.click("#job-cancel")
    expect(page.locator("#job-state")).to_have_text("Job cancelled")
    expect(page.locator("#job-cancel")).to_be_hidden()
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if request.url.endswith(job_path) else None)
    time.sleep(4.5)  # two poll periods: the page has stopped asking
    assert polls == []
    expect(page.locator("#result")).to_be_hidden()
    assert refused == []
    page.close()


def test_a_video_longer_than_a_minute_goes_to_a_job_by_itself(jobs_service, browser, tmp_path):
    """Debian's Chromium reads an H.264 file's duration (an off-page <video>'s metadata), so a video
    over 60 s goes to a job without the box ticked; /predict/ stays the way for shorter clips (the
    tests above upload those)."""
    video = media.altered_stretch_video(tmp_path / "seventy.mp4", 70, (0, 0))
    page, refused = jobs_page(browser, jobs_service)
    predicted: list[str] = []
    page.on("request", lambda request: predicted.append(request.url) if "/predict" in request.url else None)
    with page.expect_response(is_job_submission) as submitted:
        page.set_input_files("#file", str(video))
    assert submitted.value.status == 202
    assert not page.locator("#as-job").is_checked()
    expect(page.locator("#job-note")).to_have_text("This video is 1:10 long: analysing it as a job")
    expect(page.locator("#job-cancel")).to_be_visible(timeout=30_000)
    page.click("#job-cancel")  # the worker is free for the next test
    expect(page.locator("#job-state")).to_have_text("Job cancelled")
    assert predicted == []
    assert refused == []
    page.close()


def test_a_failed_job_shows_its_error_in_words(jobs_service, browser, tmp_path):
    path = media.write_video(tmp_path / "coffee.mp4", [media.no_face()] * 12)  # a 202, then a failed job
    page, refused = jobs_page(browser, jobs_service)
    page.check("#as-job")
    page.set_input_files("#file", str(path))
    expect(page.locator("#job")).to_have_attribute("data-state", "failed", timeout=60_000)
    expect(page.locator("#error")).to_have_text(re.compile("^No face was found"))  # /predict/'s words
    expect(page.locator("#result")).to_be_hidden()
    assert refused == []
    page.close()
