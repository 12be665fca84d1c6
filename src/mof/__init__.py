"""mof: run Xiaothink "MoF" language models (T6 and T7) on a CPU with onnxruntime.

Subpackages, and what each may import (tests/test_layers.py checks every import):
  mof.runtime  -- numpy + onnxruntime only: reading bundles, tokenizer, decoding, mof-run (an app embeds this)
  mof.writer   -- writing ONNX graphs and bundles: graph builder, graph store, manifest.json;  runtime
  mof.measure  -- accuracy against the oracles, the stream policy table, mof-eval, the machine;  runtime, writer
  mof.quant    -- int8 and int4 variants of a bundle's graphs (mof-quantize);  runtime, writer, measure
  mof.export   -- TensorFlow checkpoint -> ONNX bundle (mof-export; the [export] extra);  all of the above
  mof.bench    -- mof-bench: latency, memory and the roofline on this machine;  runtime, writer, measure
  mof.serve    -- mof-serve: the OpenAI-compatible server (the [serve] extra);  runtime
"""

__version__ = "0.2.0"
