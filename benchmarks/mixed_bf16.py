"""Mixed bf16 on OpenVINO's CPU plugin: the sensitive test model's residual blocks ranked by how much
their bf16 moves P(FAKE), and the top 1, 2, 4, 8, 16 and all of them kept at fp32, against ONNX Runtime
fp32, OpenVINO f32 and whole bf16: max |ΔP(FAKE)| per frame and per video against ONNX Runtime fp32,
on the held-out and on the calibration videos, and backbone faces/s.

The model is the sensitive one (testing/sensitive_model.py, residual branches at 0.2, centred on
frames), exported to a temporary folder; its videos are split as ``deepfake-export`` splits them
(export/calibration.py). Under ``INFERENCE_PRECISION_HINT=bf16`` the CPU plugin keeps a layer at f32
only when its IR layer carries ``<rt_info><attribute name="DisablePrecisionConversion" version="0"
value="dynamic:f16" /></rt_info>`` (the same rt_info set from Python is ignored), so every plan is
the fp32 IR with its kept blocks' layers marked in the XML (blocks named by export/mixed_int8.block_of).
Each compiled plan is checked from its runtime model: exactly the kept blocks' Convolutions run f32,
every other one bf16; the script stops if not.

Blocks are ranked on the calibration crops only (each block alone kept fp32, the mean |ΔP(FAKE)| per
frame left, as export/plan_search.py ranks blocks for mixed int8). Faces/s is the plan search's
(batch 30, median of 5 after a warm-up), measured for every plan in each round, the order reversed
every other round, and the median over rounds reported with its ratio to OpenVINO f32.
Prints a table and writes benchmarks/results/mixed_bf16.json.

    python benchmarks/mixed_bf16.py [--rounds 3] [--max-delta 0.01]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import machine_facts  # noqa: E402

SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"
RESULTS = Path(__file__).parent / "results" / "mixed_bf16.json"
RESIDUAL_SCALE = 0.2
KEPT_COUNTS = (1, 2, 4, 8, 16)  # and then every block
KEEP_FP32 = '<attribute name="DisablePrecisionConversion" version="0" value="dynamic:f16" />'
CONFIG = {"PERFORMANCE_HINT": "LATENCY"}  # the service's OpenVinoModel settings, precision aside


def say(message: str) -> None:
    print(message, flush=True)


def marked_ir(fp32_xml: Path, kept: set[str], out: Path) -> Path:
    """The fp32 IR with every layer of the ``kept`` blocks carrying the KEEP_FP32 attribute."""
    from export.mixed_int8 import block_of

    tree = ElementTree.parse(fp32_xml)
    attribute = ElementTree.fromstring(KEEP_FP32)
    marked = set()
    for layer in tree.getroot().iter("layer"):
        if block_of(layer.get("name", "")) not in kept:
            continue
        rt_info = layer.find("rt_info")
        if rt_info is None:
            ports = [i for i, child in enumerate(layer) if child.tag in ("input", "output")]
            rt_info = ElementTree.Element("rt_info")
            layer.insert(ports[0] if ports else len(layer), rt_info)
        rt_info.insert(0, attribute)
        marked.add(block_of(layer.get("name", "")))
    if marked != kept:
        raise SystemExit(f"blocks to keep with no layer in the IR: {sorted(kept - marked)}")
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return out


def conv_precisions(compiled) -> dict[str, str]:
    """Every Convolution of the compiled model's runtime graph → the precision it runs in."""
    found = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            found[op.get_friendly_name()] = info["runtimePrecision"].astype(str)
    return found


def assert_kept(plan: str, compiled, kept: Iterable[str], every: list[str]) -> str:
    """Fail unless exactly the ``kept`` blocks' Convolutions run f32 and all the others bf16."""
    from export.mixed_int8 import block_of

    kept = set(kept)
    precisions = conv_precisions(compiled)
    wrong = [
        f"{name}: {precision}"
        for name, precision in precisions.items()
        if precision != ("f32" if block_of(name) in kept else "bf16")
    ]
    blocks = {block_of(name) for name in precisions}
    if wrong or not kept <= blocks or (every and blocks != set(every)):
        raise SystemExit(
            f"{plan}: the runtime model does not keep exactly {sorted(kept)} at f32:"
            f" {wrong or sorted(kept - blocks)}; the DisablePrecisionConversion mark was not honoured"
        )
    f32 = sum(precision == "f32" for precision in precisions.values())
    return f"{f32}/{len(precisions)}"


def runner(compiled) -> Callable[[np.ndarray], np.ndarray]:
    """The service's OpenVinoModel.run on one compiled model: one infer request, output copied out."""
    from model_contract import BACKBONE_INPUT, BACKBONE_OUTPUT

    request = compiled.create_infer_request()

    def run(crops: np.ndarray) -> np.ndarray:
        request.infer({BACKBONE_INPUT: crops})
        return np.array(request.get_tensor(BACKBONE_OUTPUT).data, copy=True)

    return run


def memoised(run: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """The reference's features, computed once per video's crops (the same arrays, checked again and again)."""
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def cached(crops: np.ndarray) -> np.ndarray:
        if id(crops) not in cache:
            cache[id(crops)] = (crops, run(crops))  # the array kept alive: its id stays its own
        return cache[id(crops)][1]

    return cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="speed rounds, every plan once per round")
    parser.add_argument("--max-delta", type=float, default=0.01, help="the |ΔP(FAKE)| bound (deepfake-export's)")
    args = parser.parse_args()
    started = time.perf_counter()

    import onnxruntime
    import openvino as ov

    from export.calibration import calibration_set
    from export.mixed_int8 import block_of
    from export.onnx_export import DEFAULT_OPSET
    from export.plan_search import RANKING_CROPS_PER_VIDEO, SPEED_BATCH, SPEED_REPEATS, PlanSearch, faces_per_second
    from export.precision import check_precision
    from export.repository import export_repository, model_file
    from export.triton_config import ONNX
    from model_contract import BACKBONE_MODEL, TEMPORAL_MODEL
    from preprocess_service.inference.runtimes import open_model
    from testing.sensitive_model import sensitive_model

    core = ov.Core()
    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    with tempfile.TemporaryDirectory(prefix="mixed-bf16-") as scratch:
        folder = Path(scratch)
        say(f"building the sensitive model (residual branches at {RESIDUAL_SCALE}) on {len(videos)} seed videos …")
        model = sensitive_model(videos, residual_scale=RESIDUAL_SCALE)
        repository = folder / "repository"
        export_repository(model, repository, 1, DEFAULT_OPSET)
        backbone = model_file(repository, BACKBONE_MODEL, ONNX, 1)
        temporal = model_file(repository, TEMPORAL_MODEL, ONNX, 1)
        calibration = calibration_set(SEED_VIDEOS, model.preprocessing)
        search = PlanSearch(model, backbone, temporal, calibration, folder, args.max_delta, ("onnxruntime", "openvino"))
        reference = memoised(search.reference)
        say(
            f"exported and split after {time.perf_counter() - started:.0f}s: held out {calibration.held_out_names},"
            f" calibration {calibration.calibration_names}"
        )

        ir = folder / "ir"
        ir.mkdir()
        fp32_xml, fp32_bin = ir / "fp32.xml", ir / "fp32.bin"
        ov.save_model(core.read_model(str(backbone)), str(fp32_xml), compress_to_fp16=False)

        def compile_kept(kept: set[str], name: str):
            xml = marked_ir(fp32_xml, kept, ir / f"{name}.xml")
            compiled = core.compile_model(
                core.read_model(str(xml), str(fp32_bin)), "CPU", {**CONFIG, "INFERENCE_PRECISION_HINT": "bf16"}
            )
            applied = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
            if applied != "bf16":
                raise SystemExit(f"this CPU compiles bf16 as {applied}: no bf16 to measure")
            return compiled

        unmarked = compile_kept(set(), "none")
        blocks = list(dict.fromkeys(block_of(name) for name in conv_precisions(unmarked)))  # graph order
        assert_kept("bf16, no block kept", unmarked, set(), blocks)

        # ----- ranking, on the calibration crops only (as PlanSearch.mixed_candidates ranks int8 blocks)
        subset = [crops[:: max(1, len(crops) // RANKING_CROPS_PER_VIDEO)] for crops in calibration.calibration]
        subset_reference = [search.frame_p_fake(search.reference(crops)) for crops in subset]

        def ranking_error(run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
            return np.concatenate(
                [np.abs(search.frame_p_fake(run(c)) - r) for c, r in zip(subset, subset_reference, strict=True)]
            )

        whole = ranking_error(runner(unmarked))
        say(
            f"ranking {len(blocks)} blocks on {sum(map(len, subset))} calibration crops"
            f" (whole bf16: mean |ΔP| {whole.mean():.4f}, max {whole.max():.4f}) …"
        )
        ranking = []
        for block in blocks:
            compiled = compile_kept({block}, "probe")
            convs = assert_kept(f"bf16, {block} kept", compiled, {block}, blocks)
            left = float(ranking_error(runner(compiled)).mean())
            ranking.append({"block": block, "f32_convs": convs, "mean_delta_left": left})
            say(f"  {block:<28} f32 convs {convs:>5}  mean |ΔP| left {left:.4f}")
        ranked = [row["block"] for row in sorted(ranking, key=lambda row: row["mean_delta_left"])]

        # ----- the plans
        plans: dict[str, dict] = {}
        plans["ORT fp32"] = {"run": search.reference, "runtime": "onnxruntime", "kept": [], "f32_convs": "-"}
        for precision in ("fp32", "bf16"):
            opened = open_model(backbone, "openvino", precision)  # the service's own path
            name = "OV f32" if precision == "fp32" else "OV bf16 (whole)"
            convs = assert_kept(name, opened.compiled, blocks if precision == "fp32" else [], blocks)
            plans[name] = {
                "run": runner(opened.compiled),
                "runtime": opened.runtime,
                "kept": [],
                "f32_convs": convs,
            }
        for count in (*[k for k in KEPT_COUNTS if k < len(blocks)], len(blocks)):
            kept = ranked[:count]
            compiled = compile_kept(set(kept), f"kept{count}")
            name = f"OV bf16, {'all' if count == len(blocks) else 'top'} {count} kept fp32"
            plans[name] = {
                "run": runner(compiled),
                "runtime": "openvino (bf16, marked IR)",
                "kept": kept,
                "f32_convs": assert_kept(name, compiled, kept, blocks),
            }
        say(f"every plan's runtime model checked: exactly its kept blocks' Convolutions run f32, {len(plans)} plans")

        for name, plan in plans.items():
            for split, crops in (("held_out", calibration.held_out), ("calibration", calibration.calibration)):
                rows = check_precision(
                    name, {"x": plan["run"]}, reference, search.temporal, crops, args.max_delta, model.max_time
                )
                for row in rows:
                    plan[f"{split}_{row.scope}"] = row.max_abs_diff
                    plan[f"{split}_{row.scope}s"] = row.count

        speed_crops = calibration.calibration_crops
        for round_ in range(args.rounds):
            order = list(plans) if round_ % 2 == 0 else list(reversed(plans))
            for name in order:
                plans[name].setdefault("faces_per_s_rounds", []).append(
                    faces_per_second(plans[name]["run"], speed_crops)
                )
            say(f"round {round_ + 1}: " + ", ".join(f"{n} {p['faces_per_s_rounds'][-1]:.1f}" for n, p in plans.items()))

    f32 = statistics.median(plans["OV f32"]["faces_per_s_rounds"])
    rows = []
    for name, plan in plans.items():
        speed = statistics.median(plan["faces_per_s_rounds"])
        deltas = [plan[f"{split}_{scope}"] for split in ("held_out", "calibration") for scope in ("frame", "video")]
        within = max(deltas) <= args.max_delta
        rows.append(
            {
                "plan": name,
                "runtime": plan["runtime"],
                "kept": plan["kept"],
                "f32_convs": plan["f32_convs"],
                **{key: value for key, value in plan.items() if key.startswith(("held_out_", "calibration_"))},
                "within_bound": within,
                "faces_per_s": speed,
                "faces_per_s_rounds": plan["faces_per_s_rounds"],
                "vs_ov_f32": speed / f32,
            }
        )
    elapsed = time.perf_counter() - started

    header = (
        f"{'plan':<28} {'f32 convs':>9} {'held frame':>10} {'video':>7} {'calib frame':>11} {'video':>7}"
        f" {'within':>6} {'faces/s':>8} {'vs OV f32':>9}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for r in rows:
        print(
            f"{r['plan']:<28} {r['f32_convs']:>9} {r['held_out_frame']:>10.4f} {r['held_out_video']:>7.4f}"
            f" {r['calibration_frame']:>11.4f} {r['calibration_video']:>7.4f} {'yes' if r['within_bound'] else 'NO':>6}"
            f" {r['faces_per_s']:>8.1f} {r['vs_ov_f32']:>8.2f}x"
        )
    useful = [r["plan"] for r in rows if r["within_bound"] and r["vs_ov_f32"] > 1 and r["plan"].startswith("OV bf16")]
    frames = {s: sum(map(len, getattr(calibration, s))) for s in ("held_out", "calibration")}
    print(
        f"max |ΔP(FAKE)| against ORT fp32, bound {args.max_delta:g}; held out: {', '.join(calibration.held_out_names)}"
        f" ({frames['held_out']} frames), calibration: {', '.join(calibration.calibration_names)}"
        f" ({frames['calibration']} frames); faces/s: batch {SPEED_BATCH}, median of {SPEED_REPEATS}, median of"
        f" {args.rounds} rounds\nbf16 plans within the bound and faster than OV f32: {', '.join(useful) or 'none'}"
        f"\nranked (least |ΔP| left first): {', '.join(ranked)}\nran {elapsed:.0f}s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "mixed_bf16",
                "model": f"sensitive (residual branches at {RESIDUAL_SCALE}, centred on frames)",
                "bound": args.max_delta,
                "keep_fp32_attribute": KEEP_FP32,
                "rounds": args.rounds,
                "speed_batch": SPEED_BATCH,
                "speed_repeats": SPEED_REPEATS,
                "openvino": ov.get_version(),
                "onnxruntime": onnxruntime.__version__,
                "machine": machine_facts(),
                "held_out": calibration.held_out_names,
                "calibration": calibration.calibration_names,
                "frames": frames,
                "ranking_crops": sum(map(len, subset)),
                "whole_bf16_ranking_delta": {"mean": float(whole.mean()), "max": float(whole.max())},
                "ranking": ranking,
                "ranked": ranked,
                "rows": rows,
                "within_and_faster": useful,
                "runtime_s": round(elapsed, 1),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
