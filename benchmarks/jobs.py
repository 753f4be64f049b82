"""Jobs against /predict/: short videos submitted as jobs to one service with 1, 2 and 4
deepfake-worker processes, next to the same videos through ``POST /predict/`` at the same
concurrency, in the same run. Prints a table (and the README's, in Markdown), writes
benchmarks/results/jobs.json with the machine it ran on.

    python benchmarks/jobs.py [--videos 200] [--workers 1 2 4]

Set up as in a cluster, on one machine: the front (``deepfake-serve``, ``DEEPFAKE_JOBS_WORKER=external``)
and N ``deepfake-worker`` processes share Debian's Redis as the broker (deploy/local_servers.py starts
it), one history database and one jobs folder; every process runs the embedded backend (each worker
its own ONNX Runtime session). The videos are all different (a real face, drifting from a different
start, 4 s at 10 fps, 256x256 H.264) and the history's cache is off, so every answer is computed,
never looked up. Before each measured phase, one warm-up video per worker (or per connection) is
analyzed and not counted.

What is compared, per concurrency N:
- **predict**: N connections, each posting the next video as soon as its last answer came back.
  ``request`` is one request's time; ``to result`` is from the batch's start to that answer.
- **jobs**: all videos submitted at once, N workers taking them from the queue. ``to result`` is from
  the batch's start to the job's ``finished_at`` (the service's clock); ``run`` is ``finished_at -
  started_at``, one job's time on a worker. A job does more than a /predict/: the timeline (2 samples
  a second, here 8) and then the same /predict/ analysis of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.e2e import ServiceProcess, percentile  # noqa: E402
from benchmarks.machine import machine_facts  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "jobs.json"
FINAL = ("done", "failed", "cancelled")
POLL_S = 0.5


def make_videos(folder: Path, count: int) -> list[Path]:
    """``count`` different short H.264 videos of a real face (scikit-image's astronaut or matplotlib's
    Grace Hopper, alternately), each drifting from its own start, so no two files hash alike."""
    from tests.media import astronaut, grace_hopper, write_video

    faces = [astronaut((320, 320)), grace_hopper((320, 320))]
    videos = []
    for number in range(count):
        if (folder / f"clip{number:03d}.mp4").is_file():  # made by an earlier run into this folder
            videos.append(folder / f"clip{number:03d}.mp4")
            continue
        face, start = faces[number % 2], number // 2
        frames = [face[(start + i) % 64 : (start + i) % 64 + 256, (start * 3 + i) % 64 :][:, :256] for i in range(40)]
        videos.append(write_video(folder / f"clip{number:03d}.mp4", frames, fps=10))
    return videos


class Workers:
    """N deepfake-worker processes, each logging to its own file, started and waited on until each
    says it takes jobs (its model loaded)."""

    def __init__(self, count: int, environment: dict[str, str], folder: Path) -> None:
        self.logs = [folder / f"worker{i}.log" for i in range(count)]
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "preprocess_service.jobs.worker"],
                env={**os.environ, **environment, "DEEPFAKE_WORKER_PORT": "0"},
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            for log in self.logs
        ]
        deadline = time.monotonic() + 300
        while not all("deepfake-worker:" in log.read_text(errors="replace") for log in self.logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                self.close()
                raise RuntimeError(
                    "a deepfake-worker did not start: " + " | ".join(log.read_text()[-400:] for log in self.logs)
                )
            time.sleep(0.3)

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


async def run_jobs(url: str, videos: list[Path]) -> tuple[float, list[dict]]:
    """All submitted at once; then the listing polled until every job is finished. The batch's start
    (this machine's clock, which is the service's) and every job's listing entry."""
    async with httpx.AsyncClient(timeout=300) as client:
        started = time.time()
        ids = []
        for video in videos:
            response = await client.post(url + "/jobs", files={"file": (video.name, video.read_bytes())})
            response.raise_for_status()
            ids.append(response.json()["id"])
        wanted = set(ids)
        while True:
            listing = (await client.get(url + "/jobs", params={"per_page": 200})).json()
            finished = [item for item in listing["items"] if item["id"] in wanted and item["state"] in FINAL]
            if len(finished) == len(wanted):
                return started, finished
            if len(wanted) > 200:
                raise ValueError("the listing shows 200 jobs at most: run at most 200 videos a phase")
            await asyncio.sleep(POLL_S)


async def run_predict(url: str, videos: list[Path], concurrency: int) -> tuple[float, list[tuple[float, float, int]]]:
    """N connections, each posting the next video when its answer came back: per answer, (request
    time, time since the batch's start, status)."""
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for video in videos:
        queue.put_nowait(video)
    answers: list[tuple[float, float, int]] = []
    async with httpx.AsyncClient(timeout=600) as client:
        started = time.perf_counter()

        async def connection() -> None:
            while not queue.empty():
                video = queue.get_nowait()
                sent = time.perf_counter()
                response = await client.post(url + "/predict/", files={"file": (video.name, video.read_bytes())})
                now = time.perf_counter()
                answers.append((now - sent, now - started, response.status_code))

        await asyncio.gather(*(connection() for _ in range(concurrency)))
    return started, answers


def _row(mode: str, concurrency: int, wall_s: float, to_result: list[float], each: list[float], failed: int) -> dict:
    return {
        "mode": mode,
        "concurrency": concurrency,
        "videos": len(to_result),
        "failed": failed,
        "wall_s": round(wall_s, 2),
        "videos_per_s": round(len(to_result) / wall_s, 3),
        "to_result_p50_s": round(statistics.median(to_result), 2),
        "to_result_p95_s": round(percentile(to_result, 0.95), 2),
        "each_p50_s": round(statistics.median(each), 3),
        "each_p95_s": round(percentile(each, 0.95), 3),
    }


def predict_phase(url: str, videos: list[Path], warm: list[Path], concurrency: int) -> dict:
    asyncio.run(run_predict(url, warm, concurrency))
    _, answers = asyncio.run(run_predict(url, videos, concurrency))
    wall = max(since for _, since, _ in answers)
    failed = sum(status != 200 for *_, status in answers)
    return _row("predict", concurrency, wall, [s for _, s, _ in answers], [r for r, _, _ in answers], failed)


def jobs_phase(url: str, videos: list[Path], warm: list[Path], count: int, environment: dict, folder: Path) -> dict:
    workers = Workers(count, environment, folder)
    try:
        asyncio.run(run_jobs(url, warm))
        started, items = asyncio.run(run_jobs(url, videos))
    finally:
        workers.close()
    to_result = [_seconds(item["finished_at"]) - started for item in items]
    each = [_seconds(item["finished_at"]) - _seconds(item["started_at"]) for item in items if item["started_at"]]
    failed = sum(item["state"] != "done" for item in items)
    return _row("jobs", count, max(to_result), to_result, each, failed)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| concurrency | way | videos/s | to result p50 / p95 (s) | one video p50 / p95 (s) | failed |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        way = "`POST /predict/`" if row["mode"] == "predict" else "jobs"
        lines.append(
            f"| {row['concurrency']} | {way} | {row['videos_per_s']:.2f} | {row['to_result_p50_s']:.1f} / "
            f"{row['to_result_p95_s']:.1f} | {row['each_p50_s']:.2f} / {row['each_p95_s']:.2f} | {row['failed']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=200, help="videos per phase (at most 200)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (= connections)")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--folder", type=Path, help="where the videos are made (kept; reused when already there)")
    args = parser.parse_args()
    if not 1 <= args.videos <= 200:
        parser.error("--videos: 1 to 200 (one listing page)")

    from deploy.local_servers import start_redis

    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"making {args.videos + max(args.workers)} videos in {folder} ...", flush=True)
    everything = make_videos(folder, args.videos + max(args.workers))
    videos, warm_all = everything[: args.videos], everything[args.videos :]
    redis = start_redis()
    environment = {
        "DEEPFAKE_MODEL_REPOSITORY": str(args.repository),
        "DEEPFAKE_KEYS_DIR": str(folder / "keys"),
        "DEEPFAKE_DATABASE_URL": f"sqlite:///{folder}/history.sqlite3",
        "DEEPFAKE_JOBS_DIR": str(folder / "jobs"),
        "DEEPFAKE_JOBS_BROKER_URL": redis.url,
        "DEEPFAKE_JOBS_MAX_UNFINISHED_PER_OWNER": "10000",
        "DEEPFAKE_HISTORY_CACHE": "false",
        "DEEPFAKE_RATE_LIMIT": "100000/minute",
        "DEEPFAKE_MAX_IN_FLIGHT": "64",
    }
    service = ServiceProcess("embedded", args.repository, {**environment, "DEEPFAKE_JOBS_WORKER": "external"})
    rows = []
    try:
        for count in args.workers:
            warm = warm_all[:count]
            for row in (
                predict_phase(service.url, videos, warm, count),
                jobs_phase(service.url, videos, warm, count, environment, folder),
            ):
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        service.close()
        redis.stop()
    print()
    print(f"{args.videos} videos a phase, on {machine_facts()['processor']}")
    print(markdown(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_facts(),
        "videos_per_phase": args.videos,
        "video": "4 s, 10 fps, 256x256 H.264, a real face; history cache off",
        "setup": "one front (embedded backend) + N deepfake-worker processes (embedded backend), Redis broker, SQLite",
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
