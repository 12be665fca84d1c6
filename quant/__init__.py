"""mof.quant: quantized variants of a bundle's graphs (mof-quantize; needs onnx).

int8 (int8.py, rowwise.py): weights 7-bit int8 per output channel, activations uint8 per row,
the same logits on every x86 CPU; int4 (int4.py): MatMulNBits. bundle_quant.py quantizes a
bundle's decoding graphs, measures them against fp32 (mof.measure) and gates them
(mof.measure.gates).
"""
