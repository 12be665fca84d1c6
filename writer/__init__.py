"""mof.writer: writing ONNX graphs and bundles, for mof-export and mof-quantize.

onnx_builder.py (graphs written by hand), onnx_walk.py (a graph and the graphs its nodes hold),
graph_store.py (a precision's graphs with their weights once), manifest.py (the one module that
writes manifest.json), bundle_writer.py (atomic bundle directories), upgrade.py (older formats).
Imports only mof.runtime; the modules that need onnx import it where they use it, so
manifest.py and bundle_writer.py work in a runtime-only install.
"""
