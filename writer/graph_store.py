"""Storing a precision's graphs in a bundle (format 2): every large weight once, in one file.

The step, chunk and decode graphs use the same weights, which embedded graphs would each hold
a copy of. Here each initializer of at least ``EXTERNAL_MIN_BYTES`` moves to
``weights.<precision>.bin`` as standard ONNX external data (location, offset, length),
identical tensors stored once, large ones at page-aligned offsets so onnxruntime can map
them; the graph files keep their structure and the small tensors. Loading is the
runtime's (runtime/model.py): onnxruntime opens the graphs by path and reads the weights
file once per graph session, after the runtime has checked every file and every external
reference (runtime/onnx_refs.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Union

from mof.runtime.contract import GRAPH_FILES, QUANTIZED_FILES, QUANTIZED_GRAPHS, weights_file

from .bundle_writer import BundleWriter
from .manifest import record_weights
from .onnx_walk import all_graphs

EXTERNAL_MIN_BYTES = 1024           # smaller tensors (scalars, shapes, small scales) stay inside the graph
ALIGN = 4096                        # large tensors' offsets are page-aligned: onnxruntime maps them
ALIGN_SMALL = 64                    # tensors under LARGE bytes: cache-line aligned (read, not mapped)
LARGE = 64 * 1024


def _raw(t) -> bytes:
    from onnx import numpy_helper
    return t.raw_data if t.HasField("raw_data") else numpy_helper.to_array(t).tobytes()


def store_graphs(writer: BundleWriter, precision: str,
                 graphs: dict[str, Union[bytes, object]]) -> dict:
    """Write ``graphs`` (file name -> model or serialized model) of one precision into the bundle
    being built, their large weights deduplicated into ``weights_file(precision)``.
    Returns {"file", "tensors" (stored), "references", "bytes"} for the caller's log."""
    import onnx
    from onnx import TensorProto

    name = weights_file(precision)
    offsets: dict[bytes, tuple[int, int]] = {}
    refs = 0
    with open(writer.path(name), "wb") as blob:
        size = 0
        models = {}
        for file, model in graphs.items():
            if isinstance(model, (bytes, bytearray)):
                model = onnx.load_from_string(bytes(model))
            for g in all_graphs(model.graph):
                for t in g.initializer:
                    if t.data_location == TensorProto.EXTERNAL:
                        raise ValueError(f"{file}: initializer {t.name} is already external data")
                    raw = _raw(t)
                    if len(raw) < EXTERNAL_MIN_BYTES:
                        continue
                    key = hashlib.sha256(raw).digest() + t.data_type.to_bytes(4, "little")
                    if key not in offsets:
                        pad = -size % (ALIGN if len(raw) >= LARGE else ALIGN_SMALL)
                        blob.write(b"\0" * pad)
                        offsets[key] = (size + pad, len(raw))
                        blob.write(raw)
                        size += pad + len(raw)
                    offset, length = offsets[key]
                    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                                  "uint64_data", "string_data"):
                        t.ClearField(field)
                    t.data_location = TensorProto.EXTERNAL
                    del t.external_data[:]
                    for k, v in (("location", name), ("offset", str(offset)), ("length", str(length))):
                        entry = t.external_data.add()
                        entry.key, entry.value = k, v
                    refs += 1
            models[file] = model
    for file, model in models.items():
        writer.path(file).write_bytes(model.SerializeToString())
    return {"file": name, "tensors": len(offsets), "references": refs, "bytes": size}


def store_precision(w: BundleWriter, manifest: dict, precision: str, graphs: dict,
                    log: Callable[[str], None]) -> None:
    """Write a precision's decoding graphs (graph name -> model or bytes: step, chunk and, when
    there is one, decode), their weights once in the precision's weights file, and record them
    in ``manifest`` (format 2)."""
    files = QUANTIZED_FILES.get(precision, GRAPH_FILES)
    names = [n for n in QUANTIZED_GRAPHS if n in graphs]
    info = store_graphs(w, precision, {files[n]: graphs[n] for n in names})
    log(f"      {', '.join(files[n] for n in names)} -> {info['file']}: {info['bytes'] / 1e6:.1f} MB, "
        f"{info['tensors']} tensors stored once for {info['references']} references")
    record_weights(manifest, precision, names, info["file"])


def load_graph(bundle_dir: Path, file: str):
    """A bundle's graph as an onnx ModelProto with its weights in memory (embedded or external)."""
    import onnx
    return onnx.load(str(Path(bundle_dir) / file), load_external_data=True)
