"""Users' checkpoint files: every accepted layout loads strictly; every bad file is one clear error."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from export.__main__ import EXIT_BAD_CHECKPOINT, main
from export.checkpoint import CheckpointError, Options, demo_model, load_checkpoint

LAYOUTS = ("flat", "state_dict", "model_state_dict", "module_prefix")


def save_in_layout(state_dict: dict, layout: str, path: Path) -> Path:
    if layout == "state_dict":
        content = {"state_dict": state_dict, "epoch": 3}
    elif layout == "model_state_dict":
        content = {"model_state_dict": state_dict, "optimizer_state_dict": {}}
    elif layout == "module_prefix":
        content = {f"module.{key}": value for key, value in state_dict.items()}
    else:
        content = state_dict
    torch.save(content, path)
    return path


@pytest.fixture(scope="module")
def attention_weights() -> dict:
    return demo_model("attention", seed=1).detector.state_dict()


@pytest.fixture(scope="module")
def attention_file(module_folder, attention_weights) -> Path:
    return save_in_layout(attention_weights, "flat", module_folder("ckpt") / "attention.pth")


def run_cli(*args: str) -> tuple[int, str]:
    completed = subprocess.run([sys.executable, "-m", "export", *args], capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stderr


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_the_exact_weights(tmp_path, attention_weights, layout):
    path = save_in_layout(attention_weights, layout, tmp_path / "checkpoint.pth")
    loaded = load_checkpoint(path)
    assert loaded.family == "attention" and not loaded.is_demo and len(loaded.checkpoint_sha256) == 64
    for key, tensor in loaded.detector.state_dict().items():
        assert torch.equal(tensor, attention_weights[key]), key


def _bad_file(tmp_path: Path, case: str, weights: dict) -> Path:
    path = tmp_path / "bad.pth"
    if case == "text":
        path.write_text("this is not a checkpoint\n")
    elif case == "arbitrary_object":
        torch.save({"created": datetime.datetime(2024, 1, 1)}, path)  # refused by weights_only=True
    elif case == "not_a_dict":
        torch.save([torch.zeros(1)], path)
    elif case == "not_tensors":
        torch.save({"epoch": 3, "lr": 0.1}, path)
    elif case == "unknown_family":
        torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    elif case == "missing_key":
        torch.save({k: v for k, v in weights.items() if k != "fc2.weight"}, path)
    elif case == "unexpected_key":
        torch.save({**weights, "fc3.weight": torch.zeros(2, 2)}, path)
    elif case == "wrong_shape":
        torch.save({**weights, "fc2.weight": torch.zeros(3, 512)}, path)
    return path


@pytest.mark.parametrize(
    ("case", "expected_words"),
    [
        ("text", ["not a PyTorch checkpoint", "neither a torch.save zip archive nor a pickle", "('this')"]),
        ("arbitrary_object", ["weights_only=True"]),
        ("not_a_dict", ["expected a state dict", "list"]),
        ("not_tensors", ["not tensors", "epoch"]),
        ("unknown_family", ["cannot tell the model family", "encoder.weight"]),
        ("missing_key", ["1 missing keys", "fc2.weight", "attention (lstm_hidden=512", "num_heads=4, activation=gelu"]),
        ("unexpected_key", ["1 unexpected keys", "fc3.weight"]),
        ("wrong_shape", ["wrong shape", "fc2.weight (3, 512) (expected (2, 512))"]),
    ],
)
def test_bad_checkpoint_is_one_clear_line_and_exit_code_2(tmp_path, capsys, attention_weights, case, expected_words):
    path = _bad_file(tmp_path, case, attention_weights)
    assert main(["--checkpoint", str(path), "--repository", str(tmp_path / "repo")]) == EXIT_BAD_CHECKPOINT
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ")
    for words in expected_words:
        assert words in error
    assert not (tmp_path / "repo").exists(), "nothing may be written for a refused checkpoint"


def test_missing_file_through_the_real_command_line(tmp_path):
    code, stderr = run_cli("--checkpoint", str(tmp_path / "nope.pth"))
    assert code == EXIT_BAD_CHECKPOINT
    assert stderr.strip() == f"error: {tmp_path / 'nope.pth'}: no such file"


def test_family_asked_for_must_match_the_keys(attention_file):
    with pytest.raises(CheckpointError, match="--family legacy was asked for, but the keys are those of the attention"):
        load_checkpoint(attention_file, family="legacy")


def test_heads_that_do_not_divide_the_channels_are_refused(attention_file, capsys):
    assert main(["--checkpoint", str(attention_file), "--heads", "3"]) == EXIT_BAD_CHECKPOINT
    assert "--heads 3 does not divide" in capsys.readouterr().err


def test_legacy_lstm_is_sized_from_the_keys_bias_trap_included(tmp_path):
    from export.architectures import LegacyDetector, LegacyShape

    torch.manual_seed(0)
    no_bias = LegacyDetector(LegacyShape(hidden_size=2048, bidirectional=True, bias=False)).state_dict()
    path = tmp_path / "legacy_no_bias.pth"
    torch.save(no_bias, path)
    loaded = load_checkpoint(path)
    assert loaded.family == "legacy" and loaded.input_size == 112
    assert loaded.detector.lstm.bias is False


def test_what_the_weights_cannot_confirm_is_said_with_the_originals_values():
    """--heads 8 on a 4-head checkpoint exports cleanly (parity compares the export with itself): the
    export says, every time, which options the weights could not confirm and what the original used."""
    from export.checkpoint import unconfirmed_options

    notes = unconfirmed_options("attention", Options(num_heads=8, activation="relu"))
    assert notes[0].startswith("--heads 8:") and "used 4" in notes[0] and "8" in notes[0]
    assert notes[1].startswith("--activation relu:") and "gelu" in notes[1]
    assert "batch_first=False" in unconfirmed_options("legacy", Options())[0]


def test_every_export_says_what_the_weights_could_not_confirm(tmp_path, capsys):
    assert main(["--demo", "--heads", "8", "--repository", str(tmp_path / "repo")]) == 0
    stderr = capsys.readouterr().err
    assert "NOTE: not confirmed by the weights: --heads 8:" in stderr and "used 4" in stderr
    assert "NOTE: not confirmed by the weights: --activation gelu:" in stderr
