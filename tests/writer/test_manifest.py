"""manifest.json is written by mof.writer.manifest alone: a quantized precision's record goes under
its own key (int8 like int4), where the runtime's reader finds it; upgrading a format-1 bundle
(mof.writer.upgrade) moves that format's top-level int8 record there."""

import json

from mof.runtime import DEFAULT_BUNDLE
from mof.runtime.contract import FORMAT_VERSION
from mof.runtime.manifest import Manifest
from mof.writer.manifest import add_precision, record_weights, set_stream_report, without_files
from mof.writer.upgrade import upgraded_manifest

RECORD = {"quantization": {"name": "rowwise-u8s8"}, "accuracy": {"passed": False, "gates": {}}}


def _demo() -> dict:
    return without_files(json.loads((DEFAULT_BUNDLE / "manifest.json").read_text(encoding="utf-8")))


def _legacy(m: dict) -> dict:
    """The demo's manifest as format 1 wrote it: int8's record at the top level."""
    m = {k: v for k, v in m.items() if k != "int8"}
    return {**m, **RECORD}


def test_add_precision_puts_every_record_under_its_precision_and_copies():
    m = _demo()
    before = json.dumps(m, sort_keys=True)
    out = add_precision(m, "int8", RECORD, {"measured": "1.32.0", "reproduces": ["1.32.0"]})
    assert json.dumps(m, sort_keys=True) == before            # the input is not changed
    assert out["int8"] == RECORD and "quantization" not in out and "accuracy" not in out
    assert out["graphs"]["decode"]["int8"] == "decode.int8.onnx"
    assert out["onnxruntime"]["int8"]["measured"] == "1.32.0" and "int4" in out["onnxruntime"]   # others kept


def test_an_upgrade_moves_format1s_top_level_int8_record_and_says_what_it_left_unsaid():
    legacy = _legacy(_demo())
    assert Manifest(legacy).precision_record("int8") == {}            # the runtime reads its own key only
    for key in ("form", "recommended_mode", "recommended_refill_every"):
        legacy.pop(key)
    out = upgraded_manifest(legacy)
    assert out["int8"] == RECORD and "quantization" not in out and "accuracy" not in out
    assert Manifest(out).precision_record("int8") == RECORD
    assert Manifest(out).accuracy_warning("int8")                   # the record's 'passed: False'
    assert (Manifest(out).form, Manifest(out).recommended_mode, Manifest(out).recommended_refill_every) \
        == ("chat", "exact", 1)                                     # what format 1's readers took
    kept = upgraded_manifest(_demo())                               # what is said stays
    assert (kept["form"], kept["recommended_mode"]) == (_demo()["form"], _demo()["recommended_mode"])


def test_stream_report_and_weights_are_recorded():
    m = _demo()
    set_stream_report(m, {"recommended_mode": "stream", "recommended_refill_every": 8, "policies": []})
    assert (Manifest(m).recommended_mode, Manifest(m).recommended_refill_every) == ("stream", 8)
    m["format_version"] = 1
    record_weights(m, "int4", ["step", "chunk"], "weights.int4.bin")
    assert m["weights"]["int4"] == "weights.int4.bin" and m["graphs"]["chunk"]["int4"] == "chunk.int4.onnx"
    assert m["format_version"] == FORMAT_VERSION
