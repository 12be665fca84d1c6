"""Per-row int8: a row's logits do not depend on its batch, and no product can saturate on a CPU
without VNNI (the graphs compute exactly the integer arithmetic a numpy emulation computes)."""

import numpy as np
import onnxruntime as ort
import pytest

onnx = pytest.importorskip("onnx")          # mof-quantize's extra: a runtime-only install skips these
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mof.quant.int8 import quantize_model  # noqa: E402
from mof.measure.rows import row_coupling  # noqa: E402
from mof.quant.rowwise import quantize_rowwise, saturation_risks  # noqa: E402
from mof.runtime import Model  # noqa: E402
from mof.runtime.contract import INT8_FILES  # noqa: E402
from mof.runtime.model import session_options  # noqa: E402


def _dynamic(model, reduce_range=False):
    """mof's earlier scheme (onnxruntime quantize_dynamic), to show the checks can fail."""
    import os
    import tempfile
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from mof.quant.gru_rewrite import gru_to_matmuls
    model, _ = gru_to_matmuls(model)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "a.onnx"), os.path.join(tmp, "b.onnx")
        onnx.save(model, src)
        quantize_dynamic(src, dst, per_channel=True, reduce_range=reduce_range, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gather"], extra_options={"EnableSubgraph": True})
        return onnx.load(dst)


def _int8_model(bundle, quantize) -> Model:
    fp32 = Model.load(bundle)
    so = session_options(None)
    sessions = {n: ort.InferenceSession(quantize(onnx.load(str(bundle / f"{n}.onnx"))).SerializeToString(),
                                        sess_options=so, providers=["CPUExecutionProvider"])
                for n in INT8_FILES}
    return Model(bundle, fp32.manifest, sessions, fp32.vocab, "int8")


@pytest.mark.tf
def test_a_rows_logits_do_not_depend_on_its_batch(tiny_bundle):
    ids = np.random.default_rng(1).integers(0, 60, size=80)
    ours = row_coupling(_int8_model(tiny_bundle, quantize_model), ids, batch=16, chunks=(1, 4))
    print(ours)
    assert ours["step_chunk1"] == 0.0 and ours["step_chunk4"] == 0.0       # bit for bit
    # the window graph keeps fp32 activation x activation products (attention), whose rounding
    # may follow the batch size as in the fp32 graph itself (~1e-6)
    assert ours["exact"] <= 1e-5
    old = row_coupling(_int8_model(tiny_bundle, _dynamic), ids, batch=16, chunks=(1,))
    assert old["exact"] > 1e-3 and old["step_chunk1"] > 1e-3                 # per-tensor: coupled


@pytest.mark.tf
def test_no_product_can_saturate_without_vnni(tiny_bundle):
    for name in INT8_FILES:
        fp32 = onnx.load(str(tiny_bundle / f"{name}.onnx"))
        q = quantize_model(fp32)
        assert saturation_risks(q) == []
        kinds = {n.op_type for n in q.graph.node}
        assert "MatMulIntegerToFloat" in kinds and "DynamicQuantizeMatMul" not in kinds
        risky = saturation_risks(_dynamic(onnx.load(str(tiny_bundle / f"{name}.onnx"))))
        assert risky and "|w| up to" in risky[0]                            # 8-bit s8 weights, u8 x s8


def _matmul_model(w: np.ndarray, doc_string: str = ""):
    K, N = w.shape
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], doc_string=doc_string)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", 2, K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", 2, N])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _weights(w: np.ndarray):
    w_scale = (np.abs(w).max(0) / np.float32(64)).astype(np.float32)
    return np.clip(np.rint(w / w_scale), -64, 64).astype(np.int64), w_scale


def _emulate(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The scheme's arithmetic in numpy, with exact (unsaturated) integer products."""
    w_q, w_scale = _weights(w)
    x_scale = np.abs(x).max(-1, keepdims=True) * np.float32(1 / 127)
    with np.errstate(invalid="ignore"):                                      # 0/0 in an all-zero row
        x_q = np.nan_to_num(np.clip(np.rint(x / x_scale), -128, 127)).astype(np.int64)   # +128 and back
    acc = x_q @ w_q                                                          # exact int64
    return ((acc.astype(np.float32) * w_scale) * x_scale).astype(np.float32)


def _emulate_unit(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The fixed-scale path (GRU hidden states, |x| <= 1): x_q = round(x * 127)."""
    w_q, w_scale = _weights(w)
    x_q = np.clip(np.rint(x * np.float32(127)), -128, 127).astype(np.int64)
    return ((x_q @ w_q).astype(np.float32) * (w_scale / np.float32(127))).astype(np.float32)


def test_the_fixed_scale_path_computes_the_exact_integer_arithmetic():
    from mof.writer.onnx_builder import UNIT_INPUT
    rng = np.random.default_rng(1)
    K, N = 192, 40
    w = rng.normal(0, 1, (K, N)).astype(np.float32)
    w[:, ::3] = np.abs(w).max()                   # columns at +64 everywhere
    x = np.tanh(rng.normal(0, 2, (4, 2, K))).astype(np.float32)
    x[0] = 1.0                                    # rows at u8 255: the largest pair sums
    q = quantize_rowwise(_matmul_model(w, UNIT_INPUT))
    kinds = [n.op_type for n in q.graph.node]
    assert kinds == ["Mul", "QuantizeLinear", "MatMulIntegerToFloat"]     # no per-row scale
    assert saturation_risks(q) == []
    got = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, _emulate_unit(x, w), rtol=2e-6, atol=0)
    assert np.abs(got[0]).max() > 0.9 * np.abs(x[0] @ w).max()             # 2*255*64 pairs, unsaturated
    np.testing.assert_allclose(got, x @ w, rtol=0, atol=0.03 * np.abs(x @ w).max())


def test_onnxruntime_computes_the_exact_integer_arithmetic():
    rng = np.random.default_rng(0)
    K, N = 256, 48
    w = rng.normal(0, 1, (K, N)).astype(np.float32)
    w[::2] = np.abs(w[::2]).max()                 # rows of +64: the largest u8 x s8 pair sums
    x = rng.normal(0, 1, (5, 2, K)).astype(np.float32)
    x[0] = np.abs(x[0]).max()                     # rows at +127 (u8 255) everywhere
    x[1, 0] = 0.0                                 # an all-zero row
    q = quantize_rowwise(_matmul_model(w))
    assert saturation_risks(q) == []
    sess = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0]
    want = _emulate(x, w)
    assert np.all(got[1, 0] == 0.0)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)
    # the worst row's exact integer sum is far beyond what a saturating kernel could return
    assert np.abs(got[0]).max() > 0.5 * np.abs(x[0] @ w).max()
    # each row on its own: identical bits
    alone = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.array_equal(alone, got)
    # and close to fp32
    np.testing.assert_allclose(got, x @ w, rtol=0, atol=0.02 * np.abs(x @ w).max())


def test_the_demo_int8_and_int4_graphs_hold_no_unused_initializer():
    """Every initializer of a quantized graph is read by a node (the GRUs' recurrent weights use
    their w_scale / 127 twin; their plain w_scale used to stay behind, unread)."""
    from mof.writer.onnx_walk import used_names
    from mof.runtime import DEFAULT_BUNDLE
    files = sorted(DEFAULT_BUNDLE.glob("*.int[48].onnx"))
    assert len(files) == 6
    for f in files:
        m = onnx.load(str(f), load_external_data=False)
        used = used_names(m.graph)
        unused = [t.name for t in m.graph.initializer if t.name not in used]
        assert not unused, f"{f.name}: {unused[:3]}"
