"""Does TensorRT 10's ONNX parser accept a graph? A static check against its operator support
matrix, kept as data (``tensorrt10_onnx_ops.json``: the source and TensorRT version are inside),
so that it runs where TensorRT cannot be installed: every operator is supported, every restricted
attribute has an accepted value, inputs that must be build-time constants are, GridSample is 4-D,
no tensor has a type TensorRT lacks, and the opset is in range."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("tensorrt10_onnx_ops.json")


@cache
def support() -> dict[str, Any]:
    return dict(json.loads(DATA.read_text()))


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _decoded(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _constants(graph: Any) -> set[str]:
    names = {t.name for t in graph.initializer}
    names |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return names


def _tensors(model: Any) -> dict[str, tuple[int, str]]:
    """(rank, element type name) of every typed tensor, from one shape-inference pass."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {
        v.name: (
            len(v.type.tensor_type.shape.dim),
            onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),
        )
        for v in values
        if v.type.HasField("tensor_type")
    }


def _node_problems(node: Any, rules: dict[str, Any], constants: set[str], ranks: dict[str, int]) -> list[str]:
    where = f"{node.op_type} ({node.name or node.output[0]})"
    problems = []
    attrs = _attributes(node)
    for name, allowed in rules.get("attributes", {}).items():
        if name in attrs and _decoded(attrs[name]) not in allowed:
            problems.append(f"{where}: attribute {name}={_decoded(attrs[name])!r} not in {allowed}")
    for index in rules.get("constant_inputs", []):
        if index < len(node.input) and node.input[index] and node.input[index] not in constants:
            problems.append(f"{where}: input {index} must be a build-time constant")
    rank = rules.get("input_rank")
    if rank is not None and ranks.get(node.input[0], rank) != rank:
        problems.append(f"{where}: input must be {rank}-D, is {ranks[node.input[0]]}-D")
    return problems


def check_model(model: Any) -> list[str]:
    """Problems TensorRT 10's ONNX parser would have with ``model`` (an ``onnx.ModelProto``);
    an empty list means every check passed."""
    data = support()
    supported = set(data["supported"])
    problems = []
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if not data["opset_min"] <= opset <= data["opset_max"]:
        problems.append(f"opset {opset} outside {data['opset_min']}–{data['opset_max']}")
    tensors = _tensors(model)
    constants, ranks = _constants(model.graph), {n: rank for n, (rank, _) in tensors.items()}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in supported:
            version = data["tensorrt_version"]
            problems.append(f"{node.op_type} ({node.name}): not supported by TensorRT {version}")
            continue
        problems += _node_problems(node, data["restrictions"].get(node.op_type, {}), constants, ranks)
    bad_types = set(data["unsupported_types"])
    problems += [f"tensor {n} has type {t}" for n, (_, t) in tensors.items() if t in bad_types]
    return problems


def check_file(path: str | Path) -> list[str]:
    import onnx

    return check_model(onnx.load(str(path)))
