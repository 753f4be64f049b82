"""``deepfake-export``: a user's checkpoint (or a demo model) → a Triton model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.checkpoint import FAMILIES, CheckpointError, LoadedModel, demo_model, load_checkpoint
from export.onnx_export import DEFAULT_OPSET
from export.parity import ParityError, format_table
from export.repository import export_repository

EXIT_BAD_CHECKPOINT = 2
EXIT_PARITY = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deepfake-export", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a trained checkpoint.pth (state dict)")
    source.add_argument("--demo", action="store_true", help="seeded random weights: UNTRAINED, for trying the system")
    parser.add_argument("--family", choices=FAMILIES, help="checkpoint family (default: detected from the keys; "
                        "attention for --demo)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (attention family; default 4)")
    parser.add_argument("--activation", choices=("gelu", "relu"), default="gelu", help="attention family MLP activation")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"), help="Triton model repository")
    parser.add_argument("--version", type=int, default=1, help="model version folder (default 1)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--torchscript", action="store_true", help="also write pytorch_libtorch models (*_libtorch)")
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> LoadedModel:
    if args.demo:
        return demo_model(args.family or "attention", args.heads, args.activation)
    return load_checkpoint(args.checkpoint, args.family, args.heads, args.activation)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.heads < 1 or 1024 % args.heads:
            raise CheckpointError(f"--heads {args.heads} does not divide the 1024 attention channels")
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
    print(f"exported {model.family} model{' (UNTRAINED DEMO)' if model.is_demo else ''} to {args.repository}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
