"""Send every labelled video to ``/predict/`` (several at once) and keep one row per video.

The service under test is the one that serves: in-process (started here, on loopback) or a running
one (``--url``). Rows are appended to results.csv as they come, so an interrupted run resumes where
it stopped; a video the service refuses is a row with the error's code, never a crash.

Every video is analyzed afresh (``?refresh=1``) unless the caller asks for the history: the service
answers a file it has seen from its history, with the times of that first analysis, and an
evaluation that took those for measurements would report times nobody measured. Each row says
whether its answer was cached, so the summary can leave cached answers out of the timings.

The calls go through ``DeepfakeClient`` (``predict_async``), so an evaluation waits out a busy or
rate-limited service (429/503 + Retry-After) by the client's one policy, ``deepfake_client.retry``.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import httpx

from deepfake_client.api import DeepfakeClient, ServiceError
from evaluation.dataset import LabelledVideo
from model_contract.identity import RULES

# RULES: what the report, summary and compare use
__all__ = ["RULES", "ResultRow", "ResultsFile", "analyze_all", "read_rows"]


@dataclass
class ResultRow:
    video: str
    label: str
    result_sequence: str = ""
    p_fake_sequence: float | None = None
    result_original: str = ""
    p_fake_original: float | None = None
    faces_found: int | None = None
    frames: int | None = None
    duration_s: float | None = None
    decode_s: float | None = None
    faces_s: float | None = None
    inference_s: float | None = None
    total_s: float | None = None
    cached: bool | None = None  # answered from the service's history; None: not recorded (older results.csv)
    error: str = ""  # the service's error code (e.g. no_face_detected); empty when analyzed

    @property
    def ok(self) -> bool:
        return not self.error

    def result(self, rule: str) -> str:
        return str(getattr(self, f"result_{rule}"))

    def p_fake(self, rule: str) -> float:
        value = getattr(self, f"p_fake_{rule}")
        assert value is not None, "error rows have no score"
        return float(value)


COLUMNS = [field.name for field in fields(ResultRow)]
NUMERIC = {field.name for field in fields(ResultRow) if field.type in ("float | None", "int | None")}
FLAGS = {field.name for field in fields(ResultRow) if field.type == "bool | None"}


def read_rows(path: Path) -> list[ResultRow]:
    if not path.is_file():
        return []
    with path.open(newline="") as stream:
        return [_parse(row) for row in csv.DictReader(stream)]


def _parse(row: dict[str, str]) -> ResultRow:
    values: dict[str, object] = {}
    for name in COLUMNS:
        text = row.get(name) or ""
        if name in NUMERIC:
            values[name] = None if text == "" else (int(text) if name in {"faces_found", "frames"} else float(text))
        elif name in FLAGS:
            values[name] = {"true": True, "false": False}.get(text.strip().lower())
        else:
            values[name] = text
    return ResultRow(**values)  # type: ignore[arg-type]


def _cell(value: object) -> object:
    if value is None:
        return ""  # not measured, or not known
    if isinstance(value, bool):
        return "true" if value else "false"  # what _parse reads back (and what a spreadsheet shows)
    return value


def _csv_values(row: ResultRow) -> dict[str, object]:
    """A row as results.csv holds it."""
    return {name: _cell(value) for name, value in asdict(row).items()}


def _header(path: Path) -> list[str] | None:
    with path.open(newline="") as stream:
        return next(csv.reader(stream), None)


def _upgrade(path: Path) -> None:
    """Rewrites a results.csv written with other columns (an older deepfake-eval) under today's, so
    the rows this run appends line up with the header; a column it lacked is left empty."""
    if not path.is_file() or _header(path) in (None, COLUMNS):
        return
    rows = read_rows(path)
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, COLUMNS)
        writer.writeheader()
        writer.writerows(_csv_values(row) for row in rows)


def row_from_answer(video: LabelledVideo, answer: dict) -> ResultRow:
    verdicts, stages = answer["verdicts"], answer["stage_times_sec"]
    return ResultRow(
        video=video.key,
        label=video.label,
        result_sequence=verdicts["sequence"]["result"],
        p_fake_sequence=verdicts["sequence"]["p_fake"],
        result_original=verdicts["original"]["result"],
        p_fake_original=verdicts["original"]["p_fake"],
        faces_found=answer["frames_with_face"],
        frames=answer["frames_analyzed"],
        duration_s=answer["metadata"]["duration"],
        decode_s=stages["decode"],
        faces_s=stages["faces"],
        inference_s=stages["inference"],
        total_s=stages["total"],
        cached=answer.get("cached"),  # a service without a history does not say: unknown, not "fresh"
    )


async def analyze_one(
    client: DeepfakeClient, session: httpx.AsyncClient, video: LabelledVideo, refresh: bool = True
) -> ResultRow:
    """One video's row. ``refresh`` asks the service to analyze it now even if its history has the
    file (so the row's times are measured); without it a cached answer may come back. A refusal is
    a row with the service's error code (``http_NNN`` where the answer names none)."""
    try:
        content = await asyncio.to_thread(video.path.read_bytes)
    except OSError as error:
        return ResultRow(video.key, video.label, error=f"unreadable_file: {error.strerror}")
    try:
        answer = await client.predict_async(session, video.path.name, content, refresh)
    except httpx.HTTPError as error:
        return ResultRow(video.key, video.label, error=f"unreachable: {type(error).__name__}")
    except ServiceError as error:
        return ResultRow(video.key, video.label, error=error.code)
    return row_from_answer(video, answer)


class ResultsFile:
    """results.csv opened for appending: the rows it already holds (``done``, by video), each new row
    written and flushed as it comes (a run cut off keeps every row it got), and all of them back in
    the dataset's order. Both ways of analyzing (held requests, jobs) write through it."""

    def __init__(self, path: Path, on_row: Callable[[ResultRow], None] = lambda row: None) -> None:
        _upgrade(path)
        self.done = {row.video: row for row in read_rows(path)}
        path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not path.is_file()
        self._stream = path.open("a", newline="")
        self._writer = csv.DictWriter(self._stream, COLUMNS)
        if new_file:
            self._writer.writeheader()
        self._on_row = on_row

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()

    def todo(self, videos: list[LabelledVideo]) -> list[LabelledVideo]:
        return [video for video in videos if video.key not in self.done]

    def append(self, row: ResultRow) -> None:
        self._writer.writerow(_csv_values(row))
        self._stream.flush()  # each row is kept even if the run is cut off
        self.done[row.video] = row
        self._on_row(row)

    def ordered(self, videos: list[LabelledVideo]) -> list[ResultRow]:
        order = {video.key: index for index, video in enumerate(videos)}
        return sorted((row for key, row in self.done.items() if key in order), key=lambda row: order[row.video])


async def analyze_all(
    url: str,
    videos: list[LabelledVideo],
    results_csv: Path,
    concurrency: int = 2,
    api_key: str | None = None,
    on_row: Callable[[ResultRow], None] = lambda row: None,
    refresh: bool = True,
) -> list[ResultRow]:
    """Analyses the videos not yet in ``results_csv``, appending each row as it comes; returns all rows.
    ``refresh=False`` lets the service answer from its history (the rows then say ``cached``)."""
    client = DeepfakeClient(url, api_key, timeout_s=300)
    with ResultsFile(results_csv, on_row) as results:
        queue: asyncio.Queue[LabelledVideo] = asyncio.Queue()
        for video in results.todo(videos):
            queue.put_nowait(video)

        async def worker(session: httpx.AsyncClient) -> None:
            while not queue.empty():
                results.append(await analyze_one(client, session, queue.get_nowait(), refresh))

        with client:  # its own (synchronous) pool is not used here, only closed
            async with client.async_session() as session:
                await asyncio.gather(*(worker(session) for _ in range(max(1, concurrency))))
    return results.ordered(videos)
