"""End to end: videos/s and p50/p95 latency of POST /predict/ on the seed videos, against the original's way.

The service runs in its own process (``deepfake-serve``) on loopback and is driven by an asyncio
HTTP client at concurrency 1, 2, 4; the baseline (benchmarks/baseline_original.py: per-frame
PyTorch eager, one-frame sequences, face detector per frame) runs in this process at the same
concurrency with threads, on the same videos and weights, in the same run. Prints a table and
writes benchmarks/results/e2e.json.

    python benchmarks/e2e.py [--repeats 2] [--concurrency 1 2 4] [--backends embedded ...]

Precisions side by side (embedded, runtime auto), on the sensitive test model (random weights,
BatchNorm statistics from real crops, residual branches at 0.2; its P(FAKE) varies, so |ΔP| means
something), exported here with every precision and the bound lifted so each is measured:

    python benchmarks/e2e.py --precisions fp32 bf16 int8 [--concurrency 1 2]
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import machine_facts  # noqa: E402
from deploy.ports import free_port, wait_until  # noqa: E402

SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"
RESULTS = Path(__file__).parent / "results" / "e2e.json"
STAGES = ("decode", "faces", "inference")
OVERLAP_STAGES = ("front", "model", "total")  # decode + faces, model calls, request: total < front + model


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarise(
    name: str, concurrency: int, wall_s: float, latencies: list[float], stages: dict[str, list[float]]
) -> dict:
    return {
        "pipeline": name,
        "concurrency": concurrency,
        "videos": len(latencies),
        "videos_per_s": len(latencies) / wall_s,
        "p50_s": statistics.median(latencies),
        "p95_s": percentile(latencies, 0.95),
        "stage_median_s": {k: statistics.median(v) for k, v in stages.items() if v},
    }


class ServiceProcess:
    """``deepfake-serve`` in a child process, waited on until /readyz answers."""

    def __init__(self, backend: str, repository: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DEEPFAKE_BACKEND": backend,
            "DEEPFAKE_MODEL_REPOSITORY": str(repository),
            "DEEPFAKE_MAX_IN_FLIGHT": "64",
            "DEEPFAKE_RATE_LIMIT": "100000/minute",
            # repeated videos must be analyzed each time, not answered from the history
            "DEEPFAKE_HISTORY_CACHE": "false",
            "DEEPFAKE_DATABASE_URL": f"sqlite:///{tempfile.mkdtemp(prefix='e2e-history-')}/history.sqlite3",
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "preprocess_service", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_until(
                self._ready, 120, f"the service ({backend})", alive=lambda: self.process.poll() is None, interval_s=0.3
            )
        except RuntimeError:
            self.close()
            raise

    def _ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def drive_service(url: str, videos: list[Path], concurrency: int) -> tuple[float, list[float], dict]:
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for video in videos:
        queue.put_nowait(video)
    payloads = {video: video.read_bytes() for video in set(videos)}
    latencies, stages = [], {stage: [] for stage in (*STAGES, *OVERLAP_STAGES)}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            video = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(url + "/predict/", files={"file": (video.name, payloads[video])})
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            for stage, seconds in response.json()["stage_times_sec"].items():
                if stage in stages and seconds is not None:
                    stages[stage].append(seconds)

    async with httpx.AsyncClient(timeout=300) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, stages


def drive_baseline(pipeline, videos: list[Path], concurrency: int) -> tuple[float, list[float], dict]:
    def one(video: Path) -> float:
        started = time.perf_counter()
        pipeline.analyze(video)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, videos))
    return time.perf_counter() - started, latencies, {}


def export_sensitive(precisions: list[str], folder: Path, demo: bool = False):
    """The sensitive test model (or with ``demo`` the demo model) at every precision asked for. For
    explicit precisions the bound is lifted (--max-delta 1) so that each is measured and its |ΔP|
    reported instead of enforced; ``auto`` keeps the default bound: it is what a user gets."""
    from export.__main__ import main as export_main
    from export.checkpoint import demo_model
    from testing.sensitive_model import save_checkpoint, sensitive_model

    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    model = demo_model() if demo else sensitive_model(videos, residual_scale=0.2)
    source = ["--demo"] if demo else ["--checkpoint", str(save_checkpoint(model, folder / "sensitive.pth"))]
    exported = ["auto"] if "auto" in precisions else [p for p in precisions if p != "auto"]
    bound = [] if "auto" in precisions else ["--max-delta", "1"]
    code = export_main(
        [*source, "--repository", str(folder / "repository"), "--precision", *exported]
        + ["--calibration-videos", str(SEED_VIDEOS), *bound]
    )
    if code != 0:
        raise SystemExit(f"export failed ({code})")
    return model, folder / "repository"


def served_scores(url: str, videos: list[Path]) -> dict[str, tuple[float, list[float | None]]]:
    """Per video: the verdict's P(FAKE) and every sampled frame's (None where no face)."""
    scores = {}
    for video in sorted(set(videos)):
        answer = httpx.post(url + "/predict/", files={"file": (video.name, video.read_bytes())}, timeout=300).json()
        scores[video.name] = (answer["p_fake"], [row["p_fake"] for row in answer["frames"]])
    return scores


def max_deltas(scores: dict, reference: dict) -> tuple[float, float]:
    """max |ΔP(FAKE)| per frame and per video against the reference precision's answers."""
    frames = [
        abs(a - b)
        for name in reference
        for a, b in zip(scores[name][1], reference[name][1], strict=True)
        if a is not None and b is not None
    ]
    videos = [abs(scores[name][0] - reference[name][0]) for name in reference]
    return max(frames), max(videos)


def measure_cache(repository: Path, videos: list[Path]) -> dict:
    """A re-upload of a file already analyzed by the same model: answered from the history."""
    service = ServiceProcess("embedded", repository, {"DEEPFAKE_HISTORY_CACHE": "true"})
    try:
        first, again = [], []
        with httpx.Client(timeout=300) as client:
            for video in sorted(set(videos)):
                files = {"file": (video.name, video.read_bytes())}
                for times in (first, again):
                    started = time.perf_counter()
                    answer = client.post(service.url + "/predict/", files=files).json()
                    times.append(time.perf_counter() - started)
                assert answer["cached"], "the second upload should come from the history"
    finally:
        service.close()
    return {
        "videos": len(first),
        "first_upload_p50_s": statistics.median(first),
        "re_upload_p50_s": statistics.median(again),
        "ratio": statistics.median(again) / statistics.median(first),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="passes over the seed videos per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["embedded"],
        choices=["embedded", "triton-http", "triton-grpc", "triton-grpc-shm"],
    )
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--cache", action="store_true", help="also time a re-upload answered from the history")
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["fp32", "bf16", "int8", "auto"],
        help="embedded backend at each precision, on the sensitive test model exported here (see above);"
        " auto: exported with --precision auto at the default bound and served with DEEPFAKE_PRECISION=auto",
    )
    parser.add_argument(
        "--demo-model",
        action="store_true",
        help="with --precisions: the demo model instead of the sensitive one (constant answers: any plan passes)",
    )
    args = parser.parse_args()

    from export.checkpoint import demo_model  # torch only here, for the baseline; the service never imports it

    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"}) * args.repeats
    rows = []
    triton = None
    model = None
    scores: dict[str, dict] = {}
    plans: dict[str, dict] = {}
    if args.precisions:
        import tempfile

        workspace = Path(tempfile.mkdtemp(prefix="e2e-precisions-"))
        model, args.repository = export_sensitive(args.precisions, workspace, args.demo_model)
        args.backends = [f"embedded-{precision}" for precision in args.precisions]
    if any(b.startswith("triton") for b in args.backends):
        from deploy.triton_local.server import start_triton  # tools prepared on first use

        triton = start_triton(args.repository)
    try:
        for backend in args.backends:
            env = {}
            if backend.startswith("triton"):
                env = {
                    "DEEPFAKE_TRITON_HTTP_URL": triton.http_url,
                    "DEEPFAKE_TRITON_GRPC_URL": triton.grpc_url,
                    "DEEPFAKE_TRITON_SHM": "1" if backend.endswith("shm") else "0",
                }
            precision = backend.removeprefix("embedded-") if backend.startswith("embedded-") else None
            if precision:
                env = {"DEEPFAKE_PRECISION": precision, "DEEPFAKE_RUNTIME": "auto"}
            service = ServiceProcess("embedded" if precision else backend.removesuffix("-shm"), args.repository, env)
            try:
                model_block = httpx.get(service.url + "/readyz", timeout=30).json()["model"]
                plans[backend] = {key: model_block.get(key) for key in ("precision", "plan", "plan_reason", "runtime")}
                print(f"{backend}: {plans[backend]}", flush=True)
                asyncio.run(drive_service(service.url, videos[:2], 1))  # warm-up
                if precision:
                    scores[precision] = served_scores(service.url, videos)
                for concurrency in args.concurrency:
                    rows.append(
                        summarise(
                            f"service ({backend})",
                            concurrency,
                            *asyncio.run(drive_service(service.url, videos, concurrency)),
                        )
                    )
                    print(_format(rows[-1]), flush=True)
            finally:
                service.close()
        if not args.no_baseline:
            from benchmarks.baseline_original import OriginalPipeline

            baseline = OriginalPipeline(model or demo_model())
            baseline.analyze(videos[0])  # warm-up
            for concurrency in args.concurrency:
                rows.append(
                    summarise("original (baseline)", concurrency, *drive_baseline(baseline, videos, concurrency))
                )
                print(_format(rows[-1]), flush=True)
            baseline.close()
    finally:
        if triton:
            triton.stop()

    cache = measure_cache(args.repository, videos) if args.cache else None
    if cache:
        print(
            f"cache: first upload p50 {cache['first_upload_p50_s']:.3f} s,"
            f" re-upload p50 {cache['re_upload_p50_s']:.3f} s ({cache['ratio']:.3f}x)"
        )
    base = {r["concurrency"]: r["videos_per_s"] for r in rows if r["pipeline"].startswith("original")}
    fp32_p50 = {r["concurrency"]: r["p50_s"] for r in rows if r["pipeline"] == "service (embedded-fp32)"}
    for row in rows:
        row["speedup_vs_baseline"] = (
            row["videos_per_s"] / base[row["concurrency"]] if row["concurrency"] in base else None
        )
        precision = row["pipeline"].removeprefix("service (embedded-").rstrip(")")
        if precision in scores:
            row["precision"] = precision
            row["p50_vs_fp32"] = row["p50_s"] / fp32_p50[row["concurrency"]] if fp32_p50 else None
            if "fp32" in scores:
                row["max_dp_frame"], row["max_dp_video"] = max_deltas(scores[precision], scores["fp32"])
    print()
    print(
        f"{'pipeline':<28} {'conc':>4} {'videos/s':>9} {'p50 s':>7} {'p95 s':>7} {'decode':>7} {'faces':>7}"
        f" {'infer':>7} {'front':>7} {'model':>7} {'total':>7} {'x baseline':>10} {'p50/fp32':>8}"
        f" {'|ΔP| frame':>10} {'|ΔP| video':>10}"
    )
    for row in rows:
        print(_format(row))
    results = RESULTS
    if args.precisions:
        results = RESULTS.with_name("e2e_auto.json" if "auto" in args.precisions else "e2e_precisions.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(
        json.dumps(
            {
                "benchmark": "e2e",
                "videos_per_pass": len(videos) // args.repeats,
                "repeats": args.repeats,
                "machine": machine_facts(),
                "model": (
                    ("demo model" if args.demo_model else "sensitive test model (residual_scale 0.2)")
                    if args.precisions
                    else "repository"
                ),
                "served_plans": plans,
                "rows": rows,
                "cache": cache,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {results}")


def _format(row: dict) -> str:
    stage = row["stage_median_s"]
    cells = " ".join(f"{stage[s]:>7.3f}" if s in stage else f"{'-':>7}" for s in (*STAGES, *OVERLAP_STAGES))
    speedup = row.get("speedup_vs_baseline")
    extra = ""
    if "precision" in row:
        ratio, frame, video = row.get("p50_vs_fp32"), row.get("max_dp_frame"), row.get("max_dp_video")
        extra = (
            f" {f'{ratio:.2f}x' if ratio else '-':>8} {f'{frame:.4f}' if frame is not None else '-':>10}"
            f" {f'{video:.4f}' if video is not None else '-':>10}"
        )
    return (
        f"{row['pipeline']:<28} {row['concurrency']:>4} {row['videos_per_s']:>9.2f} {row['p50_s']:>7.2f}"
        f" {row['p95_s']:>7.2f} {cells} {f'{speedup:.2f}x' if speedup else '-':>10}{extra}"
    )


if __name__ == "__main__":
    main()
