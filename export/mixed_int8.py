"""Mixed int8 backbones: an NNCF int8 model with chosen Conv layers put back to fp32.

NNCF writes int8 as QDQ: each quantised Conv reads its input through QuantizeLinear →
DequantizeLinear and its weight through DequantizeLinear of an int8 tensor. Putting a Conv back to
fp32 is rewiring it to the tensor before the pair and to the fp32 model's own weight and bias
(NNCF's bias correction changed the int8 model's), then dropping what no output needs any more.
That is what NNCF's accuracy-control restorer does inside (``quantize_with_accuracy_control``), but
it re-ranks every quantiser group with a full validation each, which took minutes per ranking on
this 2-core machine; doing it here, per residual block, ranks a ResNeXt-50 in seconds.
"""

from __future__ import annotations

import onnx

DEQUANTIZE, QUANTIZE = "DequantizeLinear", "QuantizeLinear"


def block_of(node_name: str) -> str:
    """The residual block a node belongs to, from the exporter's scope names:
    ``/trunk/trunk.4/trunk.4.0/conv1/Conv`` → ``/trunk/trunk.4/trunk.4.0``; the stem's Conv, the
    max-pool and the final average pool are each their own."""
    return "/".join(node_name.split("/")[:4])


def quantized_blocks(int8: onnx.ModelProto) -> dict[str, list[str]]:
    """Block → the nodes in it that read a quantised activation, in graph order."""
    producer = {output: node for node in int8.graph.node for output in node.output}
    grouped: dict[str, list[str]] = {}
    for node in int8.graph.node:
        if node.op_type in (QUANTIZE, DEQUANTIZE):
            continue
        if any(_quantized_source(producer, name) is not None for name in node.input):
            grouped.setdefault(block_of(node.name), []).append(node.name)
    return grouped


def _quantized_source(producer: dict[str, onnx.NodeProto], name: str) -> str | None:
    """The fp32 tensor behind a Quantize → Dequantize pair feeding ``name``; None if it is not one."""
    dequantize = producer.get(name)
    if dequantize is None or dequantize.op_type != DEQUANTIZE:
        return None
    quantize = producer.get(dequantize.input[0])
    return quantize.input[0] if quantize is not None and quantize.op_type == QUANTIZE else None


def revert_to_fp32(int8: onnx.ModelProto, fp32: onnx.ModelProto, kept: set[str]) -> onnx.ModelProto:
    """A copy of ``int8`` where every node of the ``kept`` blocks computes in fp32 exactly as in
    ``fp32``: its inputs read before their Quantize/Dequantize pair (the Convs and the residual Add
    alike: an Add left quantised between fp32 Convs moved P(FAKE) more than the whole int8 model),
    and each Conv takes the fp32 model's weight and bias."""
    mixed = onnx.ModelProto()
    mixed.CopyFrom(int8)
    if not kept:
        return mixed
    unknown = kept - set(quantized_blocks(int8))
    if unknown:
        raise ValueError(f"not quantised blocks of this model: {sorted(unknown)[:3]}")
    reference = {node.name: node for node in fp32.graph.node if node.op_type == "Conv"}
    fp32_tensors = _constants(fp32.graph)
    producer = {output: node for node in mixed.graph.node for output in node.output}
    added: set[str] = set()
    for node in mixed.graph.node:
        if node.op_type in (QUANTIZE, DEQUANTIZE) or block_of(node.name) not in kept:
            continue
        for port, name in enumerate(node.input):
            source = _quantized_source(producer, name)
            if source is not None:
                node.input[port] = source
        if node.op_type == "Conv":
            for port in range(1, len(reference[node.name].input)):  # weight, then bias if any
                source = fp32_tensors[reference[node.name].input[port]]
                name = f"{source.name}.fp32"
                if name not in added:  # one copy of a tensor the exporter shares between layers
                    copy = onnx.TensorProto()
                    copy.CopyFrom(source)
                    copy.name = name
                    mixed.graph.initializer.append(copy)
                    added.add(name)
                node.input[port] = name
    _drop_unused(mixed.graph)
    return mixed


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers by name, and the outputs of Identity nodes over them (the exporter shares equal
    tensors, e.g. zero biases, through Identity)."""
    tensors = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    return tensors


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Removes nodes and initializers no graph output depends on (the orphaned Q/DQ pairs)."""
    needed = {output.name for output in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(output in needed for output in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [tensor for tensor in graph.initializer if tensor.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
