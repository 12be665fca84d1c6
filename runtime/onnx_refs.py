"""Which files an ONNX graph reads its external data from, found by parsing the protobuf wire
format (no onnx package: the runtime stays numpy + onnxruntime).

A format-2 bundle's graphs keep their large weights in one shared file per precision
(docs/bundle-format.md). Before onnxruntime opens a graph, the loader checks that every
external tensor names exactly that file: a graph cannot make onnxruntime read anything
else, inside the bundle or out (onnxruntime itself also refuses absolute paths and `..`).

Fields walked (onnx.proto3): ModelProto.graph (7) and .functions (25); GraphProto.node (1),
.initializer (5), .sparse_initializer (15); NodeProto.attribute (5); FunctionProto.node (3);
AttributeProto.t (5), .g (6), .tensors (10), .graphs (11), .sparse_tensor (22),
.sparse_tensors (23); SparseTensorProto.values (1), .indices (2); TensorProto.external_data
(13, StringStringEntryProto key 1 / value 2) and .data_location (14, EXTERNAL = 1).
"""

from __future__ import annotations

from typing import Iterator

MAX_DEPTH = 64                 # nested graphs deeper than this are refused, not recursed into


class ProtoError(ValueError):
    """The bytes are not a well-formed ONNX protobuf."""


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ProtoError("truncated or overlong varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value): an int for varints, a memoryview for length-delimited."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 5:
            value, i = None, i + 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtoError("length-delimited field runs past the end")
            value, i = buf[i:i + n], i + n
        else:
            raise ProtoError(f"unsupported wire type {wire}")
        if i > len(buf):
            raise ProtoError("field runs past the end")
        yield field, wire, value


def _sub(fields, wanted: int):
    return [v for f, w, v in fields if f == wanted and w == 2]


def _tensor(buf: memoryview, out: list) -> None:
    location, external = None, False
    for f, w, v in _fields(buf):
        if f == 14 and w == 0:
            external = external or v == 1
        elif f == 13 and w == 2:
            entry = {k: bytes(val) for k, wk, val in _fields(v) if wk == 2}
            if entry.get(1) == b"location":
                external = True
                try:
                    location = entry.get(2, b"").decode("utf-8")
                except UnicodeDecodeError:
                    location = repr(entry.get(2))
    if external:
        out.append(location)


def _graph(buf: memoryview, out: list, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ProtoError("graphs nested too deeply")
    fields = list(_fields(buf))
    for t in _sub(fields, 5):
        _tensor(t, out)
    for sparse in _sub(fields, 15):
        _sparse(sparse, out)
    for node in _sub(fields, 1):
        _node(node, out, depth)


def _sparse(buf: memoryview, out: list) -> None:
    fields = list(_fields(buf))
    for t in _sub(fields, 1) + _sub(fields, 2):
        _tensor(t, out)


def _node(buf: memoryview, out: list, depth: int) -> None:
    for attr in _sub(_fields(buf), 5):
        fields = list(_fields(attr))
        for t in _sub(fields, 5) + _sub(fields, 10):
            _tensor(t, out)
        for s in _sub(fields, 22) + _sub(fields, 23):
            _sparse(s, out)
        for g in _sub(fields, 6) + _sub(fields, 11):
            _graph(g, out, depth + 1)


def external_locations(model: bytes) -> list:
    """The ``location`` of every tensor stored as external data, one entry per tensor (None for
    an external tensor without a location). Raises ProtoError on malformed bytes."""
    buf = memoryview(model)
    out: list = []
    fields = list(_fields(buf))
    for g in _sub(fields, 7):
        _graph(g, out, 0)
    for fn in _sub(fields, 25):
        for node in _sub(_fields(fn), 3):
            _node(node, out, 1)
    return out
