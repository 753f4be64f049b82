"""A threshold chosen by an evaluation, recorded where the served model's parameters live.

Written into the backbone's ``config.pbtxt`` and ``configs/*.pbtxt`` ``parameters``
(``verdict_threshold_<rule>``): Triton hands them to the service with the model's config, and the
embedded backend reads the same file, so both apply it to ``result`` and show it in every answer.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.onnx_export import write_text_atomically
from model_contract import threshold_key


def write_thresholds(model_dir: Path, thresholds: dict[str, float]) -> list[Path]:
    configs = [model_dir / "config.pbtxt", *sorted((model_dir / "configs").glob("*.pbtxt"))]
    written = []
    for path in configs:
        if not path.is_file():
            continue
        text = path.read_text()
        header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
        for rule, value in thresholds.items():
            config.parameters[threshold_key(rule)].string_value = f"{value:.6f}"
        write_text_atomically(path, header + text_format.MessageToString(config))
        written.append(path)
    if not written:
        raise FileNotFoundError(f"no config.pbtxt in {model_dir}")
    return written
