"""Names shared by every producer and consumer of a bundle.

Export writes these names, the runtime reads them; neither defines its own.
The manifest schema is documented in docs/bundle-format.md.
"""

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
