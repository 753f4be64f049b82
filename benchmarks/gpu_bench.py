"""The GPU half of ``benchmarks/gpu_bench.sh`` (run that: it checks for a GPU and sets paths).

1. Backbone faces/s at batch 1-256, as served: uint8 crops from host memory in, features back in
   host memory, for every engine this machine has — PyTorch fp32 / fp16 / bf16 (autocast), ONNX
   Runtime's CUDA and TensorRT FP16 providers (onnxruntime-gpu), TensorRT FP16 itself (the
   ``tensorrt`` wheel). An engine that is not installed, or fails, is a row saying why.
2. Videos/s end to end: ``--fronts`` service processes (``deepfake-serve --backend triton-grpc``)
   fed concurrently with the seed videos, all calling one Triton at DEEPFAKE_TRITON_GRPC_URL.
   Skipped, with the reason in the JSON, where no Triton is given or the serving stack is missing.

Only PyTorch is required; the demo model is used (speed does not depend on weight values).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from export.architectures import Backbone  # noqa: E402
from export.checkpoint import demo_model  # noqa: E402

BATCHES = (1, 8, 32, 64, 128, 256)
SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"


def measure(run: Callable[[np.ndarray], object], faces: np.ndarray, budget_s: float) -> float:
    """Median faces/s over calls within ``budget_s`` (at least 3), after two warm-up calls."""
    run(faces)
    run(faces)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 30):
        started = time.perf_counter()
        run(faces)  # every engine returns host memory: the call has finished on the GPU
        times.append(time.perf_counter() - started)
    return len(faces) / statistics.median(times)


def torch_engine(backbone: torch.nn.Module, dtype: torch.dtype | None) -> Callable[[np.ndarray], object]:
    def run(faces: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            return backbone(torch.from_numpy(faces).cuda(non_blocking=True)).float().cpu().numpy()

    return run


def onnxruntime_engine(onnx_path: Path, provider: str, cache: Path) -> Callable[[np.ndarray], object]:
    import onnxruntime

    if provider not in onnxruntime.get_available_providers():
        raise RuntimeError(f"{provider} not available (onnxruntime-gpu not installed)")
    options: dict[str, object] = {}
    if provider == "TensorrtExecutionProvider":
        shape = "faces:{}x180x180x3"
        options = {
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_profile_min_shapes": shape.format(1),
            "trt_profile_opt_shapes": shape.format(64),
            "trt_profile_max_shapes": shape.format(max(BATCHES)),
        }
    session = onnxruntime.InferenceSession(
        str(onnx_path), providers=[(provider, options), "CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"{provider} did not take the model ({session.get_providers()})")
    return lambda faces: session.run(None, {"faces": faces})[0]


def tensorrt_engine(onnx_path: Path) -> Callable[[np.ndarray], object]:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        raise RuntimeError("TensorRT could not parse the ONNX file: " + str(parser.get_error(0)))
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape("faces", (1, 180, 180, 3), (64, 180, 180, 3), (max(BATCHES), 180, 180, 3))
    config.add_optimization_profile(profile)
    engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()

    def run(faces: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(faces).cuda(non_blocking=True)
        outputs = torch.empty((len(faces), 2048), dtype=torch.float32, device="cuda")
        context.set_input_shape("faces", tuple(faces.shape))
        context.set_tensor_address("faces", inputs.data_ptr())
        context.set_tensor_address("features", outputs.data_ptr())
        torch.cuda.current_stream().synchronize()
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return outputs.cpu().numpy()

    return run


def backbone_rows(budget_s: float) -> list[dict]:
    from export.onnx_export import export_backbone_onnx

    model = demo_model()
    backbone = Backbone(model.detector, model.preprocessing).eval().cuda()
    folder = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    onnx_path = folder / "backbone.onnx"
    export_backbone_onnx(model, onnx_path)
    engines: dict[str, Callable[[], Callable[[np.ndarray], object]]] = {
        "pytorch fp32": lambda: torch_engine(backbone, None),
        "pytorch fp16": lambda: torch_engine(backbone, torch.float16),
        "pytorch bf16": lambda: torch_engine(backbone, torch.bfloat16),
        "onnxruntime cuda fp32": lambda: onnxruntime_engine(onnx_path, "CUDAExecutionProvider", folder),
        "onnxruntime tensorrt fp16": lambda: onnxruntime_engine(onnx_path, "TensorrtExecutionProvider", folder),
        "tensorrt fp16": lambda: tensorrt_engine(onnx_path),
    }
    faces = np.random.default_rng(0).integers(0, 256, (max(BATCHES), 180, 180, 3), dtype=np.uint8)
    rows = []
    for name, build in engines.items():
        started = time.perf_counter()
        try:
            run = build()
            rates = {batch: measure(run, faces[:batch], budget_s) for batch in BATCHES}
            rows.append({"engine": name, "faces_per_s": rates, "setup_s": time.perf_counter() - started})
        except Exception as error:  # not installed, or this GPU/driver refuses: say so, go on
            rows.append({"engine": name, "error": f"{type(error).__name__}: {error}"[:300]})
        print(_format(rows[-1]), flush=True)
    return rows


def end_to_end(fronts: int, seconds: float) -> dict:
    url = os.environ.get("DEEPFAKE_TRITON_GRPC_URL")
    if not url:
        return {"skipped": "no Triton given: set DEEPFAKE_TRITON_GRPC_URL (e.g. the official container)"}
    try:
        from benchmarks.e2e import ServiceProcess, drive_service
    except ImportError as error:
        return {"skipped": f"the serving stack is not installed here: {error}"}
    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    services = [ServiceProcess("triton-grpc", ROOT / "model_repository", {"DEEPFAKE_TRITON_GRPC_URL": url})]
    try:
        services += [
            ServiceProcess("triton-grpc", ROOT / "model_repository", {"DEEPFAKE_TRITON_GRPC_URL": url})
            for _ in range(fronts - 1)
        ]

        async def drive_all() -> tuple[float, int]:
            per_front = max(1, int(seconds / 2))  # ~2 s per video per front at concurrency 2
            started = time.perf_counter()
            results = await asyncio.gather(
                *(drive_service(service.url, videos * (per_front // len(videos) + 1), 2) for service in services)
            )
            return time.perf_counter() - started, sum(len(latencies) for _, latencies, _ in results)

        asyncio.run(drive_service(services[0].url, videos[:2], 1))  # warm-up
        wall, count = asyncio.run(drive_all())
        return {"fronts": fronts, "videos": count, "wall_s": wall, "videos_per_s": count / wall}
    finally:
        for service in services:
            service.close()


def _format(row: dict) -> str:
    if "error" in row:
        return f"{row['engine']:<26} unavailable: {row['error']}"
    cells = " ".join(f"{rate:>8.0f}" for rate in row["faces_per_s"].values())
    return f"{row['engine']:<26} {cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fronts", type=int, default=4, help="service processes feeding one Triton")
    parser.add_argument("--budget-s", type=float, default=3.0, help="timing budget per engine and batch")
    parser.add_argument("--e2e-s", type=float, default=60.0, help="end-to-end drive length")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_bench: PyTorch sees no CUDA device; it measures GPUs only.", file=sys.stderr)
        sys.exit(3)

    print(f"{'engine':<26} " + " ".join(f"{'b=' + str(b):>8}" for b in BATCHES) + "   (faces/s)")
    rows = backbone_rows(args.budget_s)
    e2e = end_to_end(args.fronts, args.e2e_s)
    print(f"end to end: {e2e}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_bench.json").write_text(
        json.dumps(
            {
                "benchmark": "gpu_bench",
                "gpu": torch.cuda.get_device_name(),
                "torch": torch.__version__,
                "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
                "input": "uint8 crops 180x180 from host memory, features back to host memory",
                "backbone": rows,
                "end_to_end": e2e,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out / 'gpu_bench.json'}")


if __name__ == "__main__":
    main()
