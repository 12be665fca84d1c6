"""mof: run Xiaothink T6 "MoF" language models on a CPU with onnxruntime.

Subpackages (each imports only those listed before it):
  mof.runtime  -- numpy + onnxruntime only: bundle format, tokenizer, decoding
  mof.quant    -- int8 variants of a bundle's graphs
  mof.export   -- TensorFlow checkpoint -> ONNX bundle (needs the [export] extra)
"""

__version__ = "0.2.0"
