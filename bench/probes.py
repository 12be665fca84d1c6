"""This machine's floors, measured with the kernels decoding runs: onnxruntime sessions of one
MatMul-like node, with the runtime's own session options and thread count, best of several runs.

- ``read_floor``: the time the precision's kernel needs to read a weight of at least ``nbytes``
  bytes (one row of activations, M = 1): the memory floor of a token that reads that many weight
  bytes. The probe's weight has the byte size the mode reads per token, so a working set that
  fits in the caches is timed from the caches, and one that does not from memory, as decoding is.
- ``reread_floor``: the same kernel reading one weight of ``nbytes`` bytes REREADS times in one
  run, a row each time, as a recurrence reads its recurrent matrix step after step: the weight
  stays in the cache level it fits in (L2, L3 or none), and the session call's fixed cost (~6 µs
  here, more than a small matrix's read) is spread over the reads. Its ``read_s`` is one step's
  read: the sequential part of a window pass's floor (``mof.bench.roofline``).
- ``peak_macs``: multiply-accumulates per second of a large product (M = 256, K = N = 1024): the
  compute floor of a pass is its MACs at this rate.

The probe graphs are built with the onnx package (the [quant] extra); their weights are handed to
onnxruntime as external initializers (``SessionOptions.add_external_initializers``), so a
probe as large as a full-size model's weights is not copied into a protobuf.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

PROBE_K = 1024                   # the reduction length of every probe's weight
PEAK_SHAPE = (256, 1024, 1024)   # M, K, N of the compute probe
MIN_REPEATS = 5                  # a probe runs at least this many times after a warm-up ...
MAX_REPEATS = 30                 # ... and at most this many,
PROBE_SECONDS = 1.0              # ... stopping once this much time has been spent
INT8_WEIGHT_RANGE = 64           # MatMulIntegerToFloat probe weights lie in [-64, 64] (7 bits)
REREADS = 32                     # reads of its one weight per run of a recurrence's probe


@dataclass(frozen=True)
class Kernel:
    op: str                      # MatMul (fp32), MatMulInteger (u8 x u8), MatMulIntegerToFloat (u8 x s8), MatMulNBits
    bits: int = 0                # MatMulNBits: bits per weight ...
    block_size: int = 0          # ... its block size ...
    accuracy_level: int = 0      # ... and accuracy level, as in the bundle's graph

    @property
    def label(self) -> str:
        if self.op == "MatMulNBits":
            return f"MatMulNBits {self.bits}-bit block {self.block_size} acc {self.accuracy_level}"
        return {"MatMulInteger": "MatMulInteger u8xu8", "MatMulIntegerToFloat": "MatMulIntegerToFloat u8xs8"
                }.get(self.op, self.op)


FP32 = Kernel("MatMul")
INT8_KERNELS = (Kernel("MatMulInteger"), Kernel("MatMulIntegerToFloat"))


def kernel_for(precision: str, kernels: tuple, nbits: tuple) -> Kernel:
    """The kernel a precision's graph multiplies its weights with (``kernels``/``nbits``: what
    ``mof.bench.macs.count_sites`` found in it)."""
    if precision == "int4" or "MatMulNBits" in kernels:
        bits, block, acc = nbits[0] if nbits else (4, 32, 4)
        return Kernel("MatMulNBits", bits, block, acc)
    if "MatMulIntegerToFloat" in kernels:
        return INT8_KERNELS[1]
    if "MatMulInteger" in kernels:
        return INT8_KERNELS[0]
    return FP32


@dataclass(frozen=True)
class Probe:
    kernel: str          # Kernel.label
    shape: tuple         # M, K, N
    weight_bytes: int    # bytes of every weight input the probe reads
    best_s: float        # its fastest run
    reads: int = 1       # products per run, each reading the whole weight (REREADS: a recurrence's)

    @property
    def read_s(self) -> float:
        """One read of the weight: the fastest run over its reads."""
        return self.best_s / self.reads

    @property
    def macs_per_s(self) -> float:
        m, k, n = self.shape
        return m * k * n / self.read_s

    @property
    def read_gbs(self) -> float:
        return self.weight_bytes / self.read_s / 1e9


def _weights(kernel: Kernel, k: int, n: int, rng) -> dict:
    """The probe's weight inputs (name -> array), laid out as the kernel reads them."""
    if kernel.op == "MatMul":
        return {"W": rng.random((k, n), dtype=np.float32)}
    if kernel.op == "MatMulInteger":
        return {"W": rng.integers(0, 256, (k, n), dtype=np.uint8)}
    if kernel.op == "MatMulIntegerToFloat":
        return {"W": rng.integers(-INT8_WEIGHT_RANGE, INT8_WEIGHT_RANGE + 1, (k, n), dtype=np.int8)}
    blocks = k // kernel.block_size
    return {"W": rng.integers(0, 256, (n, blocks, kernel.block_size * kernel.bits // 8), dtype=np.uint8),
            "scales": rng.random((n, blocks), dtype=np.float32),
            "zero_points": np.full((n, (blocks * kernel.bits + 7) // 8), 0x88, np.uint8)}


def _external(name: str, arr: np.ndarray):
    """A weight declared in the graph, its data handed over by add_external_initializers."""
    from onnx import TensorProto, helper
    t = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(arr.dtype), dims=arr.shape,
                    data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "probe.bin"), ("offset", "0"), ("length", str(arr.nbytes))):
        e = t.external_data.add()
        e.key, e.value = key, value
    return t


def _product(kernel: Kernel, a: str, y: str, k: int, n: int):
    """(node, its constant inputs, its domain, A's and Y's element types): Y = A · W in ``kernel``."""
    from onnx import TensorProto, helper, numpy_helper
    const = lambda name, v: numpy_helper.from_array(np.array(v), name)      # noqa: E731
    if kernel.op == "MatMul":
        return helper.make_node("MatMul", [a, "W"], [y]), [], "", TensorProto.FLOAT, TensorProto.FLOAT
    if kernel.op == "MatMulInteger":
        return (helper.make_node("MatMulInteger", [a, "W", "zp", "zp"], [y]), [const("zp", np.uint8(128))], "",
                TensorProto.UINT8, TensorProto.INT32)
    if kernel.op == "MatMulIntegerToFloat":
        consts = [const("a_scale", np.float32(0.01)), const("b_scale", np.float32(0.01)),
                  const("a_zp", np.uint8(128))]
        node = helper.make_node("MatMulIntegerToFloat", [a, "W", "a_scale", "b_scale", "a_zp"], [y],
                                domain="com.microsoft")
        return node, consts, "com.microsoft", TensorProto.UINT8, TensorProto.FLOAT
    node = helper.make_node("MatMulNBits", [a, "W", "scales", "zero_points"], [y], domain="com.microsoft",
                            K=k, N=n, bits=kernel.bits, block_size=kernel.block_size,
                            accuracy_level=kernel.accuracy_level)
    return node, [], "com.microsoft", TensorProto.FLOAT, TensorProto.FLOAT


def _graph(kernel: Kernel, m: int, k: int, weights: dict, reads: int = 1) -> bytes:
    """``reads`` products of the one weight, each with its own input A<i> (no two nodes alike,
    which onnxruntime would merge), in the order onnxruntime's sequential executor runs them."""
    from onnx import helper
    n = weights["W"].shape[0 if kernel.op == "MatMulNBits" else 1]
    nodes, consts, ins, outs = [], [], [], []
    for i in range(reads):
        node, consts, domain, a_type, y_type = _product(kernel, f"A{i}", f"Y{i}", k, n)
        nodes.append(node)
        ins.append(helper.make_tensor_value_info(f"A{i}", a_type, [m, k]))
        outs.append(helper.make_tensor_value_info(f"Y{i}", y_type, [m, n]))
    inits = [_external(name, arr) for name, arr in weights.items()] + consts
    graph = helper.make_graph(nodes, "probe", ins, outs, initializer=inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def _time(kernel: Kernel, m: int, k: int, n: int, threads: Optional[int], reads: int = 1) -> Probe:
    import onnxruntime as ort
    from mof.runtime.model import session_options
    rng = np.random.default_rng(0)
    weights = _weights(kernel, k, n, rng)
    so = session_options(threads)                 # the runtime's options: threads, no arena, ...
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in weights.values()]
    so.add_external_initializers(list(weights), values)
    sess = ort.InferenceSession(_graph(kernel, m, k, weights, reads), so, providers=["CPUExecutionProvider"])
    a = (rng.integers(0, 256, (m, k), dtype=np.uint8) if kernel.op.startswith("MatMulInteger")
         else rng.random((m, k), dtype=np.float32))
    feeds = {f"A{i}": a for i in range(reads)}
    sess.run(None, feeds)                         # warm-up (and the caches)
    best, spent, runs = float("inf"), 0.0, 0
    while runs < MIN_REPEATS or (runs < MAX_REPEATS and spent < PROBE_SECONDS):
        t = time.perf_counter()
        sess.run(None, feeds)
        dt = time.perf_counter() - t
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return Probe(kernel.label, (m, k, n), int(sum(w.nbytes for w in weights.values())), best, reads)


def _columns(kernel: Kernel, k: int, nbytes: int) -> int:
    """Output columns of a [k, N] weight of at least ``nbytes`` bytes (scales included), N a multiple of 16."""
    if kernel.op == "MatMul":
        per_col = 4 * k
    elif kernel.op == "MatMulNBits":
        blocks = k // kernel.block_size
        per_col = k * kernel.bits // 8 + 4 * blocks + (blocks * kernel.bits + 7) // 8
    else:
        per_col = k
    cols = -(-nbytes // per_col)
    return max(16, -(-cols // 16) * 16)


def read_floor(kernel: Kernel, nbytes: int, threads: Optional[int]) -> Probe:
    """The kernel reading a weight of at least ``nbytes`` bytes with one row of activations."""
    return _time(kernel, 1, PROBE_K, _columns(kernel, PROBE_K, nbytes), threads)


def reread_floor(kernel: Kernel, nbytes: int, threads: Optional[int]) -> Probe:
    """The kernel reading a weight of at least ``nbytes`` bytes REREADS times in one run, one row
    each time, as a recurrence does step after step: ``read_s`` is one step's read, from the
    cache level that weight fits in on this machine."""
    return _time(kernel, 1, PROBE_K, _columns(kernel, PROBE_K, nbytes), threads, REREADS)


def peak_macs(kernel: Kernel, threads: Optional[int]) -> Probe:
    """The kernel on a large product: this machine's peak multiply-accumulates per second for it."""
    return _time(kernel, *PEAK_SHAPE, threads)
