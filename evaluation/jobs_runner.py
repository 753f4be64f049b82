"""``deepfake-eval --jobs``: the labelled videos sent as asynchronous jobs rather than held requests.

For a large set against a shared service: the videos wait in the service's queue, not in open
connections, and the workers take them at their own pace (no ``503 overloaded`` to wait out). Each
row is the job's ``/predict/`` answer, as ``analyze_all`` would have written it, so the summary and
report are the same; what a job adds (the timeline) is kept in each job's answer file.

Resumable twice over: rows already in results.csv are not sent again (as ``analyze_all``), and the
jobs submitted but not finished when a run was cut off are polled again, not submitted again
(``deepfake_client.batch``'s state file, ``OUT/jobs/state.json``; the answers beside it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from deepfake_client.api import DeepfakeClient
from deepfake_client.batch import REFUSED, Batch, Entry
from evaluation.dataset import LabelledVideo
from evaluation.runner import ResultRow, ResultsFile, row_from_answer

JOBS_FOLDER = "jobs"  # under the evaluation's output folder: the batch's state and every job's answer


def _row(video: LabelledVideo, entry: Entry, answer_path: Path) -> ResultRow:
    if entry.state == "done":
        view = json.loads(answer_path.read_text())
        return row_from_answer(video, view["result"])
    code = (entry.error or {}).get("code") or (entry.state if entry.state != REFUSED else "refused")
    return ResultRow(video.key, video.label, error=str(code))


def analyze_all_as_jobs(
    url: str,
    videos: list[LabelledVideo],
    results_csv: Path,
    api_key: str | None = None,
    max_pending: int = 20,
    poll_s: float = 2.0,
    on_row: Callable[[ResultRow], None] = lambda row: None,
    refresh: bool = True,
) -> list[ResultRow]:
    """The videos not yet in ``results_csv`` as jobs (at most ``max_pending`` unfinished at once),
    each row appended as its job finishes; returns all rows, in the dataset's order."""
    folder = results_csv.parent / JOBS_FOLDER
    with ResultsFile(results_csv, on_row) as results, DeepfakeClient(url, api_key, timeout_s=300) as client:
        todo = {os.path.abspath(video.path): video for video in results.todo(videos)}
        batch = Batch(
            client,
            [Path(path) for path in todo],
            folder,
            folder / "state.json",
            max_pending=max_pending,
            poll_s=poll_s,
            refresh=refresh,
        )

        def on_event(event: str, entry: Entry | None) -> None:
            if event in ("finished", "refused") and entry is not None:
                results.append(_row(todo[entry.path], entry, batch.answer_path(entry)))

        entries = batch.run(on_event)
        for path, entry in entries.items():  # finished in an earlier run, answers saved, rows not yet written
            if todo[os.path.abspath(path)].key not in results.done and entry.finished:
                on_event("finished", entry)
    return results.ordered(videos)
