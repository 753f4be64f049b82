"""Send every labelled video to ``/predict/`` (several at once) and keep one row per video.

The service under test is the one that serves: in-process (started here, on loopback) or a running
one (``--url``). Rows are appended to results.csv as they come, so an interrupted run resumes where
it stopped; a video the service refuses is a row with the error's code, never a crash.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import httpx

from evaluation.dataset import LabelledVideo
from model_contract.identity import RULES

__all__ = ["RULES", "ResultRow", "analyze_all", "read_rows"]  # RULES: what the report, summary and compare use
RETRIES_WHEN_BUSY = 5  # 503 + Retry-After: the service is full or its model server restarting


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


def read_rows(path: Path) -> list[ResultRow]:
    if not path.is_file():
        return []
    with path.open(newline="") as stream:
        return [_parse(row) for row in csv.DictReader(stream)]


def _parse(row: dict[str, str]) -> ResultRow:
    values: dict[str, object] = {}
    for name in COLUMNS:
        text = row.get(name, "")
        if name in NUMERIC:
            values[name] = None if text == "" else (int(text) if name in {"faces_found", "frames"} else float(text))
        else:
            values[name] = text
    return ResultRow(**values)  # type: ignore[arg-type]


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
    )


async def analyze_one(client: httpx.AsyncClient, url: str, video: LabelledVideo) -> ResultRow:
    try:
        content = await asyncio.to_thread(video.path.read_bytes)
    except OSError as error:
        return ResultRow(video.key, video.label, error=f"unreadable_file: {error.strerror}")
    for attempt in range(RETRIES_WHEN_BUSY + 1):
        try:
            response = await client.post(url + "/predict/", files={"file": (video.path.name, content)})
        except httpx.HTTPError as error:
            return ResultRow(video.key, video.label, error=f"unreachable: {type(error).__name__}")
        if response.status_code == 503 and attempt < RETRIES_WHEN_BUSY:
            await asyncio.sleep(float(response.headers.get("Retry-After", "2")))
            continue
        break
    if response.status_code != 200:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = f"http_{response.status_code}"
        return ResultRow(video.key, video.label, error=code)
    return row_from_answer(video, response.json())


async def analyze_all(
    url: str,
    videos: list[LabelledVideo],
    results_csv: Path,
    concurrency: int = 2,
    api_key: str | None = None,
    on_row: Callable[[ResultRow], None] = lambda row: None,
) -> list[ResultRow]:
    """Analyses the videos not yet in ``results_csv``, appending each row as it comes; returns all rows."""
    done = {row.video: row for row in read_rows(results_csv)}
    todo = [video for video in videos if video.key not in done]
    queue: asyncio.Queue[LabelledVideo] = asyncio.Queue()
    for video in todo:
        queue.put_nowait(video)
    new_file = not results_csv.is_file()
    results_csv.parent.mkdir(parents=True, exist_ok=True)
    headers = {"X-API-Key": api_key} if api_key else {}
    with results_csv.open("a", newline="") as stream:
        writer = csv.DictWriter(stream, COLUMNS)
        if new_file:
            writer.writeheader()

        async def worker(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                row = await analyze_one(client, url, queue.get_nowait())
                writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
                stream.flush()  # each row is kept even if the run is cut off
                done[row.video] = row
                on_row(row)

        async with httpx.AsyncClient(timeout=httpx.Timeout(300, connect=10), headers=headers) as client:
            await asyncio.gather(*(worker(client) for _ in range(max(1, concurrency))))
    order = {video.key: index for index, video in enumerate(videos)}
    return sorted((row for key, row in done.items() if key in order), key=lambda row: order[row.video])
