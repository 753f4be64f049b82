"""Reduced-precision backbones: exported, checked on held-out videos, refused beyond the bound,
and served on each runtime (embedded ONNX Runtime / OpenVINO, and a real Triton).

The demo model answers ~0.455 to everything, so its parity rows cannot fail (a backbone with
scales broken 4x still moves its P(FAKE) by under 0.01). The bound is therefore tested on the
sensitive test model (testing/sensitive_model.py, residual branches at 0.2 as in trained ResNets),
whose per-frame P(FAKE) spreads over most of [0, 1]: there an honest int8 is refused at 0.01 and a
broken one is far worse. Nothing is mocked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.__main__ import EXIT_BAD_CHECKPOINT, EXIT_PARITY, main
from export.precision import DEFAULT_MAX_DELTA, check_precision, features_runner, write_int8
from preprocess_service.inference.runtimes import open_model
from preprocess_service.settings import Settings
from testing.server import post_file, running_service

SEED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "seed_videos"


def parsed_config(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def precision_repository(module_folder) -> Path:
    repository = module_folder("precisions")
    code = main(
        ["--demo", "--repository", str(repository), "--precision", "fp32", "bf16", "int8"]
        + ["--calibration-videos", str(SEED_VIDEOS)]
    )
    assert code == 0
    return repository


def test_each_precision_is_its_own_model_with_configs_for_every_runtime(precision_repository, capsys):
    repository = precision_repository
    for name in ("deepfake_backbone", "deepfake_backbone_bf16", "deepfake_backbone_int8"):
        assert (repository / name / "1" / "model.onnx").is_file()
        for config in [repository / name / "config.pbtxt", *(repository / name / "configs").glob("*.pbtxt")]:
            parsed = parsed_config(config)
            assert parsed.name == name and parsed.parameters["precision"].string_value == name.split("_")[-1].replace(
                "backbone", "fp32"
            )
    int8 = onnx.load(str(repository / "deepfake_backbone_int8/1/model.onnx"))
    operators = {node.op_type for node in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators  # really quantised
    assert {p.key: p.value for p in int8.metadata_props}["precision"] == "int8"

    bf16 = parsed_config(repository / "deepfake_backbone_bf16/config.pbtxt")
    assert bf16.backend == "openvino" and bf16.default_model_filename == "model.onnx"
    assert bf16.parameters["HINT_BF16"].string_value == "YES"
    assert bf16.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU

    ort_openvino = parsed_config(repository / "deepfake_backbone_int8/configs/cpu-ort-openvino.pbtxt")
    assert ort_openvino.platform == "onnxruntime_onnx"
    assert [a.name for a in ort_openvino.optimization.execution_accelerators.cpu_execution_accelerator] == ["openvino"]

    tensorrt = parsed_config(repository / "deepfake_backbone/configs/gpu-tensorrt.pbtxt")
    (accelerator,) = tensorrt.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["trt_engine_cache_enable"] == "1"
    assert sorted(w.batch_size for w in tensorrt.model_warmup) == [1, 16, 32, 64]
    assert tensorrt.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU


def test_reduced_precision_needs_real_calibration_videos(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--demo", "--repository", str(tmp_path / "r"), "--precision", "int8"])
    assert "--calibration-videos" in capsys.readouterr().err
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(SEED_VIDEOS / "VIDEO_29_HD_SHORT.mp4", one)
    code = main(
        ["--demo", "--repository", str(tmp_path / "r"), "--precision", "int8", "--calibration-videos", str(one)]
    )
    assert code == EXIT_BAD_CHECKPOINT
    assert "at least 2 are needed" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was exported


def test_int8_beyond_the_bound_on_a_varying_model_is_refused_and_not_published(sensitive, tmp_path, capsys):
    _, checkpoint, _ = sensitive
    repository = tmp_path / "repository"
    code = main(
        ["--checkpoint", str(checkpoint), "--repository", str(repository), "--precision", "int8"]
        + ["--calibration-videos", str(SEED_VIDEOS)]
    )
    err = capsys.readouterr().err
    assert code == EXIT_PARITY, err
    assert "int8" in err and "not published" in err and "--max-delta" in err
    assert (repository / "deepfake_backbone/1/model.onnx").is_file()  # fp32 passed its own parity
    assert not (repository / "deepfake_backbone_int8").exists()
    assert not list(repository.rglob("*.partial"))


def _break_weight_scales(source: Path, target: Path, factor: float = 4.0) -> int:
    """A deliberately broken quantisation: every int8 weight's scale multiplied by ``factor``."""
    proto = onnx.load(str(source))
    initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
    broken = 0
    for node in proto.graph.node:
        weight = initializers.get(node.input[0])
        if node.op_type == "DequantizeLinear" and weight is not None and weight.data_type == onnx.TensorProto.INT8:
            scale = initializers[node.input[1]]
            scale.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) * factor, scale.name))
            broken += 1
    onnx.save(proto, str(target))
    return broken


def test_a_broken_quantisation_fails_the_check_far_beyond_the_real_one(sensitive, tmp_path):
    model, checkpoint, calibration = sensitive
    main(["--checkpoint", str(checkpoint), "--repository", str(tmp_path)])
    fp32 = tmp_path / "deepfake_backbone/1/model.onnx"
    honest, broken = tmp_path / "int8.onnx", tmp_path / "broken.onnx"
    write_int8(fp32, honest, calibration.calibration_crops, model.export_metadata())
    assert _break_weight_scales(honest, broken) >= 50  # every Conv
    temporal_model = open_model(tmp_path / "deepfake_temporal/1/model.onnx", "onnxruntime")

    def temporal(features: np.ndarray) -> np.ndarray:
        return temporal_model.run("probabilities", {"features": features})

    reference = features_runner(fp32, "onnxruntime", "fp32")
    rows = {}
    for name, path in (("honest", honest), ("broken", broken)):
        candidates = {"onnxruntime": features_runner(path, "onnxruntime", "int8")}
        rows[name] = check_precision(
            "int8", candidates, reference, temporal, calibration.held_out, DEFAULT_MAX_DELTA, model.max_time
        )
    worst = {name: max(row.max_abs_diff for row in found) for name, found in rows.items()}
    print(f"max |ΔP(FAKE)| on held-out frames: honest int8 {worst['honest']:.3f}, broken {worst['broken']:.3f}")
    assert not any(row.ok for row in rows["broken"] if row.scope == "frame")
    assert worst["broken"] > 0.5 and worst["broken"] > 3 * worst["honest"]


@pytest.fixture(scope="module")
def fp32_frames(precision_repository, seed_videos, tmp_path_factory) -> list:
    settings = Settings(model_repository=precision_repository, keys_dir=tmp_path_factory.mktemp("keys"))
    with running_service(settings) as url:
        return post_file(url, seed_videos[1], "/predict_csv/").json()["frames_csv"]


@pytest.mark.parametrize(
    "precision,runtime",
    [("fp32", "openvino"), ("int8", "onnxruntime"), ("int8", "openvino"), ("bf16", "openvino"), ("bf16", "auto")],
)
def test_the_service_answers_on_each_runtime_and_precision(
    precision_repository, seed_videos, fp32_frames, tmp_path, precision, runtime
):
    settings = Settings(model_repository=precision_repository, precision=precision, runtime=runtime, keys_dir=tmp_path)
    with running_service(settings) as url:
        model = httpx.get(url + "/readyz", timeout=60).json()["model"]
        assert model["precision"] == precision
        expected_engine = "onnxruntime" if runtime == "onnxruntime" else "openvino"
        assert model["runtime"].startswith(expected_engine)
        rows = post_file(url, seed_videos[1], "/predict_csv/").json()["frames_csv"]
    assert [r["frame_index"] for r in rows] == [r["frame_index"] for r in fp32_frames]
    for row, reference in zip(rows, fp32_frames, strict=True):
        if reference["p_fake"] is not None:  # the demo model: this only shows the plumbing, not precision
            assert row["p_fake"] == pytest.approx(reference["p_fake"], abs=DEFAULT_MAX_DELTA)


def test_bf16_on_onnx_runtime_is_a_clear_503_not_a_crash(precision_repository, tmp_path):
    settings = Settings(
        model_repository=precision_repository, precision="bf16", runtime="onnxruntime", keys_dir=tmp_path
    )
    with running_service(settings) as url:
        answer = httpx.get(url + "/readyz", timeout=60)
    assert answer.status_code == 503
    assert "OpenVINO" in answer.json()["error"]["message"]


@pytest.mark.parametrize("config_name", ["cpu", "cpu-openvino"])
def test_triton_serves_every_precision_and_the_service_answers_through_it(
    precision_repository, seed_videos, fp32_frames, tmp_path, config_name
):
    from deploy.triton_local.server import start_triton

    server = start_triton(precision_repository, config_name=config_name)
    try:
        for precision in ("int8", "bf16"):
            settings = Settings(
                backend="triton-grpc", triton_grpc_url=server.grpc_url, precision=precision, keys_dir=tmp_path
            )
            with running_service(settings) as url:
                model = httpx.get(url + "/readyz", timeout=60).json()["model"]
                rows = post_file(url, seed_videos[1], "/predict_csv/").json()["frames_csv"]
            assert model["precision"] == precision
            expected = "openvino" if precision == "bf16" or config_name == "cpu-openvino" else "onnxruntime_onnx"
            assert model["runtime"] == f"triton {expected}"
            assert len(rows) == len(fp32_frames)
            for row, reference in zip(rows, fp32_frames, strict=True):
                if reference["p_fake"] is not None:
                    assert row["p_fake"] == pytest.approx(reference["p_fake"], abs=DEFAULT_MAX_DELTA)
    finally:
        server.stop()
