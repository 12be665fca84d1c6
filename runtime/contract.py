"""Names shared by every producer and consumer of a bundle.

Export writes these names, the runtime reads them; neither defines its own.
The manifest schema is documented in docs/bundle-format.md.
"""

FORMAT = "mof-bundle"          # manifest["format"]
FORMAT_VERSION = 1             # manifest["format_version"]; bumped on incompatible changes

MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.json"      # a JSON list of strings: id -> token

# Graph names (manifest["graphs"][NAME]) and their files.
GRAPH_FULL = "full"            # input_ids [batch, seq] -> logits [batch, seq, V]
GRAPH_WINDOW = "window"        # input_ids [batch, seq] -> logits [batch, V] (last position)
GRAPH_FILES = {
    GRAPH_FULL: "full.onnx",
    GRAPH_WINDOW: "window.onnx",
}

# Precision keys inside manifest["graphs"][NAME].
FP32 = "fp32"

# Graph input/output names.
INPUT_IDS = "input_ids"        # int32 [batch, seq]
LOGITS = "logits"              # float32

# The reference maps characters missing from the vocabulary to this token's id.
UNKNOWN_TOKEN = "\u25a9"       # '▩'

ONNX_OPSET = 17
