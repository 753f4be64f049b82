"""The backbone beside the decoding (DEEPFAKE_OVERLAP_CHUNK): one request at a time, each chunk size
against the sequential path (0), same run, alternating.

``pipeline.Analyzer`` is driven directly (no HTTP: the same analysis a request runs), with one backend,
face detector and pair of pools shared by every chunk size. Each round analyses every video once per
chunk size, the order of the sizes reversed every other round so a load change on a shared machine
hits them alike. Per chunk size: p50 over the runs of ``total`` (the request), ``front`` (decoding
and faces), ``model`` (backbone calls and head, wherever they fell) and front + model; with the
overlap, total < front + model, and at best total = max(front, model).

``--remote-ms-per-crop X`` replaces the backbone by a sleep of X ms per crop (plus ``--remote-ms-per-call``):
a model on another device (Triton on a GPU), which takes no CPU from decoding, so what the overlap can
give shows apart from the CPU both share here. Its features are zeros: only its times mean something.

    python benchmarks/overlap.py [--model-repository model_repository] [--chunks 0 4 8 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `make serve` and the image run the service

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import machine_facts  # noqa: E402
from model_contract import FEATURE_DIM  # noqa: E402
from model_contract.identity import ModelInfo  # noqa: E402
from preprocess_service.faces import FaceDetector  # noqa: E402
from preprocess_service.inference import InferenceBackend, make_backend  # noqa: E402
from preprocess_service.metrics import Metrics  # noqa: E402
from preprocess_service.pipeline import Analyzer  # noqa: E402
from preprocess_service.settings import Settings  # noqa: E402

SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"
KEYS = ("total", "front", "model", "decode", "faces", "inference")


class RemoteBackbone:
    """The real backend, its backbone replaced by a sleep: a model that takes no CPU from here."""

    def __init__(self, backend: InferenceBackend, per_crop_s: float, per_call_s: float) -> None:
        self._backend, self._per_crop_s, self._per_call_s = backend, per_crop_s, per_call_s
        self.name = f"{backend.name} (backbone: sleep)"

    async def start(self) -> ModelInfo:
        return await self._backend.start()

    async def ready(self) -> bool:
        return await self._backend.ready()

    async def features(self, faces: np.ndarray) -> np.ndarray:
        await asyncio.sleep(self._per_call_s + self._per_crop_s * len(faces))
        return np.zeros((len(faces), FEATURE_DIM), np.float32)

    async def probabilities(self, features: np.ndarray) -> np.ndarray:
        return await self._backend.probabilities(features)

    async def close(self) -> None:
        await self._backend.close()


async def measure(arguments: argparse.Namespace) -> dict:
    videos = sorted(p for p in arguments.videos.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    if arguments.only:
        videos = [video for video in videos if any(name in video.name for name in arguments.only)]
    settings = {c: Settings(model_repository=arguments.model_repository, overlap_chunk=c) for c in arguments.chunks}
    first = settings[arguments.chunks[0]]
    backend: InferenceBackend = make_backend(first)
    if arguments.remote_ms_per_crop is not None:
        backend = RemoteBackbone(backend, arguments.remote_ms_per_crop / 1000, arguments.remote_ms_per_call / 1000)
    detector = FaceDetector(
        first.face_model_path, first.face_min_confidence, first.face_margin, first.face_haar_max_side
    )
    pool = ThreadPoolExecutor(first.cpu_threads, thread_name_prefix="decode")  # as services.py sizes them
    face_pool = ThreadPoolExecutor(first.cpu_threads, thread_name_prefix="faces")
    analyzers = {c: Analyzer(s, detector, backend, pool, Metrics(), face_pool) for c, s in settings.items()}
    runs: dict[int, list[dict]] = {c: [] for c in arguments.chunks}
    try:
        for analyzer in analyzers.values():
            await analyzer.model_info()
        await analyzers[arguments.chunks[0]].analyze(videos[0])  # warm-up: first calls allocate
        for round_ in range(arguments.rounds):
            for video in videos:
                for chunk in arguments.chunks if round_ % 2 == 0 else arguments.chunks[::-1]:
                    analysis = await analyzers[chunk].analyze(video)
                    runs[chunk].append({"video": video.name, **analysis.timings})
    finally:
        await backend.close()
        pool.shutdown()
        face_pool.shutdown()
        detector.close()
    return {
        "machine": machine_facts(),
        "model_repository": str(arguments.model_repository),
        "remote_ms_per_crop": arguments.remote_ms_per_crop,
        "remote_ms_per_call": arguments.remote_ms_per_call,
        "videos": [video.name for video in videos],
        "rounds": arguments.rounds,
        "p50_s": {c: {k: statistics.median(r[k] for r in runs[c]) for k in KEYS} for c in arguments.chunks},
        "p50_front_plus_model_s": {c: statistics.median(r["front"] + r["model"] for r in runs[c]) for c in runs},
        "p50_max_front_model_s": {c: statistics.median(max(r["front"], r["model"]) for r in runs[c]) for c in runs},
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--videos", type=Path, default=SEED_VIDEOS)
    parser.add_argument("--only", nargs="*", help="videos whose name contains one of these (default: all)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 4, 8, 15], help="0 = sequential")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--remote-ms-per-crop", type=float, default=None)
    parser.add_argument("--remote-ms-per-call", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None, help="write every run here too")
    arguments = parser.parse_args(argv)
    result = asyncio.run(measure(arguments))
    print(f"{result['machine']['processor']}, {result['machine']['usable_cpus']} usable CPUs; ", end="")
    print(f"{len(result['videos'])} videos x {arguments.rounds} rounds per chunk size; p50 seconds")
    print("| chunk | total | front | model | front + model | max(front, model) | inference after front |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for chunk, p50 in result["p50_s"].items():
        print(
            f"| {chunk or 'off'} | {p50['total']:.3f} | {p50['front']:.3f} | {p50['model']:.3f} "
            f"| {result['p50_front_plus_model_s'][chunk]:.3f} | {result['p50_max_front_model_s'][chunk]:.3f} "
            f"| {p50['inference']:.3f} |"
        )
    if arguments.json:
        arguments.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
