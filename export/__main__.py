"""``deepfake-export``: a user's checkpoint (or a demo model) → a Triton model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.checkpoint import FAMILIES, CheckpointError, LoadedModel, Options, demo_model, load_checkpoint
from export.onnx_export import DEFAULT_OPSET
from export.parity import ParityError, format_table
from export.repository import export_repository
from model_contract import PROFILES

EXIT_BAD_CHECKPOINT = 2
EXIT_PARITY = 1


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
    return parser.parse_args(argv)


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
        rows = export_repository(model, args.repository, args.version, args.opset, args.torchscript, progress)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_CHECKPOINT
    except ParityError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PARITY
    print(format_table(rows))
    architecture = ", ".join(f"{key}={value}" for key, value in model.detector.shape.describe().items())
    print(
        f"exported {model.family} model ({architecture}; preprocessing {model.preprocessing.name})"
        f"{' (UNTRAINED DEMO)' if model.is_demo else ''} to {args.repository}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
