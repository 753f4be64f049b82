"""deepfake-eval on real videos with a model whose outputs vary: rows, every metric against
scikit-learn, resume, --url, the report in headless Chromium, the threshold round trip, compare.

Dataset: FAKE = the 4 seed .mp4 files and a truncated copy of one (an error row); REAL = the seed
.MOV and two clips made from scikit-image's astronaut photo (real face, real H.264). The model is
testing/sensitive_model.py centred on whole sequences, so the sequence verdict's P(FAKE) spreads.
"""

from __future__ import annotations

import asyncio
import csv
import html
import json
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn import calibration as sk_calibration
from sklearn import metrics as sk

from evaluation.__main__ import main
from evaluation.metrics import choose_threshold
from evaluation.runner import RULES, read_rows
from export.repository import export_repository
from model_contract import repository_digests
from preprocess_service.settings import Settings
from testing.sensitive_model import sensitive_model
from testing.server import post_file, running_service
from tests import media

CHROMIUM = "/usr/bin/chromium"  # Debian's package (make test installs it); Playwright's own download cannot work here


@pytest.fixture(scope="module")
def dataset(seed_videos, module_folder) -> Path:
    root = module_folder("dataset")
    (root / "FAKE").mkdir()
    (root / "REAL").mkdir()
    for video in seed_videos:
        shutil.copy(video, root / ("REAL" if video.suffix.lower() == ".mov" else "FAKE") / video.name)
    broken = seed_videos[1].read_bytes()[:40_000]  # truncated before any frame: refused, never a crash
    (root / "FAKE" / "truncated.mp4").write_bytes(broken)
    media.moving_face_video(root / "REAL" / "astronaut_square.mp4", count=40)
    media.phone_sized_video(root / "REAL" / "astronaut_portrait.mp4", 360, portrait=True, count=30)
    return root


@pytest.fixture(scope="module")
def repository(seed_videos, module_folder) -> Path:
    folder = module_folder("repository")
    export_repository(sensitive_model(seed_videos, centre_on="sequences"), folder)
    return folder


@pytest.fixture(scope="module")
def evaluated(dataset, repository, module_folder) -> Path:
    out = module_folder("eval") / "out"
    assert main([str(dataset), "--out", str(out), "--model-repository", str(repository)]) == 0
    return out


def test_every_video_is_a_row_and_a_broken_one_is_an_error_row(evaluated, dataset):
    rows = {row.video: row for row in read_rows(evaluated / "results.csv")}
    assert len(rows) == 8
    assert rows["FAKE/truncated.mp4"].error and rows["FAKE/truncated.mp4"].p_fake_sequence is None
    for key, row in rows.items():
        assert row.label == key.split("/")[0]
        if key != "FAKE/truncated.mp4":
            assert row.ok and row.frames == 30 and row.faces_found and row.faces_found > 0
            assert row.duration_s and row.total_s and row.decode_s is not None and row.inference_s
    scores = [row.p_fake_sequence for row in rows.values() if row.ok]
    assert max(scores) - min(scores) > 0.2, f"the model must vary for the metrics to mean anything: {scores}"
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["analyzed"] == 7 and summary["failed"][0]["video"] == "FAKE/truncated.mp4"
    assert summary["untrained_demo"] is False


def test_every_metric_matches_scikit_learn_on_the_same_rows(evaluated):
    rows = [row for row in read_rows(evaluated / "results.csv") if row.ok]
    summary = json.loads((evaluated / "summary.json").read_text())
    truth = [row.label for row in rows]
    is_fake = np.array([label == "FAKE" for label in truth])
    for rule in RULES:
        entry = summary["rules"][rule]
        served = [row.result(rule) for row in rows]
        p_fake = np.array([row.p_fake(rule) for row in rows])
        mine = entry["served"]
        assert mine["accuracy"] == pytest.approx(sk.accuracy_score(truth, served))
        assert mine["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(truth, served))
        precision, recall, f1, support = sk.precision_recall_fscore_support(
            truth, served, labels=["FAKE", "REAL"], zero_division=0
        )
        for index, label in enumerate(["FAKE", "REAL"]):
            assert mine["per_class"][label]["precision"] == pytest.approx(precision[index])
            assert mine["per_class"][label]["recall"] == pytest.approx(recall[index])
            assert mine["per_class"][label]["f1"] == pytest.approx(f1[index])
            assert mine["per_class"][label]["support"] == support[index]
        assert mine["confusion_matrix"] == sk.confusion_matrix(truth, served, labels=["FAKE", "REAL"]).tolist()
        at_half = ["FAKE" if p >= 0.5 else "REAL" for p in p_fake]
        assert entry["at_0_5"]["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(truth, at_half))
        assert entry["auc"] == pytest.approx(sk.roc_auc_score(is_fake, p_fake))
        fpr, tpr, _ = sk.roc_curve(is_fake, p_fake, drop_intermediate=False)
        assert entry["roc"]["fpr"] == pytest.approx(fpr.tolist()) and entry["roc"]["tpr"] == pytest.approx(tpr.tolist())
        fraction, mean_predicted = sk_calibration.calibration_curve(is_fake, p_fake, n_bins=10, strategy="uniform")
        assert entry["calibration"]["fraction_fake"] == pytest.approx(fraction.tolist())
        assert entry["calibration"]["mean_predicted"] == pytest.approx(mean_predicted.tolist())
        # calibration_curve's own binning: a score on an inner edge belongs to the bin below
        counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], p_fake), minlength=10)
        counts = counts[counts > 0]
        ece = float(np.sum(counts * np.abs(mean_predicted - fraction)) / len(p_fake))
        assert entry["calibration"]["ece"] == pytest.approx(ece)
        chosen = entry["threshold"]
        best = max(
            sk.balanced_accuracy_score(truth, ["FAKE" if p >= t else "REAL" for p in p_fake])
            for t in np.r_[0.0, np.sort(p_fake), 1.01]
        )
        assert chosen["metrics"]["balanced_accuracy"] == pytest.approx(best)


def test_a_run_resumes_where_it_stopped(evaluated, dataset, repository, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(evaluated, out)
    with (out / "results.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    kept, dropped = rows[:-2], rows[-2:]
    with (out / "results.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    assert main([str(dataset), "--out", str(out), "--model-repository", str(repository)]) == 0
    again = read_rows(out / "results.csv")
    assert [row.video for row in again[: len(kept)]] == [row["video"] for row in kept]  # untouched, in place
    assert sorted(row.video for row in again[len(kept) :]) == sorted(row["video"] for row in dropped)
    assert len(again) == len(rows)


def test_a_running_service_gives_the_in_process_scores(evaluated, dataset, repository, tmp_path):
    with running_service(Settings(model_repository=repository, keys_dir=tmp_path / "keys")) as url:
        assert main([str(dataset), "--out", str(tmp_path / "url"), "--url", url]) == 0
    remote = {row.video: row for row in read_rows(tmp_path / "url" / "results.csv")}
    for row in read_rows(evaluated / "results.csv"):
        assert remote[row.video].error == row.error
        if row.ok:
            for rule in RULES:
                assert remote[row.video].p_fake(rule) == pytest.approx(row.p_fake(rule), abs=1e-6)


def test_through_jobs_the_rows_are_the_requests_rows(evaluated, dataset, repository, tmp_path):
    """``--jobs``: every video a job on the in-process service's own worker; each row the job's /predict/
    answer, so the same scores and the same error codes as the held requests, and each job's answer
    (its timeline with it) kept beside the results."""
    out = tmp_path / "jobs"
    assert main([str(dataset), "--out", str(out), "--model-repository", str(repository), "--jobs"]) == 0
    through_jobs = {row.video: row for row in read_rows(out / "results.csv")}
    requests = read_rows(evaluated / "results.csv")
    assert sorted(through_jobs) == sorted(row.video for row in requests)
    for row in requests:
        assert through_jobs[row.video].error == row.error, row.video
        if row.ok:
            for rule in RULES:
                assert through_jobs[row.video].p_fake(rule) == pytest.approx(row.p_fake(rule), abs=1e-6)
    answers = [json.loads(path.read_text()) for path in (out / "jobs").glob("*.job.json")]
    assert len(answers) == sum(row.ok for row in requests)
    assert all(answer["state"] == "done" and answer["result"]["timeline"]["segments"] for answer in answers)
    state = json.loads((out / "jobs" / "state.json").read_text())
    assert {entry["state"] for entry in state["files"]} <= {"done", "refused", "failed"}


def _open_in_chromium(report: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(report.resolve().as_uri())
            sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
            demo_banner = page.locator(".demo").count() and page.locator(".demo").is_visible()
            return {"images": sizes, "text": page.inner_text("body"), "demo_banner": bool(demo_banner)}
        finally:
            browser.close()


def test_the_report_opens_in_headless_chromium_with_every_plot_drawn(evaluated):
    page = _open_in_chromium(evaluated / "report.html")
    assert len(page["images"]) == 9  # per rule: confusion, ROC, reliability, histograms; and time vs duration
    assert all(width > 0 and height > 0 for width, height in page["images"]), page["images"]
    assert "FAKE/truncated.mp4" in page["text"] and "AUC" in page["text"] and "ECE" in page["text"]
    assert not page["demo_banner"]


def test_the_report_says_plainly_when_the_untrained_demo_answered(demo_repository, seed_videos, tmp_path):
    (tmp_path / "set" / "FAKE").mkdir(parents=True)
    (tmp_path / "set" / "REAL").mkdir(parents=True)
    shutil.copy(seed_videos[1], tmp_path / "set" / "FAKE")
    shutil.copy(seed_videos[0], tmp_path / "set" / "REAL")
    out = tmp_path / "out"
    assert main([str(tmp_path / "set"), "--out", str(out), "--model-repository", str(demo_repository)]) == 0
    page = _open_in_chromium(out / "report.html")
    assert page["demo_banner"] and "UNTRAINED DEMO MODEL" in page["text"]


def test_a_written_threshold_changes_the_services_result_and_compare_shows_the_flip(
    evaluated, dataset, repository, tmp_path
):
    copy = tmp_path / "repository"
    shutil.copytree(repository, copy)
    published = repository_digests.digest_of_list(repository_digests.write_digest_list(copy))  # as deployed
    rows = [row for row in read_rows(evaluated / "results.csv") if row.ok]
    is_fake = np.array([row.label == "FAKE" for row in rows])
    scores = np.array([row.p_fake_sequence for row in rows])

    def flips_at(target: float) -> bool:  # the cut the evaluation will choose moves a video across 0.5
        cut = choose_threshold(is_fake, scores, "fpr", target)
        return any((score >= 0.5) != (score >= cut) for score in scores)

    target = next(t for t in (0.34, 0.67, 1.0) if flips_at(t))  # one REAL of 3 may be called FAKE, or two...
    chosen = tmp_path / "chosen"
    code = main(
        [str(dataset), "--out", str(chosen), "--model-repository", str(copy)]
        + ["--threshold-mode", "fpr", "--target-fpr", str(target), "--write-threshold"]
    )
    assert code == 0
    threshold = json.loads((chosen / "summary.json").read_text())["rules"]["sequence"]["threshold"]["value"]
    assert threshold != 0.5
    listed = copy / repository_digests.LIST_NAME  # rewritten over the changed configs: a new pin, and it verifies
    assert repository_digests.digest_of_list(listed) != published
    assert repository_digests.verify(copy, repository_digests.digest_of_list(listed)) == []
    flipping = [row for row in rows if (row.p_fake_sequence >= 0.5) != (row.p_fake_sequence >= threshold)]
    assert flipping, f"no video between 0.5 and {threshold}: {[r.p_fake_sequence for r in rows]}"
    video = dataset / flipping[0].video
    with running_service(Settings(model_repository=copy, keys_dir=tmp_path / "keys")) as url:
        answer = post_file(url, video).json()
        ready = httpx.get(url + "/readyz").json()
    assert answer["verdicts"]["sequence"]["threshold"] == pytest.approx(threshold, abs=1e-6)
    assert answer["verdicts"]["sequence"]["result"] != flipping[0].result_sequence
    assert answer["result"] == answer["verdicts"]["sequence"]["result"]
    assert "verdict_threshold_sequence" not in ready["model"]["architecture"]

    after = tmp_path / "after"
    assert main([str(dataset), "--out", str(after), "--model-repository", str(copy)]) == 0
    compared = tmp_path / "compare.json"
    assert main(["compare", str(evaluated), str(after), "--out", str(compared)]) == 0
    result = json.loads(compared.read_text())
    flips = {(f["video"], f["rule"]) for f in result["flips"]}
    assert (flipping[0].video, "sequence") in flips
    assert "sequence/served/accuracy" in result["metrics"] and "sequence/auc" in result["metrics"]
    assert result["metrics"]["sequence/auc"]["delta"] == pytest.approx(0, abs=1e-6)  # same scores, new cut


def test_each_video_is_analyzed_afresh_unless_the_history_is_asked_for(seed_videos, demo_repository, tmp_path):
    """The service answers a file it has already analyzed from its history, with that analysis's own
    times: an evaluation that took such answers as measurements would report times nobody measured.
    So a run analyzes afresh by default; --use-history takes cached answers, and the report leaves
    them out of the timings and says so. (The demo model: the service caches only a model it can
    identify, and the test model here has no checkpoint hash.)"""
    videos = tmp_path / "set"
    (videos / "FAKE").mkdir(parents=True)
    (videos / "REAL").mkdir(parents=True)
    shutil.copy(seed_videos[1], videos / "FAKE")
    shutil.copy(seed_videos[0], videos / "REAL")
    larger = tmp_path / "larger"
    shutil.copytree(videos, larger)
    shutil.copy(seed_videos[2], larger / "FAKE")
    settings = Settings(
        model_repository=demo_repository,
        keys_dir=tmp_path / "keys",
        history_cache=True,
        database_url=f"sqlite:///{tmp_path / 'history.sqlite3'}",
    )

    def evaluate(name: str, dataset: Path, *options: str) -> tuple[list[dict], dict, str]:
        out = tmp_path / name
        assert main([str(dataset), "--out", str(out), "--url", url, *options]) == 0
        with (out / "results.csv").open(newline="") as stream:
            rows = list(csv.DictReader(stream))
        report = html.unescape(re.sub(r"<[^>]+>", " ", (out / "report.html").read_text()))
        return rows, json.loads((out / "summary.json").read_text()), " ".join(report.split())

    with running_service(settings) as url:
        evaluate("first", videos)
        rows, summary, report = evaluate("second", videos)  # the history has both: still analyzed now
        assert [row["cached"] for row in rows] == ["false", "false"]
        assert summary["cached"] == 0 and summary["timing"]["median_total_s"] is not None
        assert "came from the history" not in report and "Median analysis time" in report

        rows, summary, report = evaluate("some", larger, "--use-history")
        assert sorted(row["cached"] for row in rows) == ["false", "true", "true"]
        assert summary["cached"] == 2 and len(summary["timing"]["points"]) == 1
        fresh = next(row for row in rows if row["cached"] == "false")
        assert summary["timing"]["median_total_s"] == pytest.approx(float(fresh["total_s"]))
        assert "2 of 3 answers came from the history and are left out of the timings" in report

        rows, summary, report = evaluate("all", videos, "--use-history")
        assert [row["cached"] for row in rows] == ["true", "true"]
        assert summary["cached"] == 2 and summary["timing"]["median_total_s"] is None
        assert summary["timing"]["points"] == []
        assert "2 of 2 answers came from the history and are left out of the timings" in report
        assert "Median analysis time" not in report


def test_a_folder_without_labels_says_how_to_label_it(tmp_path, capsys):
    folder = tmp_path / "seed_videos"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(b"\0" * 100)
    assert main([str(folder), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "has no REAL*/ or FAKE*/ folder" in error
    assert f"{folder}/REAL/" in error and f"{folder}/FAKE/" in error  # the layout it expects
    assert "path,label" in error
    assert f"{folder / 'clip.mp4'},REAL" in error  # a line of such a CSV, with the user's own file
    assert not (tmp_path / "out").exists()


def test_the_report_shows_no_python_dict(evaluated):
    """The labels, the errors and the model's settings are tables, not a Python repr."""
    source = (evaluated / "report.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", " ", source))
    assert "{'" not in text and "': " not in text and "{&#x27;" not in source
    assert "['" not in text
    summary = json.loads((evaluated / "summary.json").read_text())
    architecture = summary["model"]["architecture"]
    name, value = next(iter(architecture.items()))
    assert re.search(rf"<th>{re.escape(name)}</th>\s*<td>{re.escape(html.escape(str(value)))}</td>", source)
    assert re.search(r"<th>FAKE</th>\s*<td>5</td>", source) and re.search(r"<th>REAL</th>\s*<td>3</td>", source)


def test_a_results_csv_from_before_the_cached_column_is_resumed_and_its_rows_left_out_of_the_timings(tmp_path):
    """Rows an older deepfake-eval wrote do not say whether they were cached (it took cached answers
    whenever the service gave them): the file gets today's header, and they count as unknown."""
    from evaluation.dataset import LabelledVideo
    from evaluation.report import render
    from evaluation.runner import analyze_all
    from evaluation.summary import summarise

    old_columns = ["video", "label", "result_sequence", "p_fake_sequence", "result_original", "p_fake_original"]
    old_columns += ["faces_found", "frames", "duration_s", "decode_s", "faces_s", "inference_s", "total_s", "error"]
    results = tmp_path / "results.csv"
    with results.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(old_columns)
        writer.writerow(["FAKE/a.mp4", "FAKE", "FAKE", 0.9, "FAKE", 0.8, 30, 30, 2.0, 0.1, 0.5, 0.4, 1.0, ""])
        writer.writerow(["REAL/b.mp4", "REAL", "REAL", 0.2, "REAL", 0.1, 30, 30, 3.0, 0.1, 0.5, 0.4, 1.5, ""])
    videos = [LabelledVideo(key, tmp_path / key, key[:4]) for key in ("FAKE/a.mp4", "REAL/b.mp4")]
    rows = asyncio.run(analyze_all("http://127.0.0.1:9", videos, results))  # nothing left to ask for
    assert [row.cached for row in rows] == [None, None]
    with results.open(newline="") as stream:
        assert "cached" in next(csv.reader(stream))
    summary = summarise(rows, {"family": "attention"})
    assert summary["timing"]["left_out"] == {"cached": 0, "not_recorded": 2}
    assert summary["timing"]["median_total_s"] is None
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", render(summary))).split())
    assert "2 of 2 answers do not say whether they came from the history" in text
    assert "Median analysis time" not in text
