"""Load, soak and fault tests of the running service, on loopback; prints tables, writes JSON.

1. Concurrency 1 → 16 on the seed videos (embedded backend, DEEPFAKE_MAX_IN_FLIGHT=8): above the
   limit, 503 + Retry-After; below it, 0 errors of any other kind. Peak RSS per level.
2. Soak: 300 requests at concurrency 4; RSS after warm-up against RSS at the end (flat = ± 5 %).
3. Faults: the service on a real local Triton (HTTP, then gRPC), under load at concurrency 4, while
   Triton is killed (then restarted) and frozen (SIGSTOP for a while, then SIGCONT): no 500, every
   request answered within its deadline (2 model calls x DEEPFAKE_TRITON_TIMEOUT_S) + 2 s, and
   the service recovers without a restart.

    python benchmarks/load.py [--soak 300] [--skip-faults | --only-faults]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.e2e import SEED_VIDEOS, ServiceProcess  # noqa: E402
from benchmarks.machine import machine_facts  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "load.json"
MAX_IN_FLIGHT = 8
TRITON_TIMEOUT_S = 5.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Peak resident memory of a process, sampled every 50 ms while a block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


async def drive(url: str, videos: list[Path], concurrency: int, count: int) -> list[dict]:
    """``count`` POST /predict/ requests, ``concurrency`` at a time; one record per request."""
    payloads = {video: video.read_bytes() for video in videos}
    queue = [videos[i % len(videos)] for i in range(count)]
    records: list[dict] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            video = queue.pop()
            started = time.perf_counter()
            try:
                response = await client.post(url + "/predict/", files={"file": (video.name, payloads[video])})
                status = response.status_code
                code = response.json().get("error", {}).get("code") if status != 200 else None
                retry_after = response.headers.get("retry-after")
            except httpx.HTTPError as error:
                status, code, retry_after = 0, type(error).__name__, None
            records.append(
                {"status": status, "code": code, "retry_after": retry_after, "latency_s": time.perf_counter() - started}
            )

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return records


def summary(records: list[dict]) -> dict:
    latencies = [r["latency_s"] for r in records]
    return {
        "requests": len(records),
        "statuses": dict(Counter(f"{r['status']} {r['code'] or ''}".strip() for r in records)),
        "p50_s": statistics.median(latencies),
        "max_s": max(latencies),
        "errors_other_than_503": sum(1 for r in records if r["status"] not in (200, 503)),
        "503_without_retry_after": sum(1 for r in records if r["status"] == 503 and not r["retry_after"]),
    }


def concurrency_sweep(service: ServiceProcess, videos: list[Path]) -> list[dict]:
    rows = []
    for concurrency in (1, 2, 4, 8, 16):
        with RssSampler(service.process.pid) as rss:
            records = asyncio.run(drive(service.url, videos, concurrency, max(10, 2 * concurrency)))
        rows.append({"concurrency": concurrency, **summary(records), "peak_rss_mb": rss.peak})
        print(
            f"concurrency {concurrency:>2}: {rows[-1]['statuses']} p50 {rows[-1]['p50_s']:.2f}s "
            f"peak RSS {rss.peak:.0f} MB",
            flush=True,
        )
    return rows


def soak(service: ServiceProcess, videos: list[Path], count: int) -> dict:
    warm_up = asyncio.run(drive(service.url, videos, 4, 40))
    after_warm_up = rss_mb(service.process.pid)
    records = asyncio.run(drive(service.url, videos, 4, count))
    at_end = rss_mb(service.process.pid)
    result = {
        **summary(warm_up + records),
        "rss_after_warm_up_mb": after_warm_up,
        "rss_at_end_mb": at_end,
        "rss_change": at_end / after_warm_up - 1,
    }
    print(
        f"soak {count}: {result['statuses']} RSS {after_warm_up:.0f} -> {at_end:.0f} MB "
        f"({100 * result['rss_change']:+.1f} %)",
        flush=True,
    )
    return result


def fault(service_url: str, triton, videos: list[Path], kind: str) -> dict:
    """Load at concurrency 4 for ~25 s; Triton killed or frozen from second 5 to second 13."""
    records: list[dict] = []

    def load() -> None:
        records.extend(asyncio.run(drive(service_url, videos, 4, 40)))

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(5)
    if kind == "killed":
        triton.stop(kill=True)
        time.sleep(8)
        triton.restart()
    else:
        triton.process.send_signal(signal.SIGSTOP)
        time.sleep(8)
        triton.process.send_signal(signal.SIGCONT)
    thread.join()
    recovered = asyncio.run(drive(service_url, videos, 1, 3))
    bound = 2 * TRITON_TIMEOUT_S + 2 + max(r["latency_s"] for r in recovered)
    result = {
        **summary(records),
        "deadline_bound_s": bound,
        "over_deadline": sum(1 for r in records if r["latency_s"] > bound),
        "recovered": all(r["status"] == 200 for r in recovered),
    }
    print(
        f"triton {kind}: {result['statuses']} max {result['max_s']:.1f}s (bound {bound:.1f}s) "
        f"recovered {result['recovered']}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--soak", type=int, default=300)
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--only-faults", action="store_true", help="keep the other results already in the JSON")
    args = parser.parse_args()
    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    env = {"DEEPFAKE_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT), "DEEPFAKE_RATE_LIMIT": "100000/minute"}
    results: dict = {"benchmark": "load", "max_in_flight": MAX_IN_FLIGHT}
    if args.only_faults:
        results = json.loads(RESULTS.read_text())
    else:
        service = ServiceProcess("embedded", args.repository, env)
        try:
            results["concurrency"] = concurrency_sweep(service, videos)
            results["soak"] = soak(service, videos, args.soak)
        finally:
            service.close()
    if not args.skip_faults:
        from deploy.triton_local.server import start_triton

        triton = start_triton(args.repository)
        results["faults"] = {}
        try:
            for backend, url_key in (
                ("triton-http", "DEEPFAKE_TRITON_HTTP_URL"),
                ("triton-grpc", "DEEPFAKE_TRITON_GRPC_URL"),
            ):
                url = triton.http_url if backend == "triton-http" else triton.grpc_url
                service = ServiceProcess(
                    backend, args.repository, {**env, url_key: url, "DEEPFAKE_TRITON_TIMEOUT_S": str(TRITON_TIMEOUT_S)}
                )
                try:
                    for kind in ("killed", "frozen"):
                        results["faults"][f"{backend} {kind}"] = fault(service.url, triton, videos, kind)
                finally:
                    service.close()
        finally:
            triton.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine_facts(), **results}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
