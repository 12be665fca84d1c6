"""Names shared by every producer and consumer of a bundle.

Export writes these names, the runtime reads them; neither defines its own.
The manifest schema is documented in docs/bundle-format.md.

Each graph's inputs and outputs are declared here once (``graph_io``): the step graph builder
(mof.export.step_graph) writes them, the manifest writer (mof.writer.manifest.graph_entry) records
them, and Model.load checks an opened graph against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ModelConfig

FORMAT = "mof-bundle"          # manifest["format"]
FORMAT_VERSION = 2             # manifest["format_version"] written; bumped on incompatible changes
READABLE_VERSIONS = (FORMAT_VERSION,)   # what the runtime reads; older: mof-quantize --upgrade (writer/upgrade.py)

MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.json"      # a JSON list of strings: id -> token

# Graph names (manifest["graphs"][NAME]) and their files.
GRAPH_FULL = "full"            # input_ids [batch, seq] -> logits [batch, seq, V]
GRAPH_WINDOW = "window"        # input_ids [batch, seq] -> logits [batch, V] (last position)
GRAPH_STEP = "step"            # input_ids [batch, chunk] + position + state -> logits [batch, V] + state
GRAPH_CHUNK = "chunk"          # input_ids [batch, seq] -> logits [batch, V] + state, with the reference's
                               # (window) semantics from a zero state: the stream decoder's refills
GRAPH_DECODE = "decode"        # step's inputs + REFILL_INPUT: chunk if refill else step, in one graph
                               # whose weights one onnxruntime session holds once (what mof.runtime runs)
GRAPH_FILES = {
    GRAPH_FULL: "full.onnx",
    GRAPH_WINDOW: "window.onnx",
    GRAPH_STEP: "step.onnx",
    GRAPH_CHUNK: "chunk.onnx",
    GRAPH_DECODE: "decode.onnx",
}

# Precision keys inside manifest["graphs"][NAME] and manifest["weights"].
FP32 = "fp32"
INT8 = "int8"                  # per-row int8 (mof-quantize / mof-export --int8)
INT4 = "int4"                  # 4-bit blocks, onnxruntime's MatMulNBits (mof-quantize --int4)
PRECISIONS = (FP32, INT8, INT4)
QUANTIZED_GRAPHS = (GRAPH_STEP, GRAPH_CHUNK, GRAPH_DECODE)   # the graphs decoding runs (decode: when the bundle
                                                             # has it), what int8 / int4 variants exist of
INT8_FILES = {GRAPH_STEP: "step.int8.onnx", GRAPH_CHUNK: "chunk.int8.onnx", GRAPH_DECODE: "decode.int8.onnx"}
INT4_FILES = {GRAPH_STEP: "step.int4.onnx", GRAPH_CHUNK: "chunk.int4.onnx", GRAPH_DECODE: "decode.int4.onnx"}
QUANTIZED_FILES = {INT8: INT8_FILES, INT4: INT4_FILES}
# Optional fused variants of a precision's decoding graphs (mof-quantize --native; docs/native.md):
# manifest["graphs"][NAME][native_key(precision)] names the file, manifest[NATIVE] the custom ops they
# need; they read the precision's own weights file. Readers that do not know the keys ignore them.
NATIVE = "native"
NATIVE_PRECISIONS = (INT8,)    # precisions whose products mof.native::RowwiseQMatMul computes
NATIVE_FILES = {INT8: {GRAPH_STEP: "step.int8.native.onnx", GRAPH_CHUNK: "chunk.int8.native.onnx",
                       GRAPH_DECODE: "decode.int8.native.onnx"}}


def native_key(precision: str) -> str:
    """The graph entry's key of ``precision``'s fused graphs: "int8_native"."""
    return f"{precision}_{NATIVE}"


def weights_file(precision: str) -> str:
    """Format 2: the one file holding every large weight of a precision's graphs, each stored once
    (ONNX external data; manifest["weights"][precision] names it)."""
    return f"weights.{precision}.bin"

# Graph input/output names.
INPUT_IDS = "input_ids"        # int32 [batch, seq]
LOGITS = "logits"              # float32
POSITION = "position"          # int64 [batch]: position of the chunk's first token (step graph)
REFILL_INPUT = "refill"        # bool []: the decode graph runs the chunk graph (true) or the step graph

# Recurrent state of the step graph: input STATE_IN + field, output STATE_OUT + field.
STATE_IN = "state."
STATE_OUT = "state_out."

# The reference maps characters missing from the vocabulary to this token's id.
UNKNOWN_TOKEN = "\u25a9"       # '▩'

ONNX_OPSET = 17


# The graphs' inputs and outputs ------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output."""
    name: str
    dtype: str                  # numpy's name: "int32", "int64", "float32" or "bool"
    shape: tuple                # ints (fixed by the config) and symbolic names: "batch", "chunk", "seq"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's form: {"name", "dtype", "shape"}."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphIO:
    """A graph's inputs and outputs, in order."""
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def graph_io(graph: str, config: "ModelConfig") -> GraphIO:
    """The inputs and outputs of graph ``graph`` (a GRAPH_* name) of a model with ``config``:

    full    input_ids [batch, seq]                         -> logits [batch, seq, V]
    window  input_ids [batch, seq]                         -> logits [batch, V] (last position)
    chunk   input_ids [batch, seq]                         -> logits [batch, V], state_out.* (state_io)
    step    input_ids [batch, chunk], position [batch],
            state.* (state_io)                             -> logits [batch, V], state_out.*
    decode  step's inputs, refill []                       -> step's outputs
    """
    from .state import state_io                 # state reads this module's names
    if graph not in GRAPH_FILES:
        raise ValueError(f"unknown graph {graph!r}")
    V = config.vocab_size
    if graph in (GRAPH_FULL, GRAPH_WINDOW):
        shape = ("batch", "seq", V) if graph == GRAPH_FULL else ("batch", V)
        return GraphIO((TensorSpec(INPUT_IDS, "int32", ("batch", "seq")),),
                       (TensorSpec(LOGITS, "float32", shape),))
    state = state_io(config)
    outputs = (TensorSpec(LOGITS, "float32", ("batch", V)),) + tuple(
        TensorSpec(name_out, "float32", tuple(shape)) for _, name_out, shape in state)
    if graph == GRAPH_CHUNK:
        return GraphIO((TensorSpec(INPUT_IDS, "int32", ("batch", "seq")),), outputs)
    inputs = (TensorSpec(INPUT_IDS, "int32", ("batch", "chunk")), TensorSpec(POSITION, "int64", ("batch",))) \
        + tuple(TensorSpec(name_in, "float32", tuple(shape)) for name_in, _, shape in state)
    if graph == GRAPH_DECODE:
        inputs += (TensorSpec(REFILL_INPUT, "bool", ()),)
    return GraphIO(inputs, outputs)
