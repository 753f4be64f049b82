"""``deepfake-export``: a user's checkpoint (or a demo model) → a Triton model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.calibration import CalibrationError, calibration_set
from export.checkpoint import (
    FAMILIES,
    CheckpointError,
    LoadedModel,
    Options,
    demo_model,
    load_checkpoint,
    unconfirmed_options,
)
from export.onnx_export import DEFAULT_OPSET
from export.parity import ParityError, format_table
from export.plan_search import format_plans
from export.precision import DEFAULT_MAX_DELTA, PrecisionParityError, format_rows
from export.repository import export_auto, export_reduced_precisions, export_repository
from model_contract import PRECISIONS, PROFILES
from model_contract.precision_plans import PLANS_FILE
from model_contract.repository_digests import digest_of_list, pin_hint, write_digest_list

EXIT_BAD_CHECKPOINT = 2
EXIT_PARITY = 1
EXIT_UNLISTABLE = 3  # the models are written, but the repository holds a symlink or special file: no SHA256SUMS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deepfake-export", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a trained checkpoint.pth (state dict)")
    source.add_argument("--demo", action="store_true", help="seeded random weights: UNTRAINED, for trying the system")
    parser.add_argument(
        "--family", choices=FAMILIES, help="checkpoint family (default: detected from the keys; attention for --demo)"
    )
    parser.add_argument(
        "--heads",
        type=int,
        default=4,
        help="attention heads (attention family; default 4, as the served application; another definition used 8)",
    )
    parser.add_argument(
        "--activation",
        choices=("gelu", "relu"),
        default="gelu",
        help="attention family MLP activation (default gelu; the 8-head definition used relu)",
    )
    parser.add_argument(
        "--legacy-batch-first",
        action="store_true",
        help="legacy family: the LSTM was built with batch_first=True (the served app had False)",
    )
    parser.add_argument(
        "--preprocessing",
        choices=sorted(PROFILES),
        help="how frames become model input (default: attention-default or legacy-default by family)",
    )
    parser.add_argument("--repository", type=Path, default=Path("model_repository"), help="Triton model repository")
    parser.add_argument("--version", type=int, default=1, help="model version folder (default 1)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--torchscript", action="store_true", help="also write pytorch_libtorch models (*_libtorch)")
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=(*PRECISIONS, "auto"),
        default=["fp32"],
        help="backbone precisions to write (fp32 always is): bf16 -> deepfake_backbone_bf16 (OpenVINO),"
        " int8 -> deepfake_backbone_int8 (QDQ ONNX); each checked on held-out videos. auto: measure fp32,"
        " bf16, int8 and mixed int8 plans, publish the fastest within --max-delta, print the table and"
        f" write it to {PLANS_FILE} (what the service's DEEPFAKE_PRECISION=auto serves)",
    )
    parser.add_argument(
        "--calibration-videos",
        type=Path,
        help="folder of videos like the ones served: int8 ranges are measured on their faces, and every"
        " third video is held out for the bf16/int8 parity check (needed for bf16 and int8)",
    )
    parser.add_argument(
        "--max-delta",
        type=float,
        default=DEFAULT_MAX_DELTA,
        help=f"largest |ΔP(FAKE)| against fp32 allowed per frame and per video (default {DEFAULT_MAX_DELTA})",
    )
    args = parser.parse_args(argv)
    if set(args.precision) - {"fp32"} and args.calibration_videos is None:
        parser.error("--precision bf16/int8/auto needs --calibration-videos DIR (real videos, never random tensors)")
    if "auto" in args.precision and len(set(args.precision) - {"fp32"}) > 1:
        parser.error("--precision auto chooses the precisions itself: give it alone")
    return args


def load(args: argparse.Namespace) -> LoadedModel:
    options = Options(args.heads, args.activation, args.legacy_batch_first)
    profile = PROFILES[args.preprocessing] if args.preprocessing else None
    if args.demo:
        return demo_model(args.family or "attention", options, preprocessing=profile)
    return load_checkpoint(args.checkpoint, args.family, options, profile)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    try:
        model = load(args)
        if model.is_demo:
            progress("WARNING: exporting an UNTRAINED DEMO model; its verdicts are meaningless")
        for note in unconfirmed_options(model.family, Options(args.heads, args.activation, args.legacy_batch_first)):
            progress(f"NOTE: not confirmed by the weights: {note}")
        calibration = None
        if args.calibration_videos is not None:  # before the long export: a bad folder fails fast
            progress(f"reading calibration videos in {args.calibration_videos} …")
            calibration = calibration_set(args.calibration_videos, model.preprocessing)
        rows = export_repository(model, args.repository, args.version, args.opset, args.torchscript, progress)
        print(format_table(rows))
        (args.repository / PLANS_FILE).unlink(missing_ok=True)  # it described the models just replaced
        if calibration is not None and "auto" in args.precision:
            table = export_auto(model, args.repository, calibration, args.version, args.max_delta, progress)
            print(format_plans(table))
        elif calibration is not None:
            precision_rows = export_reduced_precisions(
                model, args.repository, args.precision, calibration, args.version, args.max_delta, progress
            )
            print(format_rows(precision_rows))
    except (CheckpointError, CalibrationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_CHECKPOINT
    except (ParityError, PrecisionParityError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PARITY
    # Last, once every model, config and parameter is in place: the list the cluster verifies against.
    try:
        digest = digest_of_list(write_digest_list(args.repository))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNLISTABLE
    print(f"wrote {args.repository}/SHA256SUMS, sha256 {digest}\n{pin_hint(digest)}")
    architecture = ", ".join(f"{key}={value}" for key, value in model.detector.shape.describe().items())
    print(
        f"exported {model.family} model ({architecture}; preprocessing {model.preprocessing.name})"
        f"{' (UNTRAINED DEMO)' if model.is_demo else ''} to {args.repository}/ in {', '.join(args.precision)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
