"""The plan table's format, which plan auto serves, and mixed int8 put back to fp32 exactly.

The search itself runs on the real sensitive model in tests/test_precision_plans.py; here the parts
that decide: a hand-built two-block QDQ graph (the layout NNCF writes) run on real ONNX Runtime,
and plan tables written and read back.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.mixed_int8 import quantized_blocks, revert_to_fp32
from model_contract.precision_plans import PLANS_FILE, PlanRow, PlanTable, read_plans, servable, write_plans
from preprocess_service.precision_choice import choose_plan

BLOCKS = ("/trunk/trunk.4/trunk.4.0", "/trunk/trunk.4/trunk.4.1")


def row(plan: str, precision: str, runtime: str, faces_per_s: float, delta: float, **extra) -> PlanRow:
    return PlanRow(plan, precision, runtime, faces_per_s, delta, delta / 2, 0.01, **extra)


def table(*rows: PlanRow) -> PlanTable:
    return PlanTable(list(rows), None, ["held.mp4"], {"processor": "test CPU"})


FP32 = row("fp32", "fp32", "onnxruntime", 30.0, 0.0, published=True)


def test_the_table_reads_back_as_written(tmp_path: Path) -> None:
    mixed = row("int8-mixed", "int8", "openvino", 80.0, 0.004, kept=(BLOCKS[1],), blocks=19, published=True)
    written = PlanTable([FP32, mixed], mixed, ["held.mp4"], {"processor": "test CPU"})
    write_plans(tmp_path, written)
    assert read_plans(tmp_path) == written
    assert mixed.describe() == "int8-mixed (1 of 19 blocks at fp32)"


def test_a_foreign_or_broken_table_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / PLANS_FILE).write_text('{"format": 99, "rows": []}')
    with pytest.raises(ValueError, match="not a precision plan table"):
        read_plans(tmp_path)
    assert read_plans(tmp_path / "elsewhere") is None


def test_servable_is_the_fastest_published_row_within_the_bound_on_a_runtime_there_is() -> None:
    int8_out = row("int8", "int8", "openvino", 120.0, 0.05, published=False)  # fastest, beyond the bound
    bf16 = row("bf16", "bf16", "openvino", 60.0, 0.008, published=True)
    mixed_ort = row("int8-mixed", "int8", "onnxruntime", 45.0, 0.006, kept=("b",), blocks=2, published=True)
    plans = table(FP32, int8_out, bf16, mixed_ort)
    assert servable(plans, {"onnxruntime", "openvino"}) == bf16
    assert servable(plans, {"onnxruntime"}) == mixed_ort
    slow = row("int8-mixed", "int8", "onnxruntime", 20.0, 0.006, published=True)
    assert servable(table(FP32, slow), {"onnxruntime"}) == FP32  # fp32 is faster: serve fp32
    assert servable(table(FP32, slow), {"openvino"}) is None


def test_choose_plan_says_why(tmp_path: Path) -> None:
    explicit = choose_plan("int8", "onnxruntime", "embedded", tmp_path)
    assert (explicit.precision, explicit.reason) == ("int8", "DEEPFAKE_PRECISION=int8")
    missing = choose_plan("auto", "auto", "embedded", tmp_path)
    assert missing.precision == "fp32" and PLANS_FILE in missing.reason
    mixed = row("int8-mixed", "int8", "onnxruntime", 90.0, 0.006, kept=("b",), blocks=2, published=True)
    write_plans(tmp_path, table(FP32, mixed))
    chosen = choose_plan("auto", "auto", "embedded", tmp_path)
    assert (chosen.precision, chosen.runtime, chosen.plan) == ("int8", "onnxruntime", mixed.describe())
    assert "3.00x fp32's faces/s" in chosen.reason and "held.mp4" in chosen.reason and "test CPU" in chosen.reason
    only_openvino = choose_plan("auto", "openvino", "embedded", tmp_path)
    assert only_openvino.precision == "fp32" and "openvino" in only_openvino.reason
    assert "set DEEPFAKE_PRECISION" in choose_plan("auto", "auto", "triton-grpc", tmp_path).reason
    assert choose_plan("auto", "auto", "embedded", tmp_path, backbone_model="mine").precision == "fp32"
    fp32_openvino = replace(FP32, runtime="openvino", faces_per_s=200.0)
    write_plans(tmp_path, table(FP32, mixed, fp32_openvino))
    fastest_fp32 = choose_plan("auto", "auto", "embedded", tmp_path)
    assert (fastest_fp32.precision, fastest_fp32.runtime) == ("fp32", "openvino")  # on the runtime measured


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "null",
        "[]",
        '{"format": 1, "rows": [], "held_out": 5, "machine": {}}',
        '{"format": 1, "held_out": [], "machine": {}, "rows": [{"plan": "x", "precision": "fp8",'
        ' "runtime": "onnxruntime", "faces_per_s": 1, "max_delta_frame": 0, "max_delta_video": 0, "bound": 0.01}]}',
        '{"format": 1, "held_out": [], "machine": {}, "rows": [{"plan": "x", "precision": "int8",'
        ' "runtime": "onnxruntime", "faces_per_s": "1", "max_delta_frame": 0, "max_delta_video": 0, "bound": 0.01}]}',
    ],
)
def test_a_corrupted_table_means_fp32_and_says_so(tmp_path: Path, text: str) -> None:
    (tmp_path / PLANS_FILE).write_text(text)
    chosen = choose_plan("auto", "auto", "embedded", tmp_path)
    assert chosen.precision == "fp32" and "unreadable" in chosen.reason


def _two_block_models() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """x → Conv(block 0) → Relu → Conv(block 1) → y, at fp32 and as NNCF's QDQ int8 writes it."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(4, 4, 3, 3)).astype(np.float32) for _ in BLOCKS]
    biases = [rng.normal(size=4).astype(np.float32) for _ in BLOCKS]
    tensors = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)]
    tensors += [numpy_helper.from_array(b, f"b{i}") for i, b in enumerate(biases)]
    io = (
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    fp32_nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name=f"{BLOCKS[0]}/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name=f"{BLOCKS[0]}/relu/Relu"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["y"], name=f"{BLOCKS[1]}/conv1/Conv", pads=[1, 1, 1, 1]),
    ]
    fp32 = helper.make_model(
        helper.make_graph(fp32_nodes, "fp32", *io, tensors), opset_imports=[helper.make_opsetid("", 17)]
    )
    int8_tensors = [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.int8(0), "z")]
    int8_nodes = []
    for i, (source, out) in enumerate((("x", "c0"), ("r0", "y"))):
        scale = np.abs(weights[i]).max() / 127
        quantized = np.round(weights[i] / scale).astype(np.int8)
        int8_tensors += [
            numpy_helper.from_array(quantized, f"wq{i}"),
            numpy_helper.from_array(np.float32(scale), f"ws{i}"),
            numpy_helper.from_array(biases[i] + 0.1, f"bc{i}"),  # as after NNCF's bias correction
        ]
        int8_nodes += [
            helper.make_node("QuantizeLinear", [source, "s", "z"], [f"q{i}"], name=f"q{i}"),
            helper.make_node("DequantizeLinear", [f"q{i}", "s", "z"], [f"dq{i}"], name=f"dq{i}"),
            helper.make_node("DequantizeLinear", [f"wq{i}", f"ws{i}"], [f"wd{i}"], name=f"wd{i}"),
            helper.make_node(
                "Conv", [f"dq{i}", f"wd{i}", f"bc{i}"], [out], name=f"{BLOCKS[i]}/conv1/Conv", pads=[1, 1, 1, 1]
            ),
        ]
        if i == 0:
            int8_nodes.append(helper.make_node("Relu", ["c0"], ["r0"], name=f"{BLOCKS[0]}/relu/Relu"))
    int8 = helper.make_model(
        helper.make_graph(int8_nodes, "int8", *io, int8_tensors), opset_imports=[helper.make_opsetid("", 17)]
    )
    return fp32, int8


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def test_every_block_put_back_is_the_fp32_model_exactly() -> None:
    fp32, int8 = _two_block_models()
    x = np.random.default_rng(1).normal(size=(1, 4, 8, 8)).astype(np.float32)
    assert list(quantized_blocks(int8)) == list(BLOCKS)
    reference = _run(fp32, x)
    assert np.abs(_run(int8, x) - reference).max() > 0.01  # the int8 model really differs
    np.testing.assert_array_equal(_run(revert_to_fp32(int8, fp32, set(BLOCKS)), x), reference)
    restored = revert_to_fp32(int8, fp32, set(BLOCKS))
    assert not [node for node in restored.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]


def test_one_block_put_back_leaves_the_other_at_int8() -> None:
    fp32, int8 = _two_block_models()
    x = np.random.default_rng(2).normal(size=(1, 4, 8, 8)).astype(np.float32)
    half = revert_to_fp32(int8, fp32, {BLOCKS[1]})
    assert list(quantized_blocks(half)) == [BLOCKS[0]]
    assert not np.allclose(_run(half, x), _run(fp32, x)) and not np.allclose(_run(half, x), _run(int8, x))
    with pytest.raises(ValueError, match="not quantised blocks"):
        revert_to_fp32(int8, fp32, {"/trunk/nowhere"})


def test_a_bias_the_exporter_shares_through_identity_is_put_back_exactly() -> None:
    """torch.onnx shares equal tensors (zero biases) between layers through Identity nodes: the Conv's
    bias input is then an Identity's output, not an initializer, and must still be found and copied once."""
    fp32, int8 = _two_block_models()
    second_conv = fp32.graph.node[2]
    second_conv.input[2] = "b0_shared"
    fp32.graph.node.insert(0, helper.make_node("Identity", ["b0"], ["b0_shared"], name="/shared/Identity"))
    x = np.random.default_rng(3).normal(size=(1, 4, 8, 8)).astype(np.float32)
    restored = revert_to_fp32(int8, fp32, set(BLOCKS))
    np.testing.assert_array_equal(_run(restored, x), _run(fp32, x))
    names = [tensor.name for tensor in restored.graph.initializer]
    assert names.count("b0.fp32") == 1 and len(names) == len(set(names))


def test_auto_never_serves_bf16_where_the_processor_has_no_bf16_instructions(tmp_path: Path, monkeypatch) -> None:
    """Without AVX-512 BF16 or AMX, OpenVINO emulates bf16, slower than fp32. Both processors are stood in
    for by replacing machine_facts' answer (the only mock here), so the test says the same on any machine."""
    import preprocess_service.precision_choice as precision_choice

    bf16 = row("bf16", "bf16", "openvino", 60.0, 0.004, published=True)
    write_plans(tmp_path, table(FP32, bf16))
    with_bf16 = {"processor": "new CPU", "instruction_sets": ["avx2", "avx512f", "avx512_bf16"]}
    monkeypatch.setattr(precision_choice, "machine_facts", lambda: with_bf16)
    assert choose_plan("auto", "openvino", "embedded", tmp_path).precision == "bf16"
    without = {"processor": "old CPU", "instruction_sets": ["avx2", "avx512f"]}
    monkeypatch.setattr(precision_choice, "machine_facts", lambda: without)
    assert choose_plan("auto", "openvino", "embedded", tmp_path).precision == "fp32"
    chosen = choose_plan("auto", "auto", "embedded", tmp_path)
    assert (chosen.precision, chosen.runtime) == ("fp32", "onnxruntime")
