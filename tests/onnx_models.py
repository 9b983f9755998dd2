"""Tiny ONNX graphs built at test time, so the ONNX extractor is tested without downloading any weights.

Each builder writes a model file and returns its path. Shapes use the symbol ``"N"`` for a dynamic batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Shape = Sequence[int | str]
OPSET = 17
IR_VERSION = 8  # old enough for any onnxruntime the project supports


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _tensor(name: str, shape: Shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def identity_model(path: Path, input_name: str, output_name: str, shape: Shape) -> Path:
    """Output = input: a probe that shows exactly which tensor the extractor fed the model."""
    node = helper.make_node("Identity", [input_name], [output_name])
    graph = helper.make_graph([node], "identity", [_tensor(input_name, shape)], [_tensor(output_name, shape)])
    return _save(graph, path)


def pooled_linear_model(
    path: Path,
    weights: np.ndarray,
    *,
    input_name: str = "data",
    output_name: str = "encode1",
    input_shape: Shape = ("N", 3, 224, 224),
) -> Path:
    """NCHW input -> per-channel mean -> times ``weights`` (channels × out): an i2v-shaped stand-in, exact to check.

    Row i of the output is ``channel_means(image_i) @ weights``, so a test can tell whether rows stay in order.
    """
    out_dim = weights.shape[1]
    nodes = [
        helper.make_node("GlobalAveragePool", [input_name], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], [output_name]),
    ]
    init = [numpy_helper.from_array(weights.astype(np.float32), "weights")]
    graph = helper.make_graph(
        nodes,
        "pooled_linear",
        [_tensor(input_name, input_shape)],
        [_tensor(output_name, (input_shape[0], out_dim))],
        initializer=init,
    )
    return _save(graph, path)


def two_input_model(path: Path, shape: Shape = ("N", 3, 224, 224)) -> Path:
    """A model that needs a second input the extractor cannot feed."""
    node = helper.make_node("Add", ["data", "extra"], ["encode1"])
    inputs = [_tensor("data", shape), _tensor("extra", shape)]
    graph = helper.make_graph([node], "two_inputs", inputs, [_tensor("encode1", shape)])
    return _save(graph, path)


def corrupt_model(path: Path) -> Path:
    """Bytes that are not an ONNX protobuf (what a truncated download or an HTML error page looks like)."""
    path.write_bytes(b"<html>404 Not Found</html>" * 10)
    return path
