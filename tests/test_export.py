"""Exports: each family x checkpoint layout round-trips to ONNX; configs are valid Triton configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export import parity
from export.architectures import normalise
from export.checkpoint import demo_model, load_checkpoint
from export.repository import export_repository
from model_contract.repository_digests import digest_of_list, verify
from tests.conftest import ROOT
from tests.test_checkpoint import save_in_layout

ONNX_TO_TRITON = {onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.FLOAT: "TYPE_FP32"}


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def assert_exported_like_pytorch(repository: Path, source: torch.nn.Module, loaded, count: int = 5) -> None:
    """The exported pair on uint8 crops gives the PyTorch model's probabilities on the same crops."""
    size = loaded.input_size
    faces = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.softmax(source(normalise(torch.from_numpy(faces), loaded.preprocessing)[None]), -1)[0].numpy()
    np.testing.assert_allclose(onnx_probabilities(repository, faces), expected, atol=1e-5)


def onnx_probabilities(repository: Path, faces: np.ndarray) -> np.ndarray:
    backbone = onnxruntime.InferenceSession(str(repository / "deepfake_backbone/1/model.onnx"))
    temporal = onnxruntime.InferenceSession(str(repository / "deepfake_temporal/1/model.onnx"))
    features = backbone.run(None, {"faces": faces})[0]
    return temporal.run(["probabilities"], {"features": features[None]})[0][0]


@pytest.mark.parametrize("family", ["attention", "legacy"])
@pytest.mark.parametrize("layout", ["flat", "state_dict", "module_prefix"])
def test_checkpoint_round_trips_through_export(tmp_path, family, layout):
    source = demo_model(family, seed=7).detector
    path = save_in_layout(source.state_dict(), layout, tmp_path / "checkpoint.pth")
    loaded = load_checkpoint(path)
    rows = export_repository(loaded, tmp_path / "repo")
    assert all(row.ok for row in rows) and len(rows) == 1 + len(parity.BATCHES) * len(parity.TIMES)

    assert_exported_like_pytorch(tmp_path / "repo", source, loaded)

    config = parse_config(tmp_path / "repo/deepfake_backbone/config.pbtxt")
    recorded = {key: value.string_value for key, value in config.parameters.items()}
    assert recorded["family"] == family and recorded["untrained_demo"] == "false"
    assert recorded["checkpoint_sha256"] == loaded.checkpoint_sha256
    assert list(config.input[0].dims) == [loaded.input_size, loaded.input_size, 3]


def _onnx_signature(path: Path) -> dict[str, tuple[str, list[int]]]:
    graph = onnx.load(str(path), load_external_data=False).graph
    signature = {}
    for value in [*graph.input, *graph.output]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        signature[value.name] = (ONNX_TO_TRITON[tensor.elem_type], dims)
    return signature


@pytest.mark.parametrize("model_name", ["deepfake_backbone", "deepfake_temporal"])
@pytest.mark.parametrize("config_file", ["config.pbtxt", "configs/cpu.pbtxt"])
def test_configs_parse_and_match_the_onnx_files(demo_repository, model_name, config_file):
    config = parse_config(demo_repository / model_name / config_file)
    assert config.name == model_name and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
    expected_kind = (
        model_config_pb2.ModelInstanceGroup.KIND_CPU
        if "cpu" in config_file
        else model_config_pb2.ModelInstanceGroup.KIND_GPU
    )
    assert [group.kind for group in config.instance_group] == [expected_kind]
    assert config.model_warmup, "warm-up keeps the first user request from paying for initialisation"

    signature = _onnx_signature(demo_repository / model_name / "1/model.onnx")
    declared = {
        t.name: (model_config_pb2.DataType.Name(t.data_type), [-1, *t.dims]) for t in [*config.input, *config.output]
    }
    assert declared == signature  # the ONNX batch axis is Triton's implicit max_batch_size axis


def test_labels_file_says_index_0_is_fake(demo_repository):
    config = parse_config(demo_repository / "deepfake_temporal/config.pbtxt")
    probabilities = next(o for o in config.output if o.name == "probabilities")
    labels = (demo_repository / "deepfake_temporal" / probabilities.label_filename).read_text().split()
    assert labels == ["FAKE", "REAL"]


def test_committed_configs_are_what_a_fresh_demo_export_writes(demo_repository):
    committed = sorted(p.relative_to(ROOT / "model_repository") for p in (ROOT / "model_repository").rglob("*.pbtxt"))
    fresh = sorted(p.relative_to(demo_repository) for p in demo_repository.rglob("*.pbtxt"))
    assert (
        committed == fresh and len(fresh) == 10
    )  # per model: config.pbtxt and configs/{cpu,cpu-openvino,cpu-ort-openvino,gpu-tensorrt}
    for relative in fresh:
        assert (ROOT / "model_repository" / relative).read_text() == (demo_repository / relative).read_text(), relative
    assert (ROOT / "model_repository/deepfake_temporal/labels.txt").read_text() == "FAKE\nREAL\n"


def test_demo_export_is_labelled_untrained_everywhere(demo_repository):
    config = parse_config(demo_repository / "deepfake_backbone/config.pbtxt")
    assert config.parameters["untrained_demo"].string_value == "true"
    model = onnx.load(str(demo_repository / "deepfake_temporal/1/model.onnx"), load_external_data=False)
    assert {p.key: p.value for p in model.metadata_props}["untrained_demo"] == "true"
    assert "UNTRAINED" in model.doc_string


def test_cli_demo_export_with_torchscript_prints_parity_and_loads_without_the_package(tmp_path):
    repository = tmp_path / "repo"
    completed = subprocess.run(
        [sys.executable, "-m", "export", "--demo", "--torchscript", "--version", "3", "--repository", str(repository)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    assert "UNTRAINED DEMO" in completed.stderr and "checking parity against PyTorch" in completed.stderr
    table = [line for line in completed.stdout.splitlines() if line.startswith(("onnxruntime", "torchscript"))]
    assert len(table) == 2 * (1 + len(parity.BATCHES) * len(parity.TIMES)) and all(
        line.endswith("yes") for line in table
    )
    listed = digest_of_list(repository / "SHA256SUMS")  # written last, over every model and config
    assert f"sha256 {listed}" in completed.stdout and verify(repository, listed) == []
    assert "deepfake_backbone_libtorch/3/model.pt" in (repository / "SHA256SUMS").read_text()
    libtorch = parse_config(repository / "deepfake_backbone_libtorch/config.pbtxt")
    assert libtorch.platform == "pytorch_libtorch" and libtorch.output[0].name == "features__0"
    script = (
        "import sys, torch; m = torch.jit.load(sys.argv[1]); "
        "p, l = m(torch.zeros(2, 3, 2048)); assert p.shape == (2, 2); print(float(p.sum()))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script, str(repository / "deepfake_temporal_libtorch/3/model.pt")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )  # cwd: no `export` importable
    assert loaded.returncode == 0, loaded.stderr
    assert abs(float(loaded.stdout) - 2.0) < 1e-5


def test_failed_parity_publishes_nothing_and_keeps_the_old_model(tmp_path, monkeypatch, demo_repository):
    """The parity *result* is forced to fail here (a real exporter bug cannot be summoned on demand);
    what is under test is that nothing is published then."""
    repository = tmp_path / "repo"
    export_repository(demo_model(), repository)
    before = (repository / "deepfake_backbone/1/model.onnx").read_bytes()
    failing = [parity.ParityRow("onnxruntime", 1, 8, 1e-2)]
    monkeypatch.setattr(parity, "check_parity", lambda model, runners: failing)
    with pytest.raises(parity.ParityError, match="1 of 1 cases exceed"):
        export_repository(demo_model(seed=5), repository)
    assert (repository / "deepfake_backbone/1/model.onnx").read_bytes() == before
    leftovers = [p.name for p in repository.rglob("*") if p.name.endswith(".partial")]
    assert leftovers == []
