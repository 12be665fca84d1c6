"""Bundle format 2 (one weights file per precision) is what the runtime reads; a format-1 bundle
(each graph with its own weights) is refused with the command that upgrades it, and mof-quantize
--upgrade turns it into the shipped format-2 bundle, which loads and computes the same."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from mof.runtime import DEFAULT_BUNDLE, Model
from mof.runtime.bundle import BundleError, file_record, read_manifest, verify_bundle
from mof.runtime.contract import FP32, INT8, PRECISIONS, weights_file

def make_format1(src, dst):
    """A format-1 copy of a format-2 bundle: every graph embeds its weights, no 'weights' section,
    no decode graph."""
    onnx = pytest.importorskip("onnx")                   # the [export] extra
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text(encoding="utf-8"))
    for name in m["graphs"].pop("decode").values():        # format 1 had no decode graph
        if isinstance(name, str) and name.endswith(".onnx"):
            (dst / name).unlink()
            del m["files"][name]
    for graph in m["graphs"].values():
        for precision in PRECISIONS:
            name = graph.get(precision)
            if isinstance(name, str):
                data = onnx.load(str(dst / name)).SerializeToString()     # external data read in
                (dst / name).write_bytes(data)
                m["files"][name] = file_record(dst / name)
    for precision, name in m.pop("weights").items():
        (dst / name).unlink()
        del m["files"][name]
    m["format_version"] = 1
    (dst / "manifest.json").write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def format1(tmp_path_factory):
    return make_format1(DEFAULT_BUNDLE, tmp_path_factory.mktemp("v1") / "demo-v1.mof")


def _logits(model):
    ids = model.vocab.encode("床前明月光，疑是地上霜。举头望明月，")
    a, state = model.refill(ids)
    b, _ = model.step([ids[:2]], state)                  # a chunk of two steps
    return a, b


def test_a_format1_bundle_is_refused_with_the_upgrade_command(format1, capsys):
    with pytest.raises(BundleError) as e:
        Model.load(format1)
    assert str(e.value) == (f"{format1} is in bundle format 1, which this mof no longer runs; "
                            f"upgrade it with: mof-quantize --upgrade {format1}")
    from mof.runtime.cli import main
    assert main(["--model", str(format1), "--prompt", "hi"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"mof-quantize --upgrade {format1}" in err, err


def test_weights_are_stored_once_per_precision():
    """Every external tensor of the step and chunk graphs points into the precision's weights file,
    and no two distinct offsets hold the same bytes."""
    onnx = pytest.importorskip("onnx")
    m = verify_bundle(DEFAULT_BUNDLE)
    for precision in PRECISIONS:
        assert m["weights"][precision] == weights_file(precision)
        blob = (DEFAULT_BUNDLE / weights_file(precision)).read_bytes()
        spans, refs = {}, 0
        for graph in ("step", "chunk"):
            g = onnx.load(str(DEFAULT_BUNDLE / m["graphs"][graph][precision]), load_external_data=False)
            for t in g.graph.initializer:
                if t.data_location == onnx.TensorProto.EXTERNAL:
                    e = {x.key: x.value for x in t.external_data}
                    assert e["location"] == weights_file(precision)
                    off, n = int(e["offset"]), int(e["length"])
                    spans[(off, n)] = hashlib.sha256(blob[off:off + n]).hexdigest()
                    refs += 1
        assert refs > len(spans) > 0                                  # shared by both graphs
        assert len(set(spans.values())) == len(spans)                 # each content once
        stored = sum(n for _, n in spans)
        assert stored <= len(blob) <= stored + 4096 * len(spans)      # nothing else but alignment
        print(f"{precision}: {refs} references to {len(spans)} tensors, {stored} bytes in a "
              f"{len(blob)}-byte file")


def test_upgrade_rewrites_format1_as_the_shipped_format2(format1, tmp_path):
    from mof.quant.cli import main
    up = tmp_path / "up.mof"
    shutil.copytree(format1, up)
    assert main([str(up), "--upgrade", "-q"]) == 0
    m = verify_bundle(up)
    assert m["format_version"] == 2
    for precision in PRECISIONS:
        assert (up / weights_file(precision)).read_bytes() == (DEFAULT_BUNDLE / weights_file(precision)).read_bytes()
    for a, b in zip(_logits(Model.load(up, int8=True)), _logits(Model.load(DEFAULT_BUNDLE, int8=True))):
        assert np.array_equal(a, b)
    assert main([str(up), "--upgrade", "-q"]) == 1                  # already format 2: an error, no change


@pytest.mark.parametrize("precision, atol", [(FP32, 0.0), (INT8, 1e-5), ("int4", 1e-4)])
def test_the_decode_graph_computes_what_step_and_chunk_do(precision, atol):
    """Decoding loads the decode graph (one session, the weights once); it must give the step and
    chunk graphs' results, for a batch of rows: bit for bit in fp32 (the same ops), within 1e-5
    in int8 and 1e-4 in int4 (onnxruntime fuses the dequantizations of the two graphs
    differently: ~1e-6 and ~3e-6 seen)."""
    # the graphs against each other under this onnxruntime (even one int4's figures are refused on)
    merged = Model.load(DEFAULT_BUNDLE, precision=precision, check_onnxruntime=False)
    apart = Model.load(DEFAULT_BUNDLE, precision=precision, graphs=("step", "chunk"), check_onnxruntime=False)
    assert list(merged.sessions) == ["decode"]
    ids = np.array([merged.vocab.encode("床前明月光，疑是地上霜。"), merged.vocab.encode("白日依山尽，黄河入海流。")])
    (a, sa), (b, sb) = merged.refill(ids), apart.refill(ids)
    worst = float(np.abs(a - b).max())
    for f in sa.names:
        worst = max(worst, float(np.abs(getattr(sa, f) - getattr(sb, f)).max(initial=0.0)))
    for chunk in (ids[:, :1], ids[:, 1:4]):
        (a, sa), (b, sb) = merged.step(chunk, sa), apart.step(chunk, sb)
        assert np.array_equal(sa.position, sb.position)
        worst = max(worst, float(np.abs(a - b).max()))
    worst = max(worst, float(np.abs(merged.exact_logits(ids) - apart.exact_logits(ids)).max()))
    print(f"{precision}: decode graph vs step + chunk graphs, max |Δ| {worst:.2e}")
    assert worst <= atol
    one, _ = merged.refill(ids[:1])                               # rows stay independent
    row_diff = float(np.abs(one - merged.refill(ids)[0][:1]).max())
    print(f"{precision}: a row alone vs in a batch of 2, max |Δ| {row_diff:.2e}")
    # int4's MatMulNBits kernels are onnxruntime's and CPU-dependent (docs/quantization.md): on an
    # AVX2-only CPU they pick their path by the number of rows (window passes: 2.4e-6 under
    # onnxruntime 1.32, 1.2e-2 under 1.20.1; bit for bit on AVX-512 VNNI); fp32 and int8 bit for bit
    cpu_dependent = bool(read_manifest(DEFAULT_BUNDLE).get(precision, {}).get("quantization", {}).get("cpu_dependent"))
    assert row_diff <= (0.05 if cpu_dependent else 0.0)


def test_network_identity_covers_the_weights_file(tmp_path):
    """A saved state belongs to the network: in format 2 the step graph's hash alone would not
    tell two models with the same shapes apart, so the weights file's hash is part of it."""
    other = tmp_path / "other.mof"
    shutil.copytree(DEFAULT_BUNDLE, other)
    w = other / weights_file(FP32)
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    m = json.loads((other / "manifest.json").read_text(encoding="utf-8"))
    m["files"][w.name] = file_record(w)
    (other / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    a, b = read_manifest(DEFAULT_BUNDLE), read_manifest(other)
    assert a.file_sha256("step.onnx") == b.file_sha256("step.onnx")
    assert a.network_identity != b.network_identity
