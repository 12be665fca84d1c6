"""Convert the rebuilt TF graph to ONNX with tf2onnx; any unsupported op is a failure."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from mof.runtime.contract import INPUT_IDS, LOGITS, ONNX_OPSET
from mof.runtime.errors import MofError
from mof.writer.onnx_walk import all_graphs

from ._tf import import_tf


def _erfc_handler(ctx, node, name, args):
    """TF 2.21's exact gelu emits Erfc, which tf2onnx 1.17 lacks: Erfc(x) = 1 - Erf(x)."""
    from tf2onnx import utils
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    erf = ctx.make_node("Erf", [node.input[0]])
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
    node.type = "Sub"
    node.domain = ""
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])


CUSTOM_OP_HANDLERS = {"Erfc": (_erfc_handler, [])}


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _check_supported(model, messages: Sequence[str]) -> None:
    import onnx
    bad = [m for m in messages if "Unsupported ops" in m or "is not supported" in m]
    if bad:
        raise MofError(f"tf2onnx could not convert every op: {bad[-1]}")
    unknown = set()

    for graph in all_graphs(model.graph):
        for node in graph.node:
            domain = node.domain or ""
            if domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type, domain):
                unknown.add(node.op_type)
    if unknown:
        raise MofError(f"converted graph contains non-ONNX ops: {', '.join(sorted(unknown))}")


def _name_io(model, out_shape: Sequence[object]) -> None:
    """Input ``input_ids`` [batch, seq]; single output renamed to ``logits`` with named dims."""
    from onnx import helper, TensorProto
    g = model.graph
    if len(g.input) != 1 or len(g.output) != 1:
        raise MofError(f"unexpected graph signature: {len(g.input)} inputs, {len(g.output)} outputs")
    inp = g.input[0]
    if inp.name != INPUT_IDS:
        raise MofError(f"converted graph input is {inp.name!r}, expected {INPUT_IDS!r}")
    for dim, name in zip(inp.type.tensor_type.shape.dim, ("batch", "seq")):
        dim.ClearField("dim_value")
        dim.dim_param = name
    old = g.output[0].name
    if old != LOGITS:
        g.node.append(helper.make_node("Identity", [old], [LOGITS], name="mof_logits"))
        del g.output[:]
        g.output.append(helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, list(out_shape)))


def to_onnx(fn_or_model, out_shape: Sequence[object], *, is_keras: bool):
    """Convert a tf_keras model or a tf.function (input ``input_ids`` int32 [B, T]) to an ONNX ModelProto."""
    tf = import_tf()
    import onnx
    import tf2onnx

    spec = [tf.TensorSpec([None, None], tf.int32, name=INPUT_IDS)]
    collect = _Collect()
    log = logging.getLogger("tf2onnx")
    log.addHandler(collect)
    try:
        if is_keras:
            model, _ = tf2onnx.convert.from_keras(
                fn_or_model, input_signature=spec, opset=ONNX_OPSET,
                custom_op_handlers=CUSTOM_OP_HANDLERS)
        else:
            model, _ = tf2onnx.convert.from_function(
                fn_or_model, input_signature=spec, opset=ONNX_OPSET,
                custom_op_handlers=CUSTOM_OP_HANDLERS)
    except MofError:
        raise
    except Exception as e:  # tf2onnx raises bare exceptions for conversion failures
        raise MofError(f"tf2onnx conversion failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
    finally:
        log.removeHandler(collect)
    _check_supported(model, collect.messages)
    _name_io(model, out_shape)
    model.producer_name = "mof-export (tf2onnx)"
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise MofError(f"converted ONNX graph is invalid: {str(e).splitlines()[0][:300]}") from None
    return model
