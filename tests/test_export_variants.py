"""Every architecture variant the original's scripts produced: sizes read from the checkpoint's
shapes, heads/activation/axis use as options, each exported with its parity table and recorded."""

from __future__ import annotations

import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export import parity
from export.__main__ import EXIT_BAD_CHECKPOINT, main
from export.architectures import AttentionDetector, AttentionShape, LegacyDetector, LegacyShape
from export.checkpoint import Options, load_checkpoint
from export.repository import export_repository
from tests.test_export import assert_exported_like_pytorch

VARIANTS = {
    "attention hidden 1024 (width 2048)": (AttentionDetector(AttentionShape(lstm_hidden=1024)), Options()),
    "attention positional table 100": (AttentionDetector(AttentionShape(max_time=100)), Options()),
    "attention 8 heads + ReLU": (
        AttentionDetector(AttentionShape(num_heads=8, activation="relu")),
        Options(num_heads=8, activation="relu"),
    ),
    "legacy without batch_first (the served app)": (LegacyDetector(LegacyShape()), Options()),
    "legacy with batch_first": (LegacyDetector(LegacyShape(batch_first=True)), Options(legacy_batch_first=True)),
}


def recorded_parameters(repository) -> dict[str, str]:
    config = text_format.Parse(
        (repository / "deepfake_backbone/config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    return {key: value.string_value for key, value in config.parameters.items()}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_loads_from_its_shapes_and_exports_with_parity(tmp_path, capsys, name):
    torch.manual_seed(3)
    source, options = VARIANTS[name]
    source.eval()
    path = tmp_path / "checkpoint.pth"
    torch.save(source.state_dict(), path)

    loaded = load_checkpoint(path, options=options)
    assert loaded.detector.shape == source.shape, "every size is read from the checkpoint"
    rows = export_repository(loaded, tmp_path / "repo")
    with capsys.disabled():
        print(f"\n{name}\n{parity.format_table(rows)}")
    assert all(row.ok for row in rows)
    longest = getattr(source.shape, "max_time", 200)
    assert max(row.time for row in rows) == longest, "parity is checked up to the model's own maximum length"

    assert_exported_like_pytorch(tmp_path / "repo", source, loaded, count=6)

    recorded = recorded_parameters(tmp_path / "repo")
    for key, value in source.shape.describe().items():
        assert recorded[key] == value, key
    assert recorded["max_time"] == (str(source.shape.max_time) if source.family == "attention" else "none")


def test_heads_and_activation_are_options_that_change_the_answer(tmp_path):
    """The weights cannot tell 4/GELU from 8/ReLU; exported the wrong way, the answers differ."""
    torch.manual_seed(4)
    source = AttentionDetector(AttentionShape(num_heads=8, activation="relu")).eval()
    torch.save(source.state_dict(), tmp_path / "checkpoint.pth")
    right = load_checkpoint(tmp_path / "checkpoint.pth", options=Options(num_heads=8, activation="relu"))
    wrong = load_checkpoint(tmp_path / "checkpoint.pth")
    features = torch.randn(2, 12, 2048)
    with torch.no_grad():
        assert torch.allclose(right.detector.temporal(features), source.temporal(features), atol=1e-6)
        assert not torch.allclose(wrong.detector.temporal(features), source.temporal(features), atol=1e-3)
    assert (wrong.export_metadata()["num_heads"], wrong.export_metadata()["activation"]) == ("4", "gelu")


def _refused(tmp_path, capsys, *args: str) -> str:
    assert main([*args, "--repository", str(tmp_path / "repo")]) == EXIT_BAD_CHECKPOINT
    lines = capsys.readouterr().err.strip().splitlines()
    assert not (tmp_path / "repo").exists()
    return lines[-1]


def test_heads_that_do_not_divide_the_width_read_from_the_checkpoint_are_refused(tmp_path, capsys):
    torch.save(AttentionDetector(AttentionShape(lstm_hidden=1024)).state_dict(), tmp_path / "wide.pth")
    error = _refused(tmp_path, capsys, "--checkpoint", str(tmp_path / "wide.pth"), "--heads", "3")
    assert error == "error: --heads 3 does not divide the 2048 attention channels"


def test_a_whole_pickled_model_gets_one_plain_line(tmp_path, capsys):
    torch.save(LegacyDetector(LegacyShape(hidden_size=16)), tmp_path / "whole.pth")
    error = _refused(tmp_path, capsys, "--checkpoint", str(tmp_path / "whole.pth"))
    assert "\x1b" not in error and "\n" not in error
    assert "a whole pickled model (classes export.architectures.LegacyDetector" in error and "not a state dict" in error
    whole, converted = str(tmp_path / "whole.pth"), str(tmp_path / "whole.state_dict.pth")
    # the user's own file names, not placeholders (issue 20, item 10)
    assert f"torch.save(torch.load({whole!r}, weights_only=False).state_dict(), {converted!r})" in error


def test_a_positional_table_of_the_wrong_width_is_refused(tmp_path, capsys):
    weights = AttentionDetector().state_dict()
    weights["attention.positional_encoding.pe"] = torch.zeros(1, 200, 512)
    torch.save(weights, tmp_path / "bad.pth")
    error = _refused(tmp_path, capsys, "--checkpoint", str(tmp_path / "bad.pth"))
    assert error == "error: the positional table is 512 wide but the LSTM gives 1024 channels"
